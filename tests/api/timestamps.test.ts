import { createPublicKey } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import request from 'supertest';
import { signedBytes, timestampKey } from '../../src/custody/checkpoint-timestamps';
import type { SignedCheckpoint } from '../../src/custody/checkpoint.service';
import { createDb } from '../../src/db/database';
import { cli } from '../support/bundle-cli';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';
import {
  makeTestPki,
  opensslVerify,
  startTestTsa,
  type TestPki,
  type TestTsa,
} from '../support/test-tsa';

/**
 * RFC 3161 trusted time for the audit checkpoints, against a local timestamp authority that
 * answers with `openssl ts -reply` (real tokens) and misbehaves on demand.
 */
describe('RFC 3161 timestamps of audit checkpoints', () => {
  let pki: TestPki;
  let otherPki: TestPki;
  let tsa: TestTsa;
  let app: TestApp | undefined;
  let warnings: jest.SpyInstance;

  beforeAll(async () => {
    [pki, otherPki] = await Promise.all([makeTestPki('Test TSA'), makeTestPki('Stranger TSA')]);
    tsa = await startTestTsa(pki);
  });
  afterAll(async () => {
    await tsa.close();
    pki.remove();
    otherPki.remove();
  });
  beforeEach(() => {
    tsa.mode = 'ok';
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  /** `timeoutMs`: 3 s leaves honest answers (openssl spawned under load) time enough. */
  const start = async (urls: string[], caFile = pki.caFile, timeoutMs = 3000) => {
    app = await startTestApp('fs', {
      TIMESTAMP_AUTHORITY_URLS: urls.join(','),
      TIMESTAMP_AUTHORITY_CA_FILE: caFile,
      TIMESTAMP_AUTHORITY_TIMEOUT_MS: String(timeoutMs),
    });
    // What the service logs (its logger is silent in tests): the TSA client logs through it.
    warnings = jest.spyOn(app.ctx.logger, 'warn');
    return app;
  };
  /** Something to checkpoint: an upload and a view (audit events). */
  const activity = async (a: TestApp) => {
    const res = await upload(a.url, a.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'c.mp4',
      content: fakeMedia('mp4', 3000),
    });
    expect(res.status).toBe(201);
    await request(a.url)
      .get(`/v1/evidence/${res.json().id}`)
      .set(bearer(a.keys.support))
      .expect(200);
  };
  const checkpoint = async (a: TestApp): Promise<SignedCheckpoint> => {
    const res = await request(a.url).post('/v1/custody/checkpoints').set(bearer(a.keys.admin));
    expect(res.status).toBe(201);
    return res.body.checkpoint as SignedCheckpoint;
  };
  const row = (a: TestApp, seq: number) =>
    a.ctx.db
      .selectFrom('checkpoint_timestamps')
      .selectAll()
      .where('seq', '=', seq)
      .executeTakeFirst();
  const status = async (a: TestApp) =>
    (await request(a.url).get('/v1/custody/status').set(bearer(a.keys.admin)).expect(200)).body
      .auditChain.trustedTime;
  const ready = async (a: TestApp) => {
    await request(a.url).get('/readyz').expect(200);
  };
  /** The backoff elapsed (as the clock would after a while). */
  const backoffElapsed = (a: TestApp, seq: number) =>
    a.ctx.db
      .updateTable('checkpoint_timestamps')
      .set({ next_attempt_at: sql<Date>`now() - interval '1 second'` })
      .where('seq', '=', seq)
      .execute();
  const refusals = () =>
    warnings.mock.calls
      .filter((c) => c[1] === 'timestamp authority gave no usable token')
      .map((c) => (c[0] as { reason: string }).reason);

  it('stamps each checkpoint over the exact signed bytes: openssl ts -verify accepts the token', async () => {
    const a = await start([tsa.url]);
    await activity(a);
    const signed = await checkpoint(a);
    const seq = signed.checkpoint.seq;
    // The stamp runs after the checkpoint, never inside it; wait for that run.
    expect((await a.ctx.checkpointTimestamps.stampDue()).failed).toEqual([]);
    const stamped = await row(a, seq);
    expect(stamped).toMatchObject({ seq, authority: tsa.url, signer: 'CN=Test TSA' });
    expect(stamped!.gen_time).toBeInstanceOf(Date);
    const token = await a.ctx.recordStore.getRecord(timestampKey(seq));
    expect(token).toBeDefined();
    expect(Buffer.compare(token!, stamped!.token!)).toBe(0);

    const data = signedBytes(signed);
    const verified = await opensslVerify(token!, data, pki.caFile);
    expect(verified.output).toContain('Verification: OK');
    expect(verified.ok).toBe(true);
    // The same check fails for other bytes and for another CA: it can fail.
    expect(
      (await opensslVerify(token!, Buffer.concat([data, Buffer.from(' ')]), pki.caFile)).ok,
    ).toBe(false);
    expect((await opensslVerify(token!, data, otherPki.caFile)).ok).toBe(false);

    const time = await status(a);
    expect(time).toMatchObject({
      configured: true,
      lastStamped: { seq, authority: tsa.url },
      checkpointsAwaitingTimestamp: 0,
    });
    expect(time.lastStamped.ageSeconds).toBeLessThan(60);
    const metrics = (await a.ctx.metrics.render()).body;
    expect(metrics).toMatch(/^audit_checkpoint_timestamp_age_seconds \d/m);
    expect(metrics).toMatch(/^audit_checkpoints_awaiting_timestamp 0$/m);
    await ready(a);
  });

  it('verify-audit checks every checkpoint token: each stamped checkpoint existed at its time; a swapped or removed token and a foreign root fail', async () => {
    const a = await start([tsa.url]);
    const stampNext = async () => {
      await activity(a);
      const signed = await checkpoint(a);
      expect((await a.ctx.checkpointTimestamps.stampDue()).failed).toEqual([]);
      return signed.checkpoint.seq;
    };
    const first = await stampNext();
    const second = await stampNext();
    const caPem = readFileSync(pki.caFile, 'utf8');
    const verify = (tsaCaPem?: string) =>
      a.ctx.auditVerifier.verify(createPublicKey(a.ctx.signingKey.publicKeyPem), { tsaCaPem });
    const problems = async (tsaCaPem?: string) =>
      (await verify(tsaCaPem)).problems.map((p) => [p.kind, p.seq]);

    const good = await verify(caPem);
    expect(good.ok).toBe(true);
    expect(good.trustedTime).toMatchObject({
      tokens: 2,
      verified: 2,
      newest: { seq: second, signer: 'CN=Test TSA' },
      unstamped: 0,
    });
    // Without a root, the tokens are counted, not checked.
    expect((await verify()).trustedTime).toMatchObject({ tokens: 2, verified: null });
    // As an auditor runs it, with the root they got from the authority.
    const env = { DATABASE_URL: a.databaseUrl, DATA_DIR: a.dataDir, LOG_LEVEL: 'silent' };
    const run = await cli('verify-audit', ['--tsa-ca', pki.caFile], env);
    expect(run.out).toContain(
      `Trusted time: 2 of 2 checkpoint token(s) verified against ${pki.caFile}; the newest stamped checkpoint (event ${second}) existed no later than`,
    );
    expect(run.code).toBe(0);

    // Another authority's root: neither token proves anything.
    expect(await problems(readFileSync(otherPki.caFile, 'utf8'))).toEqual([
      ['timestamp_invalid', first],
      ['timestamp_invalid', second],
    ]);
    const foreign = await cli('verify-audit', ['--tsa-ca', otherPki.caFile], env);
    expect([foreign.code, foreign.out]).toEqual([1, expect.stringContaining('timestamp_invalid')]);

    // The first checkpoint's token put in place of the second's: a token for other bytes.
    const file = (seq: number) =>
      path.join((a.ctx.config.storage as { root: string }).root, timestampKey(seq));
    const secondToken = readFileSync(file(second));
    copyFileSync(file(first), file(second));
    const swapped = await verify(caPem);
    expect(swapped.problems.map((p) => [p.kind, p.seq])).toEqual([['timestamp_invalid', second]]);
    expect(swapped.problems[0]!.message).toContain('other bytes');
    // A token removed from the store while the database says the checkpoint was stamped.
    rmSync(file(second));
    expect(await problems(caPem)).toEqual([['timestamp_missing', second]]);
    // ... and a token for no checkpoint at all.
    copyFileSync(file(first), file(second + 1000));
    expect(await problems(caPem)).toEqual([
      ['timestamp_missing', second],
      ['timestamp_orphan', second + 1000],
    ]);
    rmSync(file(second + 1000));
    writeFileSync(file(second), secondToken);
    expect((await verify(caPem)).ok).toBe(true);
  });

  it('queues a checkpoint while the TSA is down or slow and stamps it once it is back, with backoff', async () => {
    const a = await start([tsa.url]);
    await activity(a);
    tsa.mode = 'down';
    const began = Date.now();
    const signed = await checkpoint(a);
    expect(Date.now() - began).toBeLessThan(5000); // the checkpoint never waits for the TSA
    const seq = signed.checkpoint.seq;
    await a.ctx.checkpointTimestamps.stampDue(); // the run the checkpoint started
    const queued = await row(a, seq);
    expect(queued).toMatchObject({ seq, attempts: 1, gen_time: null, token: null });
    expect(queued!.last_error).toMatch(/no answer/);
    expect(queued!.next_attempt_at.getTime()).toBeGreaterThan(Date.now() + 20_000);
    expect(await status(a)).toMatchObject({ lastStamped: null, checkpointsAwaitingTimestamp: 1 });
    expect((await a.ctx.metrics.render()).body).toMatch(
      /^audit_checkpoints_awaiting_timestamp 1$/m,
    );
    await ready(a);

    // Not due yet: nothing is asked.
    const asked = tsa.requests.length;
    expect(await a.ctx.checkpointTimestamps.stampDue()).toEqual({ stamped: [], failed: [] });
    expect(tsa.requests.length).toBe(asked);

    // Slow: the timeout ends the wait, and the next delay is longer.
    tsa.mode = 'slow';
    await backoffElapsed(a, seq);
    expect((await a.ctx.checkpointTimestamps.stampDue()).failed).toEqual([seq]);
    const again = await row(a, seq);
    expect(again).toMatchObject({ attempts: 2, gen_time: null });
    expect(again!.last_error).toMatch(/no answer.*(timeout|aborted)/i);
    expect(again!.next_attempt_at.getTime()).toBeGreaterThan(Date.now() + 50_000);
    await ready(a);

    // Back: stamped by the next due run (the one the checkpoint job starts, not awaited by it).
    tsa.mode = 'ok';
    await backoffElapsed(a, seq);
    const run = await a.ctx.jobs.run('checkpoint');
    expect(run.outcome).toBe('ok');
    expect(run.stats.timestamps).toEqual({ pending: expect.any(Number) });
    expect(await a.ctx.checkpointTimestamps.stampDue()).toEqual({ stamped: [], failed: [] });
    const stamped = await row(a, seq);
    expect(stamped!.gen_time).toBeInstanceOf(Date);
    const token = (await a.ctx.recordStore.getRecord(timestampKey(seq)))!;
    expect((await opensslVerify(token, signedBytes(signed), pki.caFile)).ok).toBe(true);
    // The job also wrote (and stamped) a newer checkpoint: the status reads had moved the head.
    const time = await status(a);
    expect(time).toMatchObject({ checkpointsAwaitingTimestamp: 0 });
    expect(time.lastStamped.seq).toBeGreaterThan(seq);
    await ready(a);
  });

  it('tries every configured TSA: one that is down, then one that answers', async () => {
    const second = await startTestTsa(pki);
    try {
      tsa.mode = 'down';
      const a = await start([tsa.url, second.url]);
      await activity(a);
      const signed = await checkpoint(a);
      await a.ctx.checkpointTimestamps.stampDue();
      expect(await row(a, signed.checkpoint.seq)).toMatchObject({ authority: second.url });
      expect(tsa.requests).toContain('down');
    } finally {
      await second.close();
    }
  });

  it.each([
    ['other-bytes', /message imprint differs/],
    ['wrong-nonce', /nonce differs/],
  ] as const)(
    'refuses and logs a token with %s, and keeps the checkpoint queued',
    async (mode, why) => {
      const a = await start([tsa.url]);
      await activity(a);
      tsa.mode = mode;
      const signed = await checkpoint(a);
      const seq = signed.checkpoint.seq;
      await a.ctx.checkpointTimestamps.stampDue();
      const queued = await row(a, seq);
      expect(queued).toMatchObject({ gen_time: null, token: null, attempts: 1 });
      expect(queued!.last_error).toMatch(why);
      expect(refusals().some((r) => why.test(String(r)))).toBe(true);
      expect(await a.ctx.recordStore.getRecord(timestampKey(seq))).toBeUndefined();
      expect(await status(a)).toMatchObject({ lastStamped: null, checkpointsAwaitingTimestamp: 1 });
      await ready(a);
    },
  );

  it('refuses a token whose signer does not chain to the configured CA file', async () => {
    const a = await start([tsa.url], otherPki.caFile);
    await activity(a);
    const signed = await checkpoint(a);
    await a.ctx.checkpointTimestamps.stampDue();
    const queued = await row(a, signed.checkpoint.seq);
    expect(queued).toMatchObject({ gen_time: null, attempts: 1 });
    expect(queued!.last_error).toMatch(/certificate chain|signer/);
    expect(refusals().length).toBeGreaterThan(0);
    await ready(a);
  });

  it('stamps nothing and says so when no TSA is configured', async () => {
    app = await startTestApp('fs');
    await activity(app);
    await checkpoint(app);
    expect(await app.ctx.checkpointTimestamps.stampDue()).toEqual({ stamped: [], failed: [] });
    expect(await status(app)).toMatchObject({
      configured: false,
      lastStamped: null,
      checkpointsAwaitingTimestamp: 0,
    });
    expect((await app.ctx.metrics.render()).body).not.toMatch(
      /^audit_checkpoints_awaiting_timestamp [1-9]/m,
    );
  });

  it('never holds the checkpoint job: a slow TSA is asked in the background', async () => {
    const a = await start([tsa.url], pki.caFile, 10_000);
    await activity(a);
    await a.ctx.checkpointTimestamps.stampDue(); // nothing queued before the job
    tsa.mode = 'slow';
    const began = Date.now();
    const run = await a.ctx.jobs.run('checkpoint');
    expect(run.outcome).toBe('ok');
    expect(run.stats).toMatchObject({ written: true, timestamps: { pending: 1 } });
    expect(Date.now() - began).toBeLessThan(5000); // far below the 10 s timeout
  });

  it('does not pile up background runs: one waiting for its turn covers later calls', async () => {
    const a = await start([tsa.url]);
    const stamper = a.ctx.checkpointTimestamps;
    const calls = jest.spyOn(stamper, 'stampDue');
    for (let i = 0; i < 5; i++) stamper.soon();
    expect(calls).toHaveBeenCalledTimes(1);
    await stamper.stampDue(); // after it: a later call starts a run again
    stamper.soon();
    expect(calls).toHaveBeenCalledTimes(3);
    await stamper.stampDue();
  });

  it('stops a run at the first checkpoint no TSA stamped: the rest stay queued, newest first', async () => {
    const a = await start([tsa.url]);
    tsa.mode = 'down';
    const seqs: number[] = [];
    for (let i = 0; i < 3; i++) {
      await activity(a);
      seqs.push((await checkpoint(a)).checkpoint.seq);
    }
    await a.ctx.checkpointTimestamps.stampDue(); // the runs the checkpoints started are over
    // Each checkpoint's own run failed it; make them all due again.
    for (const seq of seqs) await backoffElapsed(a, seq);
    const asked = tsa.requests.length;
    expect(await a.ctx.checkpointTimestamps.stampDue()).toEqual({
      stamped: [],
      failed: [seqs[2]],
    });
    expect(tsa.requests.length).toBe(asked + 1); // the older two were not asked for
    tsa.mode = 'ok';
    for (const seq of seqs) await backoffElapsed(a, seq);
    const r = await a.ctx.checkpointTimestamps.stampDue();
    expect(r).toEqual({ stamped: [...seqs].reverse(), failed: [] });
    expect(await status(a)).toMatchObject({ checkpointsAwaitingTimestamp: 0 });
  });

  it('does not backfill the checkpoints from before a TSA was configured', async () => {
    const a = await start([tsa.url]);
    const seqs: number[] = [];
    for (let i = 0; i < 3; i++) {
      await activity(a);
      seqs.push((await checkpoint(a)).checkpoint.seq);
      await a.ctx.checkpointTimestamps.stampDue();
    }
    // As on an install that had these checkpoints before its TSA was configured:
    const dba = createDb(a.databaseUrl, 1); // the owner's connection: the service may not delete
    try {
      await dba.deleteFrom('checkpoint_timestamps').execute();
    } finally {
      await dba.destroy();
    }
    expect(await status(a)).toMatchObject({ checkpointsAwaitingTimestamp: 1 });
    expect(await a.ctx.checkpointTimestamps.stampDue()).toEqual({
      stamped: [seqs[2]],
      failed: [],
    });
    expect(await row(a, seqs[1]!)).toBeUndefined();
    expect(await status(a)).toMatchObject({ checkpointsAwaitingTimestamp: 0 });
  });

  it('stamps one given checkpoint on demand (a bundle its own), not another, not before the horizon', async () => {
    const a = await start([tsa.url]);
    tsa.mode = 'down';
    const seqs: number[] = [];
    for (let i = 0; i < 2; i++) {
      await activity(a);
      seqs.push((await checkpoint(a)).checkpoint.seq);
    }
    await a.ctx.checkpointTimestamps.stampDue(); // the runs the checkpoints started are over
    for (const seq of seqs) await backoffElapsed(a, seq);
    tsa.mode = 'ok';
    const stamper = a.ctx.checkpointTimestamps;
    expect(await stamper.tokenFor(seqs[0]!)).toBeUndefined();
    expect(await stamper.stampCheckpoint(seqs[0]!)).toEqual({ stamped: [seqs[0]], failed: [] });
    const found = await stamper.tokenFor(seqs[0]!);
    expect(found?.token.equals((await row(a, seqs[0]!))!.token!)).toBe(true);
    expect(found?.authority).toBe(tsa.url);
    expect(await row(a, seqs[1]!)).toMatchObject({ gen_time: null });
    expect(await stamper.tokenFor(seqs[1]!)).toBeUndefined();
    // Stamped already: nothing to ask for.
    const asked = tsa.requests.length;
    expect(await stamper.stampCheckpoint(seqs[0]!)).toEqual({ stamped: [], failed: [] });
    expect(tsa.requests.length).toBe(asked);
    // As before a TSA was configured: an older checkpoint is not stamped on demand either.
    const dba = createDb(a.databaseUrl, 1);
    try {
      await dba.deleteFrom('checkpoint_timestamps').execute();
    } finally {
      await dba.destroy();
    }
    expect(await stamper.stampCheckpoint(seqs[0]!)).toEqual({ stamped: [], failed: [] });
    expect(await row(a, seqs[0]!)).toBeUndefined();
    expect(tsa.requests.length).toBe(asked);
  });

  it('refuses an answer past 1 MiB sent in chunks without a Content-Length', async () => {
    const a = await start([tsa.url]);
    await activity(a);
    tsa.mode = 'huge';
    const signed = await checkpoint(a);
    await a.ctx.checkpointTimestamps.stampDue();
    const queued = await row(a, signed.checkpoint.seq);
    expect(queued).toMatchObject({ gen_time: null, attempts: 1 });
    expect(queued!.last_error).toMatch(/answer too large/);
  });

  it("refuses a token whose genTime is off the local clock or before the checkpoint's signedAt", async () => {
    const a = await start([tsa.url]);
    await activity(a);
    const signed = await checkpoint(a);
    await a.ctx.checkpointTimestamps.stampDue();
    const token = (await a.ctx.recordStore.getRecord(timestampKey(signed.checkpoint.seq)))!;
    const data = signedBytes(signed);
    const authority = a.ctx.checkpointTimestamps.tsa!;
    const hour = 3600_000;
    await expect(authority.verify('t', token, data, { receivedAt: new Date() })).resolves.toEqual(
      expect.objectContaining({ signer: 'CN=Test TSA' }),
    );
    await expect(
      authority.verify('t', token, data, { receivedAt: new Date(Date.now() + hour) }),
    ).rejects.toThrow(/off the local clock/);
    await expect(
      authority.verify('t', token, data, { notBefore: new Date(Date.now() + hour) }),
    ).rejects.toThrow(/before the stamped bytes were made/);
  });

  it('at close, aborts the request in flight at once and leaves the checkpoint queued', async () => {
    const a = await start([tsa.url], pki.caFile, 30_000);
    await activity(a);
    tsa.mode = 'slow';
    const asked = tsa.requests.length;
    const signed = await checkpoint(a); // starts a stamping run in the background
    while (tsa.requests.length === asked) await new Promise((r) => setTimeout(r, 20));
    const db = a.ctx.db;
    const began = Date.now();
    const pending = a.ctx.checkpointTimestamps.close();
    await pending;
    expect(Date.now() - began).toBeLessThan(2000);
    const queued = await db
      .selectFrom('checkpoint_timestamps')
      .selectAll()
      .where('seq', '=', signed.checkpoint.seq)
      .executeTakeFirst();
    expect(queued).toMatchObject({ gen_time: null, attempts: 0 });
    expect(queued!.next_attempt_at.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
  });
});
