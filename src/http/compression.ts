import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Transform } from 'node:stream';
import { constants, createBrotliCompress, createGzip } from 'node:zlib';
import type { Request, RequestHandler } from 'express';

type Coding = 'br' | 'gzip';

/** JSON (problems included), CSV, the metrics' text format: never media, never a ZIP. */
const COMPRESSIBLE = /^(application\/([a-z0-9.-]+\+)?json|text\/[a-z0-9.+-]+)\s*(;|$)/i;

/** Below this, a compressed body saves less than its headers and the CPU cost. */
export const COMPRESSION_THRESHOLD_BYTES = 1024;

const QVALUE = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/;

/**
 * The content coding to answer with, per RFC 9110 §12.5.3: the highest q-value among br and
 * gzip (br on a tie), unless identity is preferred; `*` stands for every coding not named. With no
 * Accept-Encoding the answer is not compressed (clients that never asked, such as curl without
 * --compressed, must not get gzip). `identityRefused` is true for `identity;q=0` (or `*;q=0`
 * without identity named): then even a small body is compressed.
 */
export function negotiateEncoding(header: string | undefined): {
  coding?: Coding;
  identityRefused: boolean;
} {
  if (header === undefined) return { identityRefused: false };
  const q = new Map<string, number>();
  for (const part of header.split(',')) {
    const [name, ...params] = part.split(';').map((s) => s.trim());
    if (!name) continue;
    let value = 1;
    for (const param of params) {
      const [k, v] = param.split('=').map((s) => s.trim());
      if (k?.toLowerCase() !== 'q') continue;
      value = v !== undefined && QVALUE.test(v) ? Number(v) : NaN;
    }
    if (Number.isNaN(value)) continue; // a malformed q-value: that entry is ignored
    const coding = name.toLowerCase() === 'x-gzip' ? 'gzip' : name.toLowerCase();
    q.set(coding, Math.max(value, q.get(coding) ?? 0));
  }
  const star = q.get('*');
  const identity = q.get('identity') ?? star;
  const identityRefused = identity === 0;
  let best: { coding: Coding; q: number } | undefined;
  for (const coding of ['br', 'gzip'] as const) {
    const value = q.get(coding) ?? star ?? 0;
    if (value > 0 && (!best || value > best.q)) best = { coding, q: value };
  }
  // Identity not named is acceptable, but any coding the client named comes first.
  if (!best || (identity !== undefined && identity > best.q)) return { identityRefused };
  return { coding: best.coding, identityRefused };
}

/**
 * Compresses JSON and text answers when the client asks (Accept-Encoding: br, gzip), streaming
 * through node:zlib. Never compressed: anything offering or answering a byte range (stored bytes,
 * derivatives, share-link content, ZIP bundles: their ranges and digests name the identity bytes),
 * anything with an ETag or already encoded, media and ZIPs by type, 204/206/304, HEAD, and bodies
 * under COMPRESSION_THRESHOLD_BYTES unless identity was refused.
 */
