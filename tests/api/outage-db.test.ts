import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../src/base/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/base/logger';
import { MediaFiles } from '../support/media-files';
import type { MintedKey } from '../../src/access/api-key.service';
import { sha256 } from '../support/media';
import { AbortedUpload, tusUpload } from '../support/tus';
import { multipartBody, rawRequest, upload } from '../support/multipart';
import {
  freePort,
  migrateWithKeys,
  ownPostgresUnavailable,
  startOwnPostgres,
  type OwnPostgres,
} from '../support/own-postgres';
import { createAppLogin } from '../support/test-db';
import {
  startServiceProcess,
  waitFor,
  WORKER_ARGS,
  type ServiceProcess,
} from '../support/service-process';

jest.setTimeout(240_000);

const unavailable = ownPostgresUnavailable();
if (unavailable && process.env.CI) throw new Error(`outage tests must run in CI: ${unavailable}`);
if (unavailable) console.warn(`Skipping the PostgreSQL outage tests: ${unavailable}`);
const describeOwnPg = unavailable ? describe.skip : describe;

/**
 * PostgreSQL stopped and restarted under the real service (a child process), on a server this
 * test started itself: the process must live through it, answer 503 meanwhile, and resume alone.
 */
describeOwnPg('PostgreSQL outages', () => {
  const QUERY_TIMEOUT_MS = 5000;
  let db: OwnPostgres;
  let dataDir: string;
  let service: ServiceProcess | undefined;
  let keys: { ingest: string; support: string; admin: string };
  const files = new MediaFiles();

  const get = (url: string, key = keys.support) =>
    fetch(`${service!.url}${url}`, {
      headers: { Authorization: `Bearer ${key}` },
      signal: AbortSignal.timeout(20_000),
    });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const json = async (res: Response): Promise<any> => res.json();

  function expectAlive(): void {
    if (!service!.alive()) {
      throw new Error(
        `the service exited (${service!.proc.exitCode ?? service!.proc.signalCode}); its last output:\n${service!.output().slice(-4000)}`,
      );
    }
  }

  const stagingFiles = (): string[] => {
    const dir = path.join(dataDir, 'blobs', 'staging');
    return existsSync(dir) ? readdirSync(dir) : [];
  };

  /** While the database is down: the process lives, and answers 503 dependency_unavailable. */
  async function expectOutageAnswers(itemId: string): Promise<void> {
    expectAlive();
    const ready = await fetch(`${service!.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    expect(ready.status).toBe(503);
    const res = await get(`/v1/evidence/${itemId}`);
    const body = await json(res);
    expect([res.status, body.code]).toEqual([503, 'dependency_unavailable']);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  }

  beforeAll(async () => {
    db = await startOwnPostgres();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-outage-db-'));
    // Migrations and keys, as an operator would before starting the service.
    keys = await migrateWithKeys(db.url, dataDir, {
      ingest: 'ingest',
      support: 'support',
      admin: 'admin',
    });
    // Two logins, as the harness runs every API suite: the service as a login that owns nothing.
    const login = await createAppLogin(db.url);
    service = await startServiceProcess(
      {
        DATABASE_URL: db.url,
        APP_DATABASE_URL: login.url(db.url),
        DATA_DIR: dataDir,
        LOG_LEVEL: 'info',
        WORKERS: '1',
        MEDIA_CONCURRENCY: '1',
        MEDIA_RETRY_DELAY_SECONDS: '1',
        AUTH_CACHE_TTL_MS: '0',
        SCRUB_FULL_PASS_DAYS: '1',
        SCRUB_INTERVAL_MINUTES: '1440',
        CHECKPOINT_INTERVAL_MINUTES: '1',
        DATABASE_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
      },
      await freePort(),
    );
    await service.ready();
  });

  afterAll(async () => {
    await service?.kill();
    await db?.destroy();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    files.cleanup();
  });

  afterEach(async () => {
    // A failed test must not leave the next one without its database.
    await db.thaw();
    await db.start().catch(() => undefined);
    if (service?.alive()) await service.ready().catch(() => undefined);
  });

  it('answers 503 within the query timeout while the database is frozen (SIGSTOP), and recovers after SIGCONT', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    // Idle pooled connections: the requests below use them, as a busy service would.
    const warm = await Promise.all([1, 2, 3].map(() => get(`/v1/evidence/${missing}`)));
    expect(warm.map((r) => r.status)).toEqual([404, 404, 404]);
    await db.freeze();
    try {
      const started = Date.now();
      const res = await get(`/v1/evidence/${missing}`);
      const elapsed = Date.now() - started;
      const body = await json(res);
      expect([res.status, body.code]).toEqual([503, 'dependency_unavailable']);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      // The query timeout plus the audit trail's 3 s wait for the refusal's record (which cannot
      // be written either); not the client's 20 s patience, nor the 10 s connection timeout.
      expect(elapsed).toBeGreaterThanOrEqual(QUERY_TIMEOUT_MS - 500);
      expect(elapsed).toBeLessThan(QUERY_TIMEOUT_MS + 3000 + 2500);
      expectAlive();
    } finally {
      await db.thaw();
    }
    // Recovered without a restart: the frozen queries' connections answer again, or are replaced.
    await waitFor(
      'the service to answer from the database again',
      async () => ((await get(`/v1/evidence/${missing}`)).status === 404 ? true : undefined),
      30_000,
      250,
    );
    await service!.ready(30_000);
    // A worker's fetch that waited out the freeze took its jobs for real: none is left "active"
    // with no worker running it (a fetch given up client-side still ran on the server once it
    // thawed, and the job it marked blocked its queue until it expired: six hours for a scrub).
    await waitFor(
      'no custody job left active',
      async () => {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        try {
          const { rows } = await client.query<{ n: number }>(
            `select count(*)::int as n from pgboss.job where name like 'custody-%' and state = 'active'`,
          );
          return rows[0]!.n === 0 ? true : undefined;
        } finally {
          await client.end();
        }
      },
      30_000,
      250,
    );
    expectAlive();
  });

  it('lives through a media job whose database goes away, answers 503 meanwhile, and finishes the job after', async () => {
    const clip = files.mov(4);
    const res = await upload(service!.url, keys.ingest, [['kind', 'packing_video']], {
      filename: 'outage.mov',
      content: clip,
    });
    expect(res.status).toBe(201);
    const id = res.json().id as string;
    // The job has started (ffmpeg runs) when the database goes away.
    await waitFor(
      'the media job to start',
      async () => {
        const m = (await json(await get(`/v1/evidence/${id}`))).media;
        return m?.status === 'processing' ? true : undefined;
      },
      30_000,
      50,
    );
    const logBefore = service!.output().length;
    await db.stop();

    // The attempt ends while the database is down (its outcome cannot be recorded); the process
    // answers 503 all along, and for a few seconds more.
    await waitFor(
      'the media attempt to end during the outage',
      async () => {
        await expectOutageAnswers(id);
        return service!.output().slice(logBefore).includes('media attempt failed')
          ? true
          : undefined;
      },
      60_000,
      300,
    );
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      await expectOutageAnswers(id);
      await new Promise((r) => setTimeout(r, 300));
    }

    await db.start();
    // It resumes alone: ready again, and the job done after the database came back.
    await service!.ready(60_000);
    const media = await waitFor(
      'the media job to finish after the restart',
      async () => {
        expectAlive();
        const m = (await json(await get(`/v1/evidence/${id}`))).media;
        return m?.status === 'done' ? m : undefined;
      },
      120_000,
      500,
    );
    expect(media.probe.video.codec).toBe('mpeg4');
    const content = await get(`/v1/evidence/${id}/content`);
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(clip));
  });

  it('lives through a scrub whose database goes away mid-run; scrubs and checkpoints resume after', async () => {
    const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        return (await client.query<R>(text, values)).rows;
      } finally {
        await client.end();
      }
    };
    // Enough bytes that re-reading and hashing them all takes a while (every scrub run reads
    // every item here: SCRUB_FULL_PASS_DAYS=1, SCRUB_INTERVAL_MINUTES=1440).
    for (let i = 0; i < 6; i++) {
      const body = Buffer.concat([
        Buffer.from([0xff, 0xd8, 0xff, 0xe0]),
        randomBytes(40 * 1024 * 1024),
      ]);
      const res = await upload(service!.url, keys.ingest, [['kind', 'photo']], {
        filename: `scrub-${i}.jpg`,
        contentType: 'image/jpeg',
        content: body,
      });
      expect(res.status).toBe(201);
    }
    const since = new Date();
    const queued = await fetch(`${service!.url}/v1/custody/jobs/scrub`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${keys.admin}` },
    });
    expect(queued.status).toBe(202);
    // The run has started (it records itself first) when the database goes away.
    const [run] = await waitFor(
      'the scrub run to start',
      async () => {
        const rows = await query<{ id: string; finished_at: Date | null }>(
          `select id, finished_at from custody_runs where job = 'scrub' and started_at > $1`,
          [since],
        );
        return rows.length ? rows : undefined;
      },
      60_000,
      25,
    ).catch(async (err) => {
      const jobs = await query(
        `select name, state, created_on, started_on, completed_on, output from pgboss.job order by created_on`,
      );
      const runs = await query(`select * from custody_runs order by started_at`);
      throw new Error(
        `${String(err)}\n${JSON.stringify(jobs, null, 1)}\n${JSON.stringify(runs, null, 1)}\n${service!.output().slice(-3000)}`,
      );
    });
    const logBefore = service!.output().length;
    // Frozen while the database goes away, so that the run is caught mid-way however fast the
    // machine hashes: it finds the database gone when it carries on.
    service!.proc.kill('SIGSTOP');
    try {
      await db.stop();
    } finally {
      service!.proc.kill('SIGCONT');
    }
    const refused = await fetch(`${service!.url}/v1/custody/jobs/scrub`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${keys.admin}` },
    });
    expect([refused.status, (await json(refused)).code]).toEqual([503, 'dependency_unavailable']);
    const checkpoint = await fetch(`${service!.url}/v1/custody/checkpoints`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${keys.admin}` },
    });
    expect([checkpoint.status, (await json(checkpoint)).code]).toEqual([
      503,
      'dependency_unavailable',
    ]);
    // The run ends (it cannot record its reads) and worker polls and custody ticks fail meanwhile.
    await waitFor(
      'the scrub job to end during the outage (its outcome waiting for the database)',
      async () => {
        expectAlive();
        return service!.output().slice(logBefore).includes('job outcome pending')
          ? true
          : undefined;
      },
      60_000,
      300,
    );
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      expectAlive();
      await new Promise((r) => setTimeout(r, 300));
    }
    await db.start();
    const restarted = new Date();
    await service!.ready(60_000);
    const again = await fetch(`${service!.url}/v1/custody/jobs/scrub`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${keys.admin}` },
    });
    expect(again.status).toBe(202);
    const done = await waitFor(
      'a whole scrub run after the restart',
      async () => {
        const rows = await query<{ outcome: string; stats: { verified?: number } }>(
          `select outcome, stats from custody_runs
            where job = 'scrub' and started_at > $1 and finished_at is not null and id <> $2`,
          [since, run!.id],
        );
        return rows.length ? rows[0] : undefined;
      },
      90_000,
      500,
    );
    expect(done.outcome).toBe('ok');
    // The interrupted run was caught mid-way: it never recorded an end (the database was gone).
    const [interrupted] = await query<{ finished_at: Date | null }>(
      `select finished_at from custody_runs where id = $1`,
      [run!.id],
    );
    expect(interrupted!.finished_at).toBeNull();
    // The scheduled checkpoints go on by themselves (every minute here).
    await waitFor(
      'a scheduled checkpoint run after the restart',
      async () => {
        const rows = await query(
          `select 1 from custody_runs
            where job = 'checkpoint' and started_at > $1 and outcome = 'ok'`,
          [restarted],
        );
        return rows.length ? true : undefined;
      },
      150_000,
      1000,
    );
    expectAlive();
  });

  it('refuses an upload in progress when the database goes away: 503, nothing partial; acknowledged uploads stay', async () => {
    const kept = files.mov(2);
    const first = await upload(service!.url, keys.ingest, [['kind', 'packing_video']], {
      filename: 'kept.mov',
      content: kept,
    });
    if (first.status !== 201) {
      throw new Error(
        `upload after the restart: ${first.status} ${first.body}\n${service!.output().slice(-3000)}`,
      );
    }
    const keptId = first.json().id as string;

    const stagedBefore = stagingFiles();
    // A slow upload: half its bytes, then the database stops, then the rest.
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    let release!: () => void;
    const halfway = new Promise<void>((r) => (release = r));
    const { contentType, stream } = multipartBody(
      [['kind', 'photo']],
      [
        {
          filename: 'cut.jpg',
          contentType: 'image/jpeg',
          content: (async function* () {
            yield Buffer.from([0xff, 0xd8, 0xff, 0xe0]);
            yield body.subarray(0, body.length / 2);
            await halfway;
            yield body.subarray(body.length / 2);
          })(),
        },
      ],
    );
    const pending = rawRequest(
      `${service!.url}/v1/evidence`,
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${keys.ingest}`, 'Content-Type': contentType },
      },
      stream,
    );
    await new Promise((r) => setTimeout(r, 300));
    await db.stop();
    release();
    const res = await pending;
    expect([res.status, res.json().code]).toEqual([503, 'dependency_unavailable']);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expectAlive();

    await db.start();
    await service!.ready(60_000);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        `select id from evidence_items where original_filename = 'cut.jpg'`,
      );
      expect(rows).toEqual([]);
    } finally {
      await client.end();
    }
    // Nothing of the refused upload left in staging (its bytes go with the failed request).
    await waitFor(
      "the refused upload's staging file to go",
      async () =>
        stagingFiles().filter((f) => !stagedBefore.includes(f)).length === 0 ? true : undefined,
      10_000,
    );
    // The upload acknowledged before the outage is there with its bytes.
    const content = await get(`/v1/evidence/${keptId}/content`);
    expect(content.status).toBe(200);
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(kept));
  });

  it('archives the first upload after a restart, sent before the instance’s next heartbeat', async () => {
    await db.stop();
    await db.start();
    await service!.ready(60_000);
    // The instance lost its session with the restart; its heartbeat comes every 15 s. An upload
    // arriving first must not be staged under the id given up (it was refused with 503).
    const clip = files.mov(2);
    const res = await upload(service!.url, keys.ingest, [['kind', 'packing_video']], {
      filename: 'first-after-restart.mov',
      content: clip,
    });
    expect([res.status, res.status === 201 ? '' : res.body]).toEqual([201, '']);
    const content = await get(`/v1/evidence/${res.json().id as string}/content`);
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(clip));
    expectAlive();
  });

  it("refuses a resumable upload's PATCH with 503 while the database is down, and completes it after", async () => {
    const clip = files.mov(2);
    const station = { key: keys.ingest } as MintedKey;
    const metadata = { kind: 'packing_video', sha256: sha256(clip) };
    let url: string;
    try {
      await tusUpload(service!.url, station, clip, metadata, {
        chunkSize: 64 * 1024,
        abortAfter: 64 * 1024,
      });
      throw new Error('the upload was expected to stop after its first chunk');
    } catch (err) {
      if (!(err instanceof AbortedUpload)) throw err;
      url = err.url;
    }
    await db.stop();
    const head = await fetch(url, {
      method: 'HEAD',
      headers: { Authorization: `Bearer ${keys.ingest}`, 'Tus-Resumable': '1.0.0' },
    });
    expect(head.status).toBe(503);
    const patch = await fetch(url, {
      method: 'PATCH',
      headers: {
        Authorization: `Bearer ${keys.ingest}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': String(64 * 1024),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: clip.subarray(64 * 1024),
    });
    expect([patch.status, (await json(patch)).code]).toEqual([503, 'dependency_unavailable']);
    expect(Number(patch.headers.get('retry-after'))).toBeGreaterThan(0);
    expectAlive();

    await db.start();
    await service!.ready(60_000);
    const done = await tusUpload(service!.url, station, clip, metadata, {
      chunkSize: 256 * 1024,
      uploadUrl: url,
    });
    expect(done.itemId).toMatch(/^[0-9a-f-]{36}$/);
    const content = await get(`/v1/evidence/${done.itemId}/content`);
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(clip));
  });
});

/** The same through `npm run worker`: a worker process of its own must live through it too. */
describeOwnPg('PostgreSQL outage under a worker process', () => {
  let db: OwnPostgres;
  let dataDir: string;
  let service: ServiceProcess | undefined;
  let worker: ServiceProcess | undefined;
  let keys: { ingest: string; support: string };
  const files = new MediaFiles();

  beforeAll(async () => {
    db = await startOwnPostgres();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-outage-worker-'));
    const ctx = await AppContext.fromConfig(
      loadConfig({ DATABASE_URL: db.url, DATA_DIR: dataDir, LOG_LEVEL: 'silent' }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
    try {
      keys = {
        ingest: (await ctx.apiKeys.create('ingest', 'worker station')).key,
        support: (await ctx.apiKeys.create('support', 'worker support')).key,
      };
    } finally {
      await ctx.close();
    }
    const login = await createAppLogin(db.url);
    const env = {
      DATABASE_URL: db.url,
      APP_DATABASE_URL: login.url(db.url),
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      MEDIA_CONCURRENCY: '1',
      MEDIA_RETRY_DELAY_SECONDS: '1',
    };
    // The service only queues (WORKERS=0); the worker does the media work.
    service = await startServiceProcess({ ...env, WORKERS: '0' }, await freePort());
    await service.ready();
    worker = await startServiceProcess(env, 0, WORKER_ARGS);
    await waitFor(
      'the worker to start',
      async () => {
        if (!worker!.alive()) throw new Error(`the worker exited:\n${worker!.output()}`);
        return worker!.output().includes('worker running') ? true : undefined;
      },
      60_000,
    );
  });

  afterAll(async () => {
    await worker?.kill();
    await service?.kill();
    await db?.destroy();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    files.cleanup();
  });

  it('keeps the worker alive through a media job whose database goes away, and finishes the job after', async () => {
    const get = (url: string) =>
      fetch(`${service!.url}${url}`, { headers: { Authorization: `Bearer ${keys.support}` } });
    const workerAlive = () => {
      if (!worker!.alive()) {
        throw new Error(`the worker exited; its last output:\n${worker!.output().slice(-4000)}`);
      }
    };
    const clip = files.mov(4);
    const res = await upload(service!.url, keys.ingest, [['kind', 'packing_video']], {
      filename: 'worker-outage.mov',
      content: clip,
    });
    expect(res.status).toBe(201);
    const id = res.json().id as string;
    await waitFor(
      'the media job to start',
      async () => {
        const m = (
          (await (await get(`/v1/evidence/${id}`)).json()) as { media?: { status: string } }
        ).media;
        return m?.status === 'processing' ? true : undefined;
      },
      30_000,
      50,
    );
    const logBefore = worker!.output().length;
    await db.stop();
    await waitFor(
      'the media attempt to end during the outage',
      async () => {
        workerAlive();
        return worker!.output().slice(logBefore).includes('media attempt failed')
          ? true
          : undefined;
      },
      60_000,
      300,
    );
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      workerAlive();
      await new Promise((r) => setTimeout(r, 300));
    }
    await db.start();
    await service!.ready(60_000);
    await waitFor(
      'the media job to finish after the restart',
      async () => {
        workerAlive();
        const m = (
          (await (await get(`/v1/evidence/${id}`)).json()) as { media?: { status: string } }
        ).media;
        return m?.status === 'done' ? true : undefined;
      },
      120_000,
      500,
    );
  });
});
