import { Readable } from 'node:stream';
import { sql } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../../src/config';
import { buildContext, type AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { bearer, DRIVERS, startTestApp, type Driver, type TestApp } from '../support/harness';
import { eventually, leftovers, storeOf } from '../support/leftovers';
import { fakeMedia, sha256 } from '../support/media';
import { rawRequest, upload } from '../support/multipart';

jest.setTimeout(120_000);

/** A PUT of raw bytes to a call, as a PBX sends it; status 0 when the connection failed. */
function push(app: TestApp, callId: string, body: Buffer) {
  return rawRequest(
    `${app.url}/v1/calls/${encodeURIComponent(callId)}/recording?source=race`,
    {
      method: 'PUT',
      headers: {
        ...bearer(app.keys.ingest),
        'Content-Type': 'audio/wav',
        'Content-Length': String(body.length),
      },
    },
    Readable.from([body]),
  ).catch(() => ({ status: 0, json: () => ({}) }) as { status: number; json: () => any }); // eslint-disable-line @typescript-eslint/no-explicit-any
}

const RETRYABLE = new Set([503]);

/**
 * Refused and racing uploads leave nothing in the store: every evidence blob has its row, and no
 * staging object outlives its request.
 */
describe.each(DRIVERS)(
  'nothing left behind by refused or racing uploads (%s)',
  (driver: Driver) => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp(driver);
    });
    afterAll(() => app.close());

    const stored = () => leftovers(app.ctx.db, storeOf(app.dataDir, app.s3));

    it('50 concurrent pushes of different recordings for one call: one item, 409 for the rest, no orphan blob', async () => {
      const bodies = Array.from({ length: 50 }, () => fakeMedia('wav', 96 * 1024));
      const answers = await Promise.all(bodies.map((b) => push(app, 'race-1', b)));
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      for (const a of answers) {
        if (a.status === 201) continue;
        expect(a.status).toBe(409);
        expect(['call_id_conflict', 'recording_of_another_call']).toContain(a.json().code);
      }
      const rows = await app.ctx.db
        .selectFrom('evidence_items')
        .select('sha256')
        .where('call_id', '=', 'race-1')
        .execute();
      expect(rows).toHaveLength(1);
      expect(await stored()).toEqual({ orphans: [], staging: [] });
    });

    it('50 concurrent retries under one Idempotency-Key: one item, every answer that item or a clean retryable error, no orphan', async () => {
      const clip = fakeMedia('mp4', 128 * 1024);
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          upload(
            app.url,
            app.keys.ingest.key,
            [['kind', 'packing_video']],
            { filename: 'retry.mp4', content: clip },
            { 'Idempotency-Key': 'retry-50' },
          ),
        ),
      );
      const ids = new Set<string>();
      for (const a of answers) {
        if (RETRYABLE.has(a.status)) {
          expect(a.headers['retry-after']).toBeDefined();
          continue;
        }
        expect([a.status, a.status < 300 ? '' : a.body]).toEqual([
          a.status < 300 ? a.status : 201,
          '',
        ]);
        ids.add(a.json().id);
      }
      expect(ids.size).toBe(1);
      expect(answers.filter((a) => a.status === 201).length).toBeGreaterThanOrEqual(1);
      const rows = await app.ctx.db
        .selectFrom('evidence_items')
        .select('id')
        .where('original_filename', '=', 'retry.mp4')
        .execute();
      expect(rows.map((r) => r.id)).toEqual([...ids]);
      expect(await stored()).toEqual({ orphans: [], staging: [] });
    });

    it('50 concurrent different clips under one Idempotency-Key: one item, the rest refused, no orphan', async () => {
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          upload(
            app.url,
            app.keys.ingest.key,
            [['kind', 'packing_video']],
            { filename: 'reuse.mp4', content: fakeMedia('mp4', 96 * 1024) },
            { 'Idempotency-Key': 'reused-50' },
          ),
        ),
      );
      expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
      for (const a of answers.filter((x) => x.status !== 201)) {
        expect([a.status, a.json().code]).toEqual([422, 'idempotency_key_reused']);
      }
      expect(await stored()).toEqual({ orphans: [], staging: [] });
    });
  },
);

/**
 * Two instances share one database and store: a start-up sweep on one never touches staging that
 * a live request of the other is writing, and removes at once what an ended instance left.
 */
