import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Transform } from 'node:stream';

/**
 * The packing station's uploader: sends clips to the archive, retrying with backoff over a bad
 * network, and in watch mode takes every finished file of a folder, keeps a queue on disk across
 * restarts, and moves a file to done/ only once the archive's SHA-256 of it equals its own.
 * (Transport: multipart POST with the client's hash, which the server checks; resumable tus
 * uploads replace it in a later version.)
 */

export interface UploaderOptions {
  url: string;
  key: string;
  kind: 'packing_video' | 'call_recording' | 'photo';
  orderIds: string[];
  stationId?: string;
  operatorId?: string;
  trackingNumber?: string;
  /** Retries of one file before it waits for the next pass (watch mode) or fails (single). */
  maxAttempts: number;
  /** First retry delay; doubled each time up to a minute. */
  backoffMs: number;
  log: (line: string) => void;
  /** Progress of the current file, 0..1; undefined for no progress display. */
  progress?: (file: string, fraction: number) => void;
}

export interface Archived {
  id: string;
  sha256: string;
  status: number;
}

export class UploadRefused extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

const boundaryFor = () => `----evidence-upload-${randomUUID()}`;

/** One multipart POST of one file; resolves with the archive's answer. */
function postOnce(
  opts: UploaderOptions,
  file: string,
  sha256: string,
  size: number,
): Promise<Archived> {
  const boundary = boundaryFor();
  const fields: [string, string][] = [
    ['kind', opts.kind],
    ['sha256', sha256],
    ...opts.orderIds.map((o): [string, string] => ['orderId', o]),
    ...(opts.stationId ? [['stationId', opts.stationId] as [string, string]] : []),
    ...(opts.operatorId ? [['operatorId', opts.operatorId] as [string, string]] : []),
    ...(opts.trackingNumber ? [['trackingNumber', opts.trackingNumber] as [string, string]] : []),
  ];
  const name = path.basename(file).replace(/["\r\n]/g, '_');
  const head = Buffer.from(
    fields
      .map(
        ([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`,
      )
      .join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const target = new URL('/v1/evidence', opts.url);
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(target, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${opts.key}`,
        'Content-Type': `multipart/form-data; boundary=${boundary}`,
        'Content-Length': head.length + size + tail.length,
        // The same bytes retried are the same upload: the server answers with the first result.
        'Idempotency-Key': `sha256-${sha256}`,
      },
      timeout: 120_000,
    });
    req.on('timeout', () => req.destroy(new Error('the archive stopped answering')));
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', reject);
      res.on('end', () => {
        let body: { id?: string; sha256?: string; code?: string; detail?: string } = {};
        try {
          body = JSON.parse(text) as typeof body;
        } catch {
          // not JSON: a proxy's error page
        }
        const status = res.statusCode ?? 0;
        if (status === 200 || status === 201) {
          return resolve({ id: String(body.id), sha256: String(body.sha256), status });
        }
        const why = `${status} ${body.code ?? ''} ${body.detail ?? text.slice(0, 200)}`.trim();
        // 4xx other than 408/429 will not change by retrying: the file or the key is refused.
        if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
          return reject(new UploadRefused(why));
        }
        reject(new Error(why));
      });
    });
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sent += chunk.length;
        opts.progress?.(file, size ? sent / size : 1);
        done(null, chunk);
      },
    });
    req.write(head);
    // The body with backpressure: counted for the progress display as it goes.
    (async () => {
      try {
        for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }).pipe(
          counter,
        )) {
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        }
        req.end(tail);
      } catch (err) {
        req.destroy(err as Error);
      }
    })();
  });
}

/**
 * Uploads one file, retrying with backoff; resolves once the archive holds it and its SHA-256
 * equals ours. Rejects with UploadRefused when the archive refuses it for good.
 */
export async function uploadFile(opts: UploaderOptions, file: string): Promise<Archived> {
  const { sha256, size } = await sha256File(file);
  let delay = opts.backoffMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await postOnce(opts, file, sha256, size);
      if (result.sha256 !== sha256) {
        throw new Error(`the archive's SHA-256 ${result.sha256} differs from ours ${sha256}`);
      }
      return result;
    } catch (err) {
      if (err instanceof UploadRefused) throw err;
      if (attempt >= opts.maxAttempts) throw err;
      opts.log(
        `${path.basename(file)}: attempt ${attempt} failed (${(err as Error).message}); retrying in ${Math.round(delay / 1000)} s`,
      );
      await sleep(delay);
      delay = Math.min(delay * 2, 60_000);
    }
  }
}