export function compression(): RequestHandler {
  return (req, res, next) => {
    type Fn = (...args: unknown[]) => unknown;
    const original = {
      write: res.write as unknown as Fn,
      end: res.end as unknown as Fn,
      writeHead: res.writeHead as unknown as Fn,
    };
    const write = (...args: unknown[]) => original.write.apply(res, args) as boolean;
    const end = (...args: unknown[]) => void original.end.apply(res, args);
    let decided = false;
    let stream: Transform | undefined;

    const decide = () => {
      if (decided) return;
      decided = true;
      const coding = chooseCoding(req, res);
      if (!coding) return;
      const length = Number(res.getHeader('content-length'));
      stream =
        coding === 'br'
          ? createBrotliCompress({
              params: {
                // Quality 4: about gzip's speed with a smaller result; 11 (the default) is for
                // static files, and costs ~100 ms of CPU for the 175 KB OpenAPI document.
                [constants.BROTLI_PARAM_QUALITY]: 4,
                ...(length > 0 ? { [constants.BROTLI_PARAM_SIZE_HINT]: length } : {}),
              },
            })
          : createGzip();
      res.setHeader('Content-Encoding', coding);
      res.removeHeader('Content-Length');
      const zipped = stream;
      zipped.on('data', (chunk: Buffer) => {
        if (!write(chunk)) zipped.pause();
      });
      zipped.on('end', () => end());
      zipped.on('error', (err: Error) => res.destroy(err));
      // A producer waiting for 'drain' waits on the compressor; the compressor on the socket.
      zipped.on('drain', () => res.emit('drain'));
      res.on('drain', () => zipped.resume());
      res.once('close', () => zipped.destroy());
    };

    const patched = res as unknown as {
      writeHead(status: number, ...rest: unknown[]): ServerResponse;
      write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean;
      end(chunk?: unknown, encoding?: unknown, cb?: unknown): ServerResponse;
    };
    patched.writeHead = (status: number, ...rest: unknown[]) => {
      const reason = typeof rest[0] === 'string' ? rest[0] : undefined;
      const headers = rest.find((a): a is OutgoingHttpHeaders | unknown[] => typeof a === 'object');
      if (Array.isArray(headers)) {
        decided = true; // raw header lists are not ours to rewrite: sent as they are
        original.writeHead.call(res, status, ...rest);
        return res;
      }
      for (const [name, value] of Object.entries(headers ?? {})) {
        if (value !== undefined) res.setHeader(name, value);
      }
      res.statusCode = status;
      decide();
      original.writeHead.call(res, status, reason);
      return res;
    };
    patched.write = (chunk, encoding, cb) => {
      if (!res.headersSent) patched.writeHead(res.statusCode);
      if (!stream) return write(chunk, encoding, cb);
      const done = [encoding, cb].find((a) => typeof a === 'function') as
        ((err?: Error | null) => void) | undefined;
      return stream.write(toBuffer(chunk, encoding), done);
    };
    patched.end = (chunk, encoding, cb) => {
      const body = typeof chunk === 'function' ? undefined : chunk;
      if (!res.headersSent) {
        if (body && !res.hasHeader('content-length')) {
          res.setHeader('Content-Length', toBuffer(body, encoding).length);
        }
        patched.writeHead(res.statusCode);
      }
      if (!stream) {
        end(chunk, encoding, cb);
        return res;
      }
      if (body) stream.end(toBuffer(body, encoding));
      else stream.end();
      return res;
    };
    next();
  };
}

function chooseCoding(req: Request, res: ServerResponse): Coding | undefined {
  const type = String(res.getHeader('content-type') ?? '');
  if (!COMPRESSIBLE.test(type)) return undefined;
  // The answer depends on Accept-Encoding from here on, compressed or not.
  const vary = String(res.getHeader('vary') ?? '');
  if (!/(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(vary)) {
    res.setHeader('Vary', vary ? `${vary}, Accept-Encoding` : 'Accept-Encoding');
  }
  const status = res.statusCode;
  if (req.method === 'HEAD' || status < 200 || status === 204 || status === 206 || status === 304) {
    return undefined;
  }
  const acceptRanges = String(res.getHeader('accept-ranges') ?? 'none').toLowerCase();
  if (
    res.hasHeader('content-encoding') ||
    res.hasHeader('content-range') ||
    acceptRanges !== 'none' ||
    res.hasHeader('etag') ||
    /(^|,)\s*no-transform\s*(,|$)/i.test(String(res.getHeader('cache-control') ?? ''))
  ) {
    return undefined;
  }
  const { coding, identityRefused } = negotiateEncoding(req.get('accept-encoding'));
  if (!coding) return undefined;
  const length = Number(res.getHeader('content-length') ?? NaN);
  if (!identityRefused && length < COMPRESSION_THRESHOLD_BYTES) return undefined;
  return coding;
}

function toBuffer(chunk: unknown, encoding: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  return Buffer.from(
    String(chunk),
    typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
  );
}
