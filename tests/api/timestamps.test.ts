import { sql } from 'kysely';
import request from 'supertest';
import { signedBytes, timestampKey } from '../../src/custody/checkpoint-timestamps';
import type { SignedCheckpoint } from '../../src/custody/checkpoint.service';
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

  const start = async (urls: string[], caFile = pki.caFile) => {
    app = await startTestApp('fs', {
      TIMESTAMP_AUTHORITY_URLS: urls.join(','),
      TIMESTAMP_AUTHORITY_CA_FILE: caFile,
      TIMESTAMP_AUTHORITY_TIMEOUT_MS: '1000',
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

    // Back: stamped by the next due run (the checkpoint job's).
    tsa.mode = 'ok';
    await backoffElapsed(a, seq);
    const run = await a.ctx.jobs.run('checkpoint');
    expect(run.outcome).toBe('ok');
    expect(run.stats.timestamps).toMatchObject({ failed: 0, pending: 0 });
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
    expect(await status(app)).toMatchObject({ configured: false, lastStamped: null });
  });
});