describe.each(DRIVERS)('the leftover sweep across instances (%s)', (driver: Driver) => {
  let a: TestApp;
  let ctxB: AppContext;
  const configFor = () =>
    loadConfig({
      DATABASE_URL: a.databaseUrl,
      DATA_DIR: a.dataDir,
      PORT: '0',
      LOG_LEVEL: 'silent',
      DATABASE_POOL_SIZE: '3',
      ...a.s3?.env,
    });
  beforeAll(async () => {
    a = await startTestApp(driver);
    ctxB = await buildContext(configFor(), createLogger('silent'), {
      migrate: false,
      mediaTools: false,
    });
  });
  afterAll(async () => {
    await ctxB.close();
    await a.close();
  });

  const stored = () => leftovers(a.ctx.db, storeOf(a.dataDir, a.s3));

  it("never removes the staging of another live instance's request", async () => {
    const body = fakeMedia('wav', 3 * 1024 * 1024);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* slow() {
      yield body.subarray(0, 512 * 1024);
      await held;
      yield body.subarray(512 * 1024);
    }
    const answer = rawRequest(
      `${a.url}/v1/calls/live-1/recording?source=sweep`,
      {
        method: 'PUT',
        headers: {
          ...bearer(a.keys.ingest),
          'Content-Type': 'audio/wav',
          'Content-Length': String(body.length),
        },
      },
      Readable.from(slow()),
    );
    if (driver === 'fs') {
      // On disk the staging file exists from the first byte; it is A's, and A is alive.
      const staging = await eventually(
        async () => (await stored()).staging,
        (s) => s.length === 1,
      );
      expect(staging[0]).toMatch(new RegExp(`^staging/${a.ctx.instance.id}\\.`));
    }
    const report = await ctxB.leftovers.runOnce();
    expect(report?.stagingRemoved).toBe(0);
    release();
    expect((await answer).status).toBe(201);
    expect(await stored()).toEqual({ orphans: [], staging: [] });
  });

  it('removes at once the staging and the unclaimed blobs of an instance that has ended', async () => {
    const ctxC = await buildContext(configFor(), createLogger('silent'), {
      migrate: false,
      mediaTools: false,
    });
    const cut = await ctxC.blobStore.writeStaging(Readable.from([fakeMedia('wav', 4096)]));
    expect(cut.startsWith(`staging/${ctxC.instance.id}.`)).toBe(true);
    // C promoted a blob and ended before its row committed (the claim is what C left).
    const bytes = fakeMedia('wav', 8192);
    const claim = await ctxC.ingest['opts'].claims!.claim(sha256(bytes));
    const { key } = await ctxC.blobStore.promote(
      await ctxC.blobStore.writeStaging(Readable.from([bytes])),
      claim.sha256,
      bytes.length,
    );
    // While C lives, B's sweep leaves all of it alone.
    expect(await ctxB.leftovers.runOnce()).toEqual({
      stagingRemoved: 0,
      claimsDropped: 0,
      instancesForgotten: 0,
    });
    expect((await stored()).orphans).toEqual([key]);
    await ctxC.close();
    const report = await ctxB.leftovers.runOnce();
    // C ended cleanly (its registration went with it); a killed one is tested in kill-leftovers.
    expect(report).toMatchObject({ stagingRemoved: 1, claimsDropped: 1 });
    expect(await stored()).toEqual({ orphans: [], staging: [] });
  });
});

/**
 * An instance whose database session is lost looks gone: another instance may take its claims and
 * delete the blobs. The request that was committing one must then fail (503), never acknowledge an
 * item whose bytes were just removed; the instance registers again and the retry is archived.
 */
describe('an instance that lost its registration mid-commit', () => {
  let a: TestApp;
  let ctxB: AppContext;
  let releasePromote!: () => void;
  let promoted!: () => void;
  const atPromote = new Promise<void>((r) => (promoted = r));
  const held = new Promise<void>((r) => (releasePromote = r));
  let holdNext = true;
  beforeAll(async () => {
    a = await startTestApp(
      'fs',
      {},
      {
        // The real disk store; the first promotion is held right after it completed.
        wrapBlobStore: (store) =>
          Object.assign(Object.create(store) as typeof store, {
            promote: async (...args: Parameters<typeof store.promote>) => {
              const result = await store.promote(...args);
              if (holdNext && args[3] !== 'derived') {
                holdNext = false;
                promoted();
                await held;
              }
              return result;
            },
          }),
      },
    );
    ctxB = await buildContext(
      loadConfig({
        DATABASE_URL: a.databaseUrl,
        DATA_DIR: a.dataDir,
        PORT: '0',
        LOG_LEVEL: 'silent',
        DATABASE_POOL_SIZE: '3',
      }),
      createLogger('silent'),
      { migrate: false, mediaTools: false },
    );
  });
  afterAll(async () => {
    await ctxB.close();
    await a.close();
  });

  it('answers 503 rather than acknowledge an item whose blob another instance removed', async () => {
    const body = fakeMedia('wav', 200 * 1024);
    const answer = push(a, 'fenced-1', body);
    await atPromote;
    // A's instance session ends (as a database restart or a network cut would end it).
    const { rows } = await sql<{ pid: number }>`
      select l.pid from pg_locks l join service_instances i on l.objid = i.lock_key::oid
      where l.locktype = 'advisory' and l.classid = ${0x696e73}::int::oid and i.id = ${a.ctx.instance.id}
        and l.database = (select oid from pg_database where datname = current_database())`.execute(
      ctxB.db,
    );
    expect(rows).toHaveLength(1);
    const owner = new pg.Client({ connectionString: a.databaseUrl });
    await owner.connect();
    await owner.query('select pg_terminate_backend($1::int)', [rows[0]!.pid]);
    await owner.end();
    expect(await ctxB.instance.isLive(ctxB.db, a.ctx.instance.id)).toBe(false);
    // B takes A's claim and, with nothing else needing it, deletes the blob A just promoted.
    expect(await ctxB.leftovers.runOnce()).toMatchObject({ claimsDropped: 1 });
    releasePromote();
    const res = await answer;
    expect([res.status, res.json().code]).toEqual([503, 'not_ready']);
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
    // A registers again on its next heartbeat; the client's retry is archived whole.
    await a.ctx.instance.heartbeat();
    expect(await ctxB.instance.isLive(ctxB.db, a.ctx.instance.id)).toBe(true);
    const retry = await push(a, 'fenced-1', body);
    expect(retry.status).toBe(201);
    const content = await fetch(`${a.url}/v1/evidence/${retry.json().id}/content`, {
      headers: bearer(a.keys.admin),
    });
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(body));
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
  });
});
