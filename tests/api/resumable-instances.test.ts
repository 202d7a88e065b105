import { createHash } from 'node:crypto';
import http from 'node:http';
import { loadConfig } from '../../src/config';
import { AppContext } from '../../src/context';
import { createApp } from '../../src/http/app';
import { startServer, type RunningServer } from '../../src/http/server';
import { createLogger } from '../../src/logger';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { bearer, DRIVERS, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';

const MiB = 1024 * 1024;
const TUS = { 'Tus-Resumable': '1.0.0' };

/** A PATCH whose body trickles in until `release` is called, then sends the rest. */
function slowPatch(url: string, key: string, offset: number, body: Buffer) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const done = new Promise<{ status: number; offset: string | undefined }>((resolve) => {
    const req = http.request(url, {
      method: 'PATCH',
      headers: {
        Authorization: `Bearer ${key}`,
        ...TUS,
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': body.length,
      },
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode!, offset: res.headers['upload-offset'] as string });
    });
    req.on('error', () => resolve({ status: 0, offset: undefined }));
    req.write(body.subarray(0, 256 * 1024));
    void released.then(() => req.end(body.subarray(256 * 1024)));
  });
  return { done, release };
}

/**
 * Two service instances sharing one database and one store: an upload started on one continues
 * on the other, and two requests for the same upload on different instances never both write.
 */
