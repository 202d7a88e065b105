import { Readable } from 'node:stream';
import { sql } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../../src/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { BlobClaimRepository } from '../../src/ingest/blob-claim.repository';
import { BlobClaims, type BlobClaim } from '../../src/ingest/blob-claims';
import { InstanceRegistry } from '../../src/jobs/instance-registry';
import { ServiceInstanceRepository } from '../../src/jobs/service-instance.repository';
import type { BlobStore } from '../../src/storage/blob-store';
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
    ctxB = await AppContext.fromConfig(
      configFor(),
      { migrate: false, mediaTools: false },
      { logger: createLogger('silent') },
    );
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
    const ctxC = await AppContext.fromConfig(
      configFor(),
      { migrate: false, mediaTools: false },
      { logger: createLogger('silent') },
    );
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
    ctxB = await AppContext.fromConfig(
      loadConfig({
        DATABASE_URL: a.databaseUrl,
        DATA_DIR: a.dataDir,
        PORT: '0',
        LOG_LEVEL: 'silent',
        DATABASE_POOL_SIZE: '3',
      }),
      { migrate: false, mediaTools: false },
      { logger: createLogger('silent') },
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

/** Ends an instance's registry session (as a database restart or a network cut would end it). */
async function endSession(db: AppContext['db'], databaseUrl: string, instanceId: string) {
  const { rows } = await sql<{ pid: number }>`
    select l.pid from pg_locks l join service_instances i on l.objid = i.lock_key::oid
    where l.locktype = 'advisory' and l.classid = ${0x696e73}::int::oid and i.id = ${instanceId}
      and l.database = (select oid from pg_database where datname = current_database())`.execute(
    db,
  );
  expect(rows).toHaveLength(1);
  const owner = new pg.Client({ connectionString: databaseUrl });
  await owner.connect();
  await owner.query('select pg_terminate_backend($1::int)', [rows[0]!.pid]);
  await owner.end();
}

/**
 * Review findings 1-4 and 9 on the claim fence: two instances sharing one database and one disk
 * store; A's promotions can be held before or after they run, B's deletes can fail after the
 * store carried them out (a DeleteObject that timed out on the client).
 */
describe('claims under lost registrations and failing deletes', () => {
  let a: TestApp;
  let ctxB: AppContext;
  let beforePromote: (() => Promise<void>) | undefined;
  let afterPromote: (() => Promise<void>) | undefined;
  let failDeleteAfterIt = false;
  let beforeDelete: (() => Promise<void>) | undefined;
  const hold = () => {
    let release!: () => void;
    let reached!: () => void;
    const at = new Promise<void>((r) => (reached = r));
    const gate = new Promise<void>((r) => (release = r));
    return {
      at,
      release,
      hook: async () => {
        reached();
        await gate;
      },
    };
  };
  beforeAll(async () => {
    a = await startTestApp(
      'fs',
      {},
      {
        wrapBlobStore: (store) =>
          Object.assign(Object.create(store) as typeof store, {
            promote: async (...args: Parameters<typeof store.promote>) => {
              const derived = args[3] === 'derived';
              const before = derived ? undefined : beforePromote;
              beforePromote = derived ? beforePromote : undefined;
              await before?.();
              const result = await store.promote(...args);
              const after = derived ? undefined : afterPromote;
              afterPromote = derived ? afterPromote : undefined;
              await after?.();
              return result;
            },
          }),
      },
    );
    ctxB = await AppContext.fromConfig(
      loadConfig({
        DATABASE_URL: a.databaseUrl,
        DATA_DIR: a.dataDir,
        PORT: '0',
        LOG_LEVEL: 'silent',
        DATABASE_POOL_SIZE: '3',
      }),
      { migrate: false, mediaTools: false },
      {
        logger: createLogger('silent'),
        wrapBlobStore: (store: BlobStore) =>
          Object.assign(Object.create(store) as BlobStore, {
            delete: async (key: string) => {
              const before = beforeDelete;
              beforeDelete = undefined;
              await before?.();
              await store.delete(key);
              if (failDeleteAfterIt) {
                failDeleteAfterIt = false;
                throw new Error('DeleteObject timed out (the store carried it out)');
              }
            },
          }),
      },
    );
  });
  afterAll(async () => {
    await ctxB.close();
    await a.close();
  });
  const claimsOf = (ctx: AppContext) => ctx.ingest['opts'].claims!;
  const claimRows = () => a.ctx.db.selectFrom('blob_claims').selectAll().execute();
  const registerAgain = async () => {
    await a.ctx.instance.heartbeat();
    expect(a.ctx.instance.registered).toBe(true);
  };

  it('finding 1: a drop whose blob delete fails after the store carried it out still fences the request (503, never 201 without bytes)', async () => {
    const body = fakeMedia('wav', 150 * 1024);
    const h = hold();
    afterPromote = h.hook;
    const answer = push(a, 'fence-delete-1', body);
    await h.at;
    await endSession(ctxB.db, a.databaseUrl, a.ctx.instance.id);
    // B takes A's claim and deletes the blob, but its delete "fails": before the fix the drop's
    // transaction then rolled back, the claim came back and A committed an item with no bytes.
    failDeleteAfterIt = true;
    expect(
      await claimsOf(ctxB)
        .reconcile()
        .catch(() => 'failed'),
    ).toBe('failed');
    h.release();
    const res = await answer;
    expect([res.status, res.json().code]).toEqual([503, 'not_ready']);
    // The drop cut off after its fence committed is finished by B's next reconcile.
    await claimsOf(ctxB).reconcile();
    expect(await claimRows()).toEqual([]);
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
    await registerAgain();
    const retry = await push(a, 'fence-delete-1', body);
    expect(retry.status).toBe(201);
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
  });

  it('finding 2: a claim dropped before the promotion wrote the blob leaves no orphan behind', async () => {
    const body = fakeMedia('wav', 120 * 1024);
    const h = hold();
    beforePromote = h.hook;
    const answer = push(a, 'fence-orphan-1', body);
    await h.at;
    await endSession(ctxB.db, a.databaseUrl, a.ctx.instance.id);
    // B drops A's claim while nothing is at the blob's address yet (claims only: the staging
    // sweep would take A's staging and end the request differently).
    expect(await claimsOf(ctxB).reconcile()).toBe(1);
    h.release(); // the promotion writes the blob now
    const res = await answer;
    expect([res.status, res.json().code]).toEqual([503, 'not_ready']);
    expect(await claimRows()).toEqual([]);
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
    await registerAgain();
  });

  it('finding 3: an instance that lost its session registers again before it stages a new upload, under a new id its staging follows', async () => {
    const oldId = a.ctx.instance.id;
    await endSession(ctxB.db, a.databaseUrl, oldId);
    await eventually(
      async () => a.ctx.instance.registered,
      (r) => !r,
    );
    expect(a.ctx.instance.registered).toBe(false);
    // The upload arrives before the next heartbeat: the instance registers again first, so the
    // upload is staged under the new id (staged under the given-up one, it was refused with 503).
    const body = fakeMedia('wav', 64 * 1024);
    const accepted = await push(a, 'generation-1', body);
    expect(accepted.status).toBe(201);
    const newId = a.ctx.instance.id;
    expect(newId).not.toBe(oldId);
    expect(a.ctx.instance.registered).toBe(true);
    // Another instance that found the old id gone (and cached that) is right for good.
    expect(await ctxB.instance.isLive(ctxB.db, oldId)).toBe(false);
    expect(await ctxB.instance.isLive(ctxB.db, newId)).toBe(true);
    const staged = await a.ctx.blobStore.writeStaging(Readable.from([fakeMedia('wav', 1024)]));
    expect(staged.startsWith(`staging/${newId}.`)).toBe(true);
    await a.ctx.blobStore.discardStaging(staged);
    expect((await push(a, 'generation-1', body)).status).toBe(200); // the same call: a replay
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
  });

  it('finding 4: a heartbeat that hangs gives the session up and registers again', async () => {
    const registry = new InstanceRegistry({
      connectionString: a.databaseUrl,
      repo: new ServiceInstanceRepository(),
      logger: createLogger('silent'),
      opts: {
        heartbeatMs: 3_600_000,
        queryTimeoutMs: 1_000,
      },
    });
    await registry.start();
    const oldId = registry.id;
    // The heartbeat's update waits on a row lock held elsewhere: a stand-in for a server that
    // no longer answers on a half-open connection.
    const blocker = new pg.Client({ connectionString: a.databaseUrl });
    await blocker.connect();
    await blocker.query('begin');
    await blocker.query('select 1 from service_instances where id = $1 for update', [oldId]);
    try {
      const outcome = await Promise.race([
        registry.heartbeat().then(
          () => 'answered',
          () => 'gave up',
        ),
        new Promise((r) => setTimeout(() => r('still hanging'), 8_000).unref()),
      ]);
      expect(outcome).toBe('gave up');
      expect(registry.registered).toBe(false);
    } finally {
      await blocker.query('commit');
      await blocker.end();
    }
    await registry.heartbeat();
    expect(registry.registered).toBe(true);
    expect(registry.id).not.toBe(oldId);
    expect(await ctxB.instance.isLive(ctxB.db, registry.id)).toBe(true);
    expect(
      await eventually(
        () => ctxB.instance.isLive(ctxB.db, oldId),
        (live) => !live,
      ),
    ).toBe(false);
    await registry.close();
  });

  it('finding 1: the same bytes arriving while a drop deletes their blob wait for it, then write the blob again', async () => {
    const body = fakeMedia('wav', 90 * 1024);
    // B promoted these bytes for a request that failed; its drop is held just before the delete.
    const claim = await claimsOf(ctxB).claim(sha256(body));
    await ctxB.blobStore.promote(
      await ctxB.blobStore.writeStaging(Readable.from([body])),
      claim.sha256,
      body.length,
    );
    const h = hold();
    beforeDelete = h.hook;
    const dropped = claimsOf(ctxB).release(claim, false);
    await h.at;
    // A receives the same bytes: without the dropping fence it found the blob present, committed,
    // and B's delete then took the bytes of an acknowledged item.
    let answered = false;
    const answer = push(a, 'drop-wait-1', body).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 700));
    expect(answered).toBe(false);
    h.release();
    await dropped;
    const res = await answer;
    expect(res.status).toBe(201);
    const content = await fetch(`${a.url}/v1/evidence/${res.json().id}/content`, {
      headers: bearer(a.keys.admin),
    });
    expect(content.status).toBe(200);
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(body));
    expect(await claimRows()).toEqual([]);
    expect(await leftovers(a.ctx.db, storeOf(a.dataDir))).toEqual({ orphans: [], staging: [] });
  });

  it("finding 9: a reconcile never drops the instance's own claim placed after its in-flight snapshot", async () => {
    const registry = new InstanceRegistry({
      connectionString: a.databaseUrl,
      repo: new ServiceInstanceRepository(),
      logger: createLogger('silent'),
    });
    await registry.start();
    const repo = new BlobClaimRepository();
    let mine: BlobClaim | undefined;
    // The claim commits between the reconcile's snapshot of claims in flight and its query.
    const racing = Object.assign(Object.create(repo) as BlobClaimRepository, {
      notInFlight: async (...args: Parameters<BlobClaimRepository['notInFlight']>) => {
        mine ??= await claims.claim(sha256(fakeMedia('wav', 2048)));
        return repo.notInFlight(...args);
      },
    });
    const claims: BlobClaims = new BlobClaims({
      db: a.ctx.db,
      repo: racing,
      store: a.ctx.blobStore,
      instance: registry,
      logger: createLogger('silent'),
    });
    try {
      expect(await claims.reconcile()).toBe(0);
      await a.ctx.db.transaction().execute((tx) => claims.consume(tx, mine!));
      await claims.release(mine!, true);
    } finally {
      await registry.close();
    }
  });
});
