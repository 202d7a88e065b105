import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { sha256 } from '../support/media';
import { multipartBody, rawRequest, type RawResponse } from '../support/multipart';
import { freePort } from '../support/own-postgres';
import { rawS3Client, startS3Process, type S3Process } from '../support/s3-server';
import { startServiceProcess, waitFor, type ServiceProcess } from '../support/service-process';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(180_000);

const TIMEOUT_MS = 2000;
/**
 * The SDK tries each request up to 3 times (maxAttempts) with a short backoff; an upload's abort
 * and cleanup calls after it are bounded by the same timeout. Generous for 2 busy cores.
 */
const ANSWER_WITHIN_MS = TIMEOUT_MS * 3 + 12_000;

/**
 * The S3 store frozen (SIGSTOP: connections accepted, never answered) or killed under the real
 * service: S3_REQUEST_TIMEOUT_MS must cut its calls, the client gets 503 dependency_unavailable
 * in time, nothing is archived after the client was told it failed, and the service recovers.
 */
describe('S3 outages', () => {
  let s3: S3Process;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dataDir: string;
  let ctx: AppContext;
  let service: ServiceProcess;
  let keys: { ingest: string; support: string };

  beforeAll(async () => {
    s3 = await startS3Process();
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-outage-s3-'));
    const env = {
      ...s3.env,
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      S3_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
    };
    ctx = await AppContext.fromConfig(
      loadConfig({ ...env, LOG_LEVEL: 'silent' }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
    keys = {
      ingest: (await ctx.apiKeys.create('ingest', 's3 outage station')).key,
      support: (await ctx.apiKeys.create('support', 's3 outage support')).key,
    };
    service = await startServiceProcess(
      { ...env, LOG_LEVEL: 'warn', WORKERS: '0' },
      await freePort(),
    );
    await service.ready();
  });

  afterAll(async () => {
    await service?.kill();
    await s3?.close();
    await ctx?.close();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    s3.thaw();
  });

  function expectAlive(): void {
    if (!service.alive()) {
      throw new Error(`the service exited; its last output:\n${service.output().slice(-4000)}`);
    }
  }

  /**
   * Uploads `body` in 256 KiB slices; `midway` runs once `at` bytes were sent. Resolves with the
   * answer, or with status 0 when the connection was cut without one.
   */
  function uploadWith(
    filename: string,
    body: Buffer,
    at: number,
    midway: () => void,
  ): Promise<RawResponse> {
    const { contentType, stream } = multipartBody(
      [['kind', 'photo']],
      [
        {
          filename,
          contentType: 'image/jpeg',
          content: (async function* () {
            for (let offset = 0; offset < body.length; offset += 256 * 1024) {
              if (offset >= at && offset < at + 256 * 1024) midway();
              yield body.subarray(offset, offset + 256 * 1024);
            }
          })(),
        },
      ],
    );
    return rawRequest(
      `${service.url}/v1/evidence`,
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${keys.ingest}`, 'Content-Type': contentType },
        timeout: 60_000,
      },
      stream,
    ).catch((): RawResponse => ({ status: 0, headers: {}, body: '', json: () => ({}) as unknown }));
  }

  const jpeg = (size: number) =>
    Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 4)]);

  const archivedNamed = async (filename: string) =>
    (
      await sql<{
        id: string;
      }>`select id from evidence_items where original_filename = ${filename}`.execute(ctx.db)
    ).rows;

  /** Staging objects and unfinished multipart uploads in the bucket. */
  async function leftovers(): Promise<string[]> {
    const client = rawS3Client(s3);
    try {
      const objects = await client.send(
        new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'staging/' }),
      );
      const uploads = await client
        .send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: 'staging/' }))
        .catch(() => ({ Uploads: [] })); // s3rver lists none
      return [
        ...(objects.Contents ?? []).map((o) => o.Key!),
        ...(uploads.Uploads ?? []).map((u) => `multipart ${u.Key}`),
      ];
    } finally {
      client.destroy();
    }
  }

  async function expectUploadWorks(): Promise<string> {
    const body = jpeg(300 * 1024);
    const res = await uploadWith(`ok-${randomBytes(4).toString('hex')}.jpg`, body, -1, () => {});
    expect(res.status).toBe(201);
    const id = res.json().id as string;
    const content = await fetch(`${service.url}/v1/evidence/${id}/content`, {
      headers: { Authorization: `Bearer ${keys.support}` },
    });
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(body));
    return id;
  }

  it('answers 503 within S3_REQUEST_TIMEOUT_MS when the store freezes mid-upload, and archives nothing after', async () => {
    await expectUploadWorks();
    let frozenAt = 0;
    const filename = 'frozen-upload.jpg';
    const res = await uploadWith(filename, jpeg(12 * 1024 * 1024), 3 * 1024 * 1024, () => {
      s3.freeze();
      frozenAt = Date.now();
    });
    const answeredAfter = Date.now() - frozenAt;
    expect(frozenAt).toBeGreaterThan(0);
    expect([res.status, res.status ? res.json().code : 'no answer']).toEqual([
      503,
      'dependency_unavailable',
    ]);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(answeredAfter).toBeLessThan(ANSWER_WITHIN_MS);
    expectAlive();

    s3.thaw();
    // Whatever the store does with the requests it held, the item never appears, and no
    // staging object of it stays.
    await expectUploadWorks();
    expect(await archivedNamed(filename)).toEqual([]);
    await waitFor(
      'staging of the failed upload to be gone',
      async () => ((await leftovers()).length === 0 ? true : undefined),
      30_000,
      500,
    );
    expect(await archivedNamed(filename)).toEqual([]);
  });

  it('cuts a download within the timeout when the store freezes mid-way, answers 503 to new ones, and serves again after', async () => {
    const body = jpeg(12 * 1024 * 1024);
    const up = await uploadWith('download.jpg', body, -1, () => {});
    expect(up.status).toBe(201);
    const id = up.json().id as string;

    // Mid-download: the answer has started, so the only honest signal left is a cut connection.
    const cut = await new Promise<{ bytes: number; after: number; ended: string }>(
      (resolve, reject) => {
        let bytes = 0;
        let frozenAt = 0;
        const req = http.get(
          `${service.url}/v1/evidence/${id}/content`,
          { headers: { Authorization: `Bearer ${keys.support}` } },
          (res) => {
            expect(res.statusCode).toBe(200);
            res.on('data', (c: Buffer) => {
              bytes += c.length;
              if (!frozenAt && bytes > 512 * 1024) {
                s3.freeze();
                frozenAt = Date.now();
                // Stop reading for a moment, then read on: what is buffered drains, then nothing.
                res.pause();
                setTimeout(() => res.resume(), 200);
              }
            });
            const done = (ended: string) =>
              resolve({ bytes, after: frozenAt ? Date.now() - frozenAt : -1, ended });
            res.on('end', () => done('end'));
            res.on('error', () => done('error'));
            res.on('aborted', () => done('aborted'));
          },
        );
        req.on('error', reject);
        req.setTimeout(60_000, () => req.destroy(new Error('client gave up after 60 s')));
      },
    );
    expect(cut.ended).not.toBe('end');
    expect(cut.bytes).toBeLessThan(body.length);
    expect(cut.after).toBeGreaterThan(0);
    expect(cut.after).toBeLessThan(ANSWER_WITHIN_MS);

    // A download asked for while the store is frozen: 503 before any byte.
    const started = Date.now();
    const refused = await fetch(`${service.url}/v1/evidence/${id}/content`, {
      headers: { Authorization: `Bearer ${keys.support}` },
      signal: AbortSignal.timeout(60_000),
    });
    expect([refused.status, ((await refused.json()) as { code: string }).code]).toEqual([
      503,
      'dependency_unavailable',
    ]);
    expect(Date.now() - started).toBeLessThan(ANSWER_WITHIN_MS);
    const ready = await fetch(`${service.url}/readyz`, { signal: AbortSignal.timeout(20_000) });
    expect(ready.status).toBe(503);
    expectAlive();

    s3.thaw();
    await service.ready(30_000);
    const whole = await fetch(`${service.url}/v1/evidence/${id}/content`, {
      headers: { Authorization: `Bearer ${keys.support}` },
    });
    expect(sha256(Buffer.from(await whole.arrayBuffer()))).toBe(sha256(body));
  });

  it('answers 503 when the store is killed mid-upload, and recovers when it is back', async () => {
    const filename = 'killed-upload.jpg';
    const res = await uploadWith(filename, jpeg(12 * 1024 * 1024), 3 * 1024 * 1024, () => {
      void s3.kill();
    });
    expect([res.status, res.status ? res.json().code : 'no answer']).toEqual([
      503,
      'dependency_unavailable',
    ]);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expectAlive();
    const down = await fetch(`${service.url}/readyz`, { signal: AbortSignal.timeout(20_000) });
    expect(down.status).toBe(503);

    await s3.restart();
    await service.ready(30_000);
    await expectUploadWorks();
    expect(await archivedNamed(filename)).toEqual([]);
    // No staging object of the refused upload in the store.
    await waitFor(
      'no staging left',
      async () => ((await leftovers()).length === 0 ? true : undefined),
      30_000,
      500,
    );
  });
});