describe.each(DRIVERS)('resumable uploads across two instances (%s)', (driver) => {
  let a: TestApp;
  let ctxB: AppContext;
  let b: RunningServer;
  beforeAll(async () => {
    a = await startTestApp(driver);
    const config = loadConfig({
      DATABASE_URL: a.databaseUrl,
      DATA_DIR: a.dataDir,
      PORT: '0',
      LOG_LEVEL: 'silent',
      DATABASE_POOL_SIZE: '5',
      ...a.s3?.env,
    });
    ctxB = await AppContext.fromConfig(
      config,
      { migrate: false },
      { logger: createLogger('silent') },
    );
    b = await startServer(createApp(ctxB), config);
  });
  afterAll(async () => {
    await b.close(0);
    await ctxB.close();
    await a.close();
  });

  const patch = (base: string, path: string, offset: number, body: Buffer) =>
    fetch(`${base}${path}`, {
      method: 'PATCH',
      headers: {
        ...bearer(a.keys.ingest),
        ...TUS,
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
      },
      body,
    });

  async function create(clip: Buffer, base: string): Promise<string> {
    const res = await fetch(`${base}/v1/uploads`, {
      method: 'POST',
      headers: {
        ...bearer(a.keys.ingest),
        ...TUS,
        'Upload-Length': String(clip.length),
        'Upload-Metadata': `kind ${Buffer.from('packing_video').toString('base64')}`,
      },
    });
    expect(res.status).toBe(201);
    return res.headers.get('location')!;
  }

  afterEach(() => jest.restoreAllMocks());

  /** Reads of resumable bytes (not of archived blobs) through each instance's store. */
  function countResumableReads() {
    const counts = { a: 0, b: 0 };
    const spies = (['a', 'b'] as const).map((name) => {
      const store = (name === 'a' ? a.ctx : ctxB).blobStore;
      const read = store.read.bind(store);
      return jest.spyOn(store, 'read').mockImplementation((key, ...rest) => {
        if (key.startsWith('resumable/')) counts[name]++;
        return read(key, ...rest);
      });
    });
    return { counts, restore: () => spies.forEach((s) => s.mockRestore()) };
  }

  it('hashes an upload that stays on one instance as it arrives, without reading it again', async () => {
    const clip = fakeMedia('mp4', 9 * MiB + 3);
    const reads = countResumableReads();
    try {
      const path = await create(clip, b.url);
      for (let at = 0; at < clip.length; at += 3 * MiB) {
        const res = await patch(b.url, path, at, clip.subarray(at, at + 3 * MiB));
        expect(res.status).toBe(204);
        if (at + 3 * MiB >= clip.length) {
          expect(res.headers.get('repr-digest')).toBe(
            `sha-256=:${createHash('sha256').update(clip).digest('base64')}:`,
          );
        }
      }
      expect(reads.counts).toEqual({ a: 0, b: 0 });
    } finally {
      reads.restore();
    }
  });

  it('continues an upload on whichever instance the next request reaches', async () => {
    const clip = fakeMedia('mp4', 12 * MiB + 7);
    const reads = countResumableReads();
    const path = await create(clip, a.url);
    expect((await patch(b.url, path, 0, clip.subarray(0, 3 * MiB))).status).toBe(204);
    expect((await patch(a.url, path, 3 * MiB, clip.subarray(3 * MiB, 7 * MiB))).status).toBe(204);
    const head = await fetch(`${b.url}${path}`, {
      method: 'HEAD',
      headers: { ...bearer(a.keys.ingest), ...TUS },
    });
    expect(head.headers.get('upload-offset')).toBe(String(7 * MiB));
    const last = await patch(b.url, path, 7 * MiB, clip.subarray(7 * MiB));
    expect(last.status).toBe(204);
    const itemId = last.headers.get('evidence-item-id');
    const item = await fetch(`${a.url}/v1/evidence/${itemId}`, {
      headers: bearer(a.keys.support),
    }).then((r) => r.json() as Promise<{ sha256: string }>);
    expect(item.sha256).toBe(createHash('sha256').update(clip).digest('hex'));
    reads.restore();
    // B missed the bytes A received, so B read the upload once, at its end, to hash it.
    expect(reads.counts).toEqual({ a: 0, b: 1 });
  });

  it('records nothing of a PATCH whose instance lost its lock session meanwhile', async () => {
    const clip = fakeMedia('mp4', 6 * MiB);
    const path = await create(clip, a.url);
    const stalled = slowPatch(`${a.url}${path}`, a.keys.ingest.key, 0, clip.subarray(0, 4 * MiB));
    await new Promise((r) => setTimeout(r, 500));
    // A's lock session ends (a network blip, a restarted pooler): PostgreSQL drops A's lock, and
    // another instance could take the upload from here on.
    const locker = a.ctx.uploadLocker as unknown as { client?: { processID: number } };
    const pid = locker.client!.processID;
    const owner = createDb(a.databaseUrl, 1); // the app's own role may not end sessions
    try {
      await sql`select pg_terminate_backend(${pid})`.execute(owner);
    } finally {
      await owner.destroy();
    }
    stalled.release();
    const answer = await stalled.done;
    expect(answer.status).not.toBe(204);
    const head = await fetch(`${b.url}${path}`, {
      method: 'HEAD',
      headers: { ...bearer(a.keys.ingest), ...TUS },
    });
    expect(head.headers.get('upload-offset')).toBe('0'); // nothing of A's PATCH was recorded
    const last = await patch(b.url, path, 0, clip);
    expect(last.status).toBe(204);
    const item = await fetch(`${b.url}/v1/evidence/${last.headers.get('evidence-item-id')}`, {
      headers: bearer(a.keys.support),
    }).then((r) => r.json() as Promise<{ sha256: string }>);
    expect(item.sha256).toBe(createHash('sha256').update(clip).digest('hex'));
  });

  it('lets one instance write at a time: a newer request makes the older let go', async () => {
    const reads = countResumableReads();
    const clip = fakeMedia('mp4', 8 * MiB);
    const path = await create(clip, a.url);
    // A stalled PATCH on A holds the upload...
    const stalled = slowPatch(`${a.url}${path}`, a.keys.ingest.key, 0, clip.subarray(0, 4 * MiB));
    await new Promise((r) => setTimeout(r, 500));
    // ...until the client, reconnected through B, asks where to resume: A is told to stop.
    const head = await fetch(`${b.url}${path}`, {
      method: 'HEAD',
      headers: { ...bearer(a.keys.ingest), ...TUS },
    });
    expect(head.status).toBe(200);
    stalled.release();
    await stalled.done;
    const offset = Number(head.headers.get('upload-offset'));
    // What A accepted before it let go is kept, and nothing past it.
    const now = await fetch(`${b.url}${path}`, {
      method: 'HEAD',
      headers: { ...bearer(a.keys.ingest), ...TUS },
    });
    const resumeAt = Number(now.headers.get('upload-offset'));
    expect(resumeAt).toBeGreaterThanOrEqual(offset);
    expect(resumeAt).toBeLessThan(4 * MiB);
    const last = await patch(b.url, path, resumeAt, clip.subarray(resumeAt));
    expect(last.status).toBe(204);
    const item = await fetch(`${a.url}/v1/evidence/${last.headers.get('evidence-item-id')}`, {
      headers: bearer(a.keys.support),
    }).then((r) => r.json() as Promise<{ sha256: string }>);
    expect(item.sha256).toBe(createHash('sha256').update(clip).digest('hex'));
    reads.restore();
    // B missed the bytes A received, so B read the upload once, at its end, to hash it.
    expect(reads.counts).toEqual({ a: 0, b: 1 });
  });
});
