import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../../src/base/config';
import { S3BlobStore } from '../../src/storage/blob-store.s3';
import { createS3Client } from '../../src/storage/s3-client';
import { fakeMedia, sha256 } from '../support/media';
import { rawS3Client, startS3Server, type TestS3 } from '../support/s3-server';
import { chunked, readAll, s3ConfigOf } from '../support/store-contract';

/* The S3 client's timeouts (src/storage/s3-client.ts) against a real S3-protocol server. */

/**
 * A store that answers a server-side copy only when it is done (MinIO does; s3rver behind a proxy
 * that holds every copy for COPY_DELAY_MS plays it): the copy gets a timeout scaled to its size,
 * not S3_REQUEST_TIMEOUT_MS, so it is neither cut nor retried.
 */
describe('S3 server-side copies slower than the request timeout (s3rver behind a delaying proxy)', () => {
  const COPY_DELAY_MS = 2500;
  let s3: TestS3;
  let proxy: http.Server;
  let cfg: ReturnType<typeof loadConfig>;
  const copies: string[] = [];
  const stores: S3BlobStore[] = [];

  beforeAll(async () => {
    s3 = await startS3Server();
    const target = new URL(s3.endpoint);
    proxy = http.createServer((req, res) => {
      const isCopy =
        req.headers['x-amz-copy-source'] !== undefined ||
        (req.method === 'POST' && /[?&]uploadId=/.test(req.url ?? ''));
      if (isCopy) copies.push(`${req.method} ${req.url}`);
      const forward = () => {
        const out = http.request(
          {
            host: target.hostname,
            port: target.port,
            method: req.method,
            path: req.url,
            headers: req.headers,
          },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        out.on('error', () => res.destroy());
        req.pipe(out);
      };
      if (isCopy) setTimeout(forward, COPY_DELAY_MS);
      else forward();
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const loaded = loadConfig({
      ...s3.env,
      S3_ENDPOINT: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      S3_REQUEST_TIMEOUT_MS: '1000',
      // 4 KiB may take 1 s + 4 s: longer than the proxy's delay.
      S3_COPY_BYTES_PER_SECOND: '1024',
    });
    if (loaded.storage.driver !== 's3') throw new Error('unreachable');
    cfg = loaded;
  });
  afterAll(async () => {
    for (const store of stores) await store.close();
    proxy.closeAllConnections();
    proxy.close();
    await s3.close();
  });

  const storeWith = (opts: { maxSingleCopyBytes?: number; copyPartBytes?: number } = {}) => {
    const s3cfg = s3ConfigOf(cfg);
    const store = new S3BlobStore(createS3Client(s3cfg), s3cfg, opts);
    stores.push(store);
    return store;
  };

  it('promotes by one CopyObject that the store answers after the request timeout, without retrying it', async () => {
    const store = storeWith();
    const data = fakeMedia('mp4', 4096);
    copies.length = 0;
    const started = Date.now();
    const { key, created } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(created).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(COPY_DELAY_MS);
    expect(copies).toHaveLength(1);
    expect(sha256(await readAll(await store.read(key, data.length)))).toBe(sha256(data));
  }, 30_000);
  // (UploadPartCopy, which s3rver does not implement, and CompleteMultipartUpload take the same
  // size-scaled timeout; see copyInParts.)
});

/**
 * A download whose reader pauses (a paused video: backpressure stops reading from the store's
 * socket). The SDK's socket timeout (S3_REQUEST_TIMEOUT_MS) counts socket silence, so a pause
 * longer than it, once the socket buffers are full, cuts the download; a shorter one does not.
 */
describe('S3 downloads whose reader pauses (s3rver)', () => {
  let s3: TestS3;
  let client: S3Client;
  const data = fakeMedia('mp4', 16 * 1024 * 1024);
  beforeAll(async () => {
    s3 = await startS3Server();
    const cfg = loadConfig({ ...s3.env, S3_REQUEST_TIMEOUT_MS: '1000' });
    if (cfg.storage.driver !== 's3') throw new Error('unreachable');
    client = createS3Client(cfg.storage.s3);
    const raw = rawS3Client(s3);
    await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'big', Body: data }));
    raw.destroy();
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  /** Reads the first chunk, pauses for pauseMs, then reads the rest. */
  async function readWithPause(pauseMs: number): Promise<Buffer> {
    const { Body } = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'big' }));
    const body = Body as Readable;
    const chunks: Buffer[] = [];
    const it = body[Symbol.asyncIterator]();
    const first = await it.next();
    chunks.push(first.value as Buffer);
    await new Promise((r) => setTimeout(r, pauseMs));
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      chunks.push(next.value as Buffer);
    }
    return Buffer.concat(chunks);
  }

  it('keeps a download whose reader pauses for less than the timeout', async () => {
    expect(sha256(await readWithPause(500))).toBe(sha256(data));
  });

  it('cuts a download whose reader pauses for longer than the timeout (documented limit)', async () => {
    const outcome = await readWithPause(3000).then(
      (buf) => `read ${buf.length}`,
      (err: Error) => `${err.name}: ${err.message}`,
    );
    // Measured: "the request socket timed out after 1000 ms of inactivity". A player that pauses
    // longer than S3_REQUEST_TIMEOUT_MS (120 s by default) sees its download end early and
    // resumes it with a Range request, as browsers do.
    expect(outcome).toMatch(/^TimeoutError: .*socket timed out/);
  });
});
