import request from 'supertest';
import { KeyBudgets } from '../../src/access/key-budgets';
import { createLogger } from '../../src/base/logger';
import { Metrics } from '../../src/base/metrics';
import { createDb } from '../../src/db/database';
import { auditEvents, bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

/**
 * Per-key budgets for expensive work (verification bytes per hour, audit pages per minute,
 * bundle builds at once): 429 budget_exceeded with Retry-After past one, one budget per key
 * across instances, the refusal audited and listed for admins.
 */
jest.setTimeout(120_000);

describe('per-key budgets for expensive work', () => {
  let app: TestApp;
  const ITEM_BYTES = 6000;
  let itemId: string;

  beforeAll(async () => {
    // The hourly budget's window is the clock hour: start at least a minute before it ends.
    const intoHour = Date.now() % 3600_000;
    if (intoHour > 3540_000) await new Promise((r) => setTimeout(r, 3600_500 - intoHour));
    app = await startTestApp('fs', {
      KEY_VERIFY_BYTES_PER_HOUR: '10000',
      KEY_AUDIT_PAGES_PER_MINUTE: '3',
      KEY_BUNDLE_BUILDS: '1',
    });
    await request(app.url)
      .put('/v1/complaints/C-B')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-B'] })
      .expect(201);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['complaintId', 'C-B'],
      ],
      { filename: 'clip.mp4', content: fakeMedia('mp4', ITEM_BYTES) },
    );
    expect(res.status).toBe(201);
    itemId = res.json().id;
  });
  afterAll(async () => {
    await app?.close();
  });

  const verify = (key = app.keys.support) =>
    request(app.url).post(`/v1/evidence/${itemId}/verify`).set(bearer(key));

  it('refuses a verification past the key’s bytes per hour, with Retry-After; other keys are not affected', async () => {
    const size = (
      await request(app.url).get(`/v1/evidence/${itemId}`).set(bearer(app.keys.support))
    ).body.size as number;
    expect(size).toBeGreaterThan(5000); // two verifications pass 10000
    expect((await verify()).status).toBe(200);
    const refused = await verify();
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body).toMatchObject({
      code: 'budget_exceeded',
      budget: 'verify_bytes_per_hour',
      limit: 10000,
    });
    const retry = Number(refused.headers['retry-after']);
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(3600);
    expect(refused.body.retryAfterSeconds).toBe(retry);
    // Another key has its own budget.
    expect((await verify(app.keys.admin)).status).toBe(200);

    // Audited as a denied verification naming the budget, and listed for admins.
    const denied = (await auditEvents(app, 'evidence.verify')).filter(
      (e) => e.outcome === 'denied',
    );
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({
      actor_key_id: app.keys.support.id,
      details: expect.objectContaining({
        code: 'budget_exceeded',
        budget: 'verify_bytes_per_hour',
      }),
    });
    const listed = await request(app.url).get('/v1/key-budgets').set(bearer(app.keys.admin));
    expect(listed.status).toBe(200);
    expect(listed.body.limits).toEqual({
      verifyBytesPerHour: 10000,
      auditPagesPerMinute: 3,
      bundleBuilds: 1,
    });
    expect(listed.body.limited).toEqual([
      expect.objectContaining({
        keyId: app.keys.support.id,
        name: app.keys.support.name,
        budget: 'verify_bytes_per_hour',
        used: size,
        refused: 1,
      }),
    ]);
    await request(app.url).get('/v1/key-budgets').set(bearer(app.keys.support)).expect(403);
    const metrics = await request(app.url).get('/metrics').set(bearer(app.keys.admin));
    expect(metrics.text).toContain('key_budget_refusals_total{budget="verify_bytes_per_hour"} 1');
  });

  it('is one budget per key across instances: another instance on the same database refuses too', async () => {
    const db = createDb(app.databaseUrl, 1);
    const other = new KeyBudgets({
      db,
      limits: app.ctx.config.keyBudgets,
      metrics: new Metrics(),
      logger: createLogger('silent'),
    });
    try {
      const actor = { keyId: 'k-across-instances', role: 'support', name: 'x' };
      await app.ctx.budgets.chargeVerifyBytes(actor, 6000); // spent on this instance
      // One more item's worth on the other instance is over the 10000.
      await expect(other.chargeVerifyBytes(actor, 5000)).rejects.toMatchObject({
        code: 'budget_exceeded',
      });
      // (What is left of its budget is still there, on this instance as on the other.)
      await expect(other.chargeVerifyBytes(actor, 1)).resolves.toBeUndefined();
      // The service's own work (no key) is never limited.
      await expect(
        other.chargeVerifyBytes({ keyId: null, role: 'system', name: 'scrub' }, 10 ** 9),
      ).resolves.toBeUndefined();
    } finally {
      await db.destroy();
    }
  });

  it('lets the first verification of a window pass however large, so a big item is never locked out', async () => {
    const actor = { keyId: app.keys.ingest2.id, role: 'support', name: 'fresh' };
    await expect(app.ctx.budgets.chargeVerifyBytes(actor, 50_000)).resolves.toBeUndefined();
    await expect(app.ctx.budgets.chargeVerifyBytes(actor, 1)).rejects.toMatchObject({
      code: 'budget_exceeded',
    });
  });

  it('refuses the audit page past the key’s pages per minute', async () => {
    // Within one minute window: start early in a minute.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const page = () =>
      request(app.url).get(`/v1/evidence/${itemId}/audit`).set(bearer(app.keys.admin));
    // A bad query is refused as such, and spends nothing.
    await request(app.url)
      .get(`/v1/evidence/${itemId}/audit?limit=nope`)
      .set(bearer(app.keys.admin))
      .expect(400);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await page()).status);
    const whole = await request(app.url).get('/v1/audit').set(bearer(app.keys.admin));
    expect([...statuses, whole.status]).toEqual([200, 200, 200, 429]);
    expect(whole.body).toMatchObject({ code: 'budget_exceeded', budget: 'audit_pages_per_minute' });
    expect(Number(whole.headers['retry-after'])).toBeLessThanOrEqual(60);
    // Another key still reads.
    await request(app.url)
      .get(`/v1/evidence/${itemId}/audit`)
      .set(bearer(app.keys.support))
      .expect(200);
  });

  it('refuses a second bundle built at once by the same key; a lease left by a dead instance expires', async () => {
    const build = () =>
      request(app.url).post('/v1/complaints/C-B/bundles').set(bearer(app.keys.support)).send({});
    let finish!: () => void;
    const actor = { keyId: app.keys.support.id, role: 'support', name: 'Agent' };
    const inFlight = app.ctx.budgets.withBundleBuild(
      actor,
      () => new Promise<void>((resolve) => (finish = resolve)),
    );
    try {
      // The lease is taken once the database answered.
      let leases = 0;
      for (let i = 0; i < 100 && leases === 0; i++) {
        leases = (await app.ctx.db.selectFrom('key_budget_leases').select('id').execute()).length;
        if (leases === 0) await new Promise((r) => setTimeout(r, 20));
      }
      expect(leases).toBe(1);
      const refused = await build();
      expect([refused.status, refused.body.code, refused.body.budget]).toEqual([
        429,
        'budget_exceeded',
        'bundle_builds',
      ]);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      // Listed for admins, like the other budgets' refusals.
      const listed = await request(app.url).get('/v1/key-budgets').set(bearer(app.keys.admin));
      expect(listed.body.limited).toContainEqual(
        expect.objectContaining({
          keyId: app.keys.support.id,
          budget: 'bundle_builds',
          refused: 1,
        }),
      );
      // Another key builds meanwhile.
      const admin = await request(app.url)
        .post('/v1/complaints/C-B/bundles')
        .set(bearer(app.keys.admin))
        .send({});
      expect(admin.status).toBe(201);
    } finally {
      finish();
      await inFlight;
    }
    expect((await build()).status).toBe(201);
    // An instance that died mid-build left its lease: once expired, it holds no slot.
    await app.ctx.db
      .insertInto('key_budget_leases')
      .values({
        key_id: app.keys.support.id,
        budget: 'bundle_builds',
        expires_at: new Date(Date.now() - 1000),
      })
      .execute();
    expect((await build()).status).toBe(201);
    expect(await app.ctx.db.selectFrom('key_budget_leases').select('id').execute()).toEqual([]);
    // A build that fails gives its slot back.
    await expect(
      app.ctx.budgets.withBundleBuild(actor, () => Promise.reject(new Error('store gone'))),
    ).rejects.toThrow('store gone');
    expect(await app.ctx.db.selectFrom('key_budget_leases').select('id').execute()).toEqual([]);
  });
});
