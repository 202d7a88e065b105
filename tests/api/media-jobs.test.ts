import pg from 'pg';
import request from 'supertest';
import { sql } from 'kysely';
import type { BlobNamespace, BlobStore } from '../../src/storage/blob-store';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { archive, getBytes, MediaFiles } from '../support/media-files';

jest.setTimeout(90_000);

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 45_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const mediaStatus = async (app: TestApp, id: string) =>
  (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support))).body.media;

describe('media work on the job queue', () => {
  let app: TestApp;
  const files = new MediaFiles();
  let failDerivedPromotions = 0;
  /** While set, derivative writes wait on it: a job held mid-way. */
  let gate: Promise<void> | undefined;

  beforeAll(async () => {
    app = await startTestApp(
      'fs',
      { MEDIA_RETRY_DELAY_SECONDS: '1', MEDIA_CONCURRENCY: '2' },
      {
        jobQueue: true,
        // The store refuses derivative writes while told to: a storage outage mid-job.
        wrapBlobStore: (store: BlobStore) =>
          new Proxy(store, {
            get(target, prop, receiver) {
              if (prop === 'promote') {
                return async (key: string, sha: string, size: number, ns?: BlobNamespace) => {
                  if (ns === 'derived') await gate;
                  if (ns === 'derived' && failDerivedPromotions > 0) {
                    failDerivedPromotions--;
                    throw new Error('store unavailable (test)');
                  }
                  return target.promote(key, sha, size, ns);
                };
              }
              const value = Reflect.get(target, prop, receiver);
              return typeof value === 'function' ? value.bind(target) : value;
            },
          }),
      },
    );
    await app.ctx.jobs.start({ workers: true });
    await app.ctx.mediaJobs.start({ workers: true });
  });
  afterAll(async () => {
    await app.close();
    files.cleanup();
  });

  it('answers the upload at once and derives in the background', async () => {
    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));
    try {
      const id = await archive(app, files.mov(3), 'packing_video', 'bg.mov');
      // The upload was answered while its media job cannot finish.
      expect(['pending', 'processing']).toContain((await mediaStatus(app, id)).status);
      await waitFor('the job to start', async () =>
        (await mediaStatus(app, id)).status === 'processing' ? true : undefined,
      );
      open();
      const done = await waitFor('derivatives', async () => {
        const m = await mediaStatus(app, id);
        return m.status === 'done' ? m : undefined;
      });
      expect(done.probe.video.codec).toBe('mpeg4');
      expect((await getBytes(app, `/v1/evidence/${id}/contact-sheet`)).status).toBe(200);
    } finally {
      open();
      gate = undefined;
    }
  });

  it("keeps each queue's policy when an instance starts again (one job per item, one custody run at a time)", async () => {
    // A second start, as a restarted instance or a worker process does.
    await app.ctx.jobs.start({ workers: false });
    await app.ctx.mediaJobs.start({ workers: false });
    const owner = new pg.Client({ connectionString: app.databaseUrl });
    await owner.connect();
    try {
      const { rows } = await owner.query<{ name: string; policy: string }>(
        `select name, policy from pgboss.queue order by name`,
      );
      expect(rows).toEqual([
        { name: 'custody-checkpoint', policy: 'singleton' },
        { name: 'custody-retention', policy: 'singleton' },
        { name: 'custody-scrub', policy: 'singleton' },
        { name: 'media-derive', policy: 'stately' },
        // Made with the others at the migrate step (the app's login cannot create a queue).
        { name: 'twilio-recording-fetch', policy: 'stately' },
      ]);
    } finally {
      await owner.end();
    }
  });

  it('retries with backoff after a storage failure, and records the attempt on the item', async () => {
    failDerivedPromotions = 1;
    const id = await archive(app, files.mulawWav(2, 1), 'call_recording', 'retry.wav');
    const retrying = await waitFor('a failed attempt', async () => {
      const m = await mediaStatus(app, id);
      return m.detail?.includes('retrying') ? m : undefined;
    });
    // The reason shown is readable and keeps the internals for the log.
    expect(retrying.detail).toMatch(/attempt 1 failed with an internal error .*; retrying/);
    expect(retrying.detail).not.toContain('test');
    await waitFor('the retry', async () =>
      (await mediaStatus(app, id)).status === 'done' ? true : undefined,
    );
    const { rows } = await sql<{
      attempts: number;
    }>`select attempts from item_media where item_id = ${id}`.execute(app.ctx.db);
    expect(rows[0]!.attempts).toBe(2);
  });

  it('finds items whose job was never sent (a crash between commit and send)', async () => {
    const jobs = app.ctx.mediaJobs;
    const send = jobs.afterCommit.bind(jobs);
    jobs.afterCommit = () => undefined; // the process died right after the commit
    let id: string;
    try {
      id = await archive(app, files.mp3(1), 'call_recording', 'lost.mp3');
    } finally {
      jobs.afterCommit = send;
    }
    await new Promise((r) => setTimeout(r, 3000));
    expect((await mediaStatus(app, id)).status).toBe('pending'); // nobody is working on it
    await sql`update item_media set updated_at = now() - interval '5 minutes' where item_id = ${id}`.execute(
      app.ctx.db,
    );
    expect(await jobs.sweep()).toBeGreaterThanOrEqual(1);
    await waitFor('the swept item', async () =>
      (await mediaStatus(app, id)).status === 'done' ? true : undefined,
    );
  });
});

describe('without ffmpeg', () => {
  let app: TestApp;
  const files = new MediaFiles();

  beforeAll(async () => {
    app = await startTestApp('fs', {
      FFMPEG_PATH: '/nonexistent/ffmpeg',
      FFPROBE_PATH: '/nonexistent/ffprobe',
    });
  });
  afterAll(async () => {
    await app.close();
    files.cleanup();
  });

  it('still archives; /readyz and every item say why nothing was derived; photos still get thumbnails', async () => {
    const ready = await request(app.url).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.checks.media.status).toBe('unavailable');
    expect(ready.body.checks.media.detail).toMatch(/FFMPEG_PATH/);

    const clip = await archive(app, files.mov(2), 'packing_video', 'clip.mov');
    expect(await app.ctx.media.process(clip)).toBe('unavailable');
    const list = (
      await request(app.url).get(`/v1/evidence/${clip}/derivatives`).set(bearer(app.keys.support))
    ).body;
    for (const d of list.derivatives) {
      expect(d.status).toBe('unavailable');
      expect(d.detail).toMatch(/FFMPEG_PATH/);
    }
    const poster = await request(app.url)
      .get(`/v1/evidence/${clip}/poster`)
      .set(bearer(app.keys.support));
    expect(poster.status).toBe(404);
    expect(poster.body).toMatchObject({
      code: 'derivative_not_ready',
      derivativeStatus: 'unavailable',
    });

    const photo = await archive(app, await files.jpegWithExif(), 'photo', 'p.jpg');
    expect(await app.ctx.media.process(photo)).toBe('done');
    expect((await getBytes(app, `/v1/evidence/${photo}/thumbnail`)).status).toBe(200);
  });
});
