import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';

export interface FilePart {
  field?: string;
  filename: string;
  contentType?: string;
  /** Chunks of the file; an async iterable lets tests stream hundreds of MB or stall mid-file. */
  content: Buffer | AsyncIterable<Buffer>;
}

/** A multipart/form-data body as a stream, so tests control exactly what goes on the wire. */
export function multipartBody(
  fields: [string, string][],
  files: FilePart[],
  trailingFields: [string, string][] = [],
) {
  const boundary = `----evidence${randomBytes(12).toString('hex')}`;
  async function* generate(): AsyncGenerator<Buffer> {
    const field = (name: string, value: string) =>
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      );
    for (const [name, value] of fields) yield field(name, value);
    for (const f of files) {
      yield Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${f.field ?? 'file'}"; filename="${f.filename}"\r\n` +
          `Content-Type: ${f.contentType ?? 'application/octet-stream'}\r\n\r\n`,
      );
      if (Buffer.isBuffer(f.content)) yield f.content;
      else for await (const chunk of f.content) yield chunk;
      yield Buffer.from('\r\n');
    }
    for (const [name, value] of trailingFields) yield field(name, value);
    yield Buffer.from(`--${boundary}--\r\n`);
  }
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    stream: Readable.from(generate()),
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Sends a streamed body over a real socket and collects the response (or the socket error). */
export function rawRequest(
  url: string,
  options: http.RequestOptions,
  body?: Readable,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: text,
          json: () => JSON.parse(text),
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body) body.pipe(req);
    else req.end();
  });
}

export function upload(
  baseUrl: string,
  key: string,
  fields: [string, string][],
  file: FilePart | FilePart[] | undefined,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const files = file === undefined ? [] : Array.isArray(file) ? file : [file];
  const { contentType, stream } = multipartBody(fields, files);
  return rawRequest(
    `${baseUrl}/v1/evidence`,
    {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': contentType, ...headers },
    },
    stream,
  );
}
