import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

const LIMIT = 10;
const FLOOD = 300;

interface EventRow {
  action: string;
  outcome: string;
  client_ip: string | null;
  details: Record<string, unknown>;
}

/**
 * Strangers (no valid key, random share tokens) cannot grow the chained audit trail without limit:
 * past a per-address limit they get 429 with Retry-After, and what they tried is counted in one
 * event per address and minute. Client addresses come from X-Forwarded-For (TRUST_PROXY=loopback),
 * so each test is its own stranger.
 */
describe('refusals from strangers are rate-limited and counted, not chained one by one', () => {
  let app: TestApp;
  let itemId: string;
  beforeAll(async () => {
    app = await startTestApp('fs', {
      TRUST_PROXY: 'loopback',
      REFUSAL_LIMIT_PER_MINUTE: String(LIMIT),
      REFUSAL_LIMIT_MAX_ADDRESSES: '50',
    });
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-RL'],
      ],
      { filename: 'a.mp4', content: fakeMedia('mp4') },
    );
    itemId = res.json().id;
  });
  afterAll(() => app.close());

  const eventsFrom = async (ip: string) =>
    (
      await sql<EventRow>`select action, outcome, client_ip, details from audit_events
        where client_ip = ${ip} order by seq`.execute(app.ctx.db)
    ).rows;

  /** Sends `n` requests, `concurrency` at a time, and returns their responses in order. */
  async function flood(n: number, send: (i: number) => request.Test, concurrency = 20) {
    const out: request.Response[] = [];
    for (let i = 0; i < n; i += concurrency) {
      out.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(concurrency, n - i) }, (_, j) => send(i + j)),
        )),
      );
    }
    return out;
  }

  /** The common assertions: bounded individual events, 429s with Retry-After, counts add up. */
  async function expectBounded(ip: string, responses: request.Response[], refusedStatus: number) {
    const statuses = responses.map((r) => r.status);
    expect(statuses.every((s) => s === refusedStatus || s === 429)).toBe(true);
    const limited = responses.filter((r) => r.status === 429);
    // A minute boundary during the flood opens a second window with its own allowance.
    expect(limited.length).toBeGreaterThanOrEqual(FLOOD - 2 * LIMIT);
    for (const r of limited) {
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.body.code).toBe('rate_limited');
      const retryAfter = Number(r.headers['retry-after']);
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);
    }

    await app.ctx.refusals.close(); // seals the open windows, as a shutdown does
    const events = await eventsFrom(ip);
    const individual = events.filter(
      (e) => e.action !== 'access.refusals' && e.outcome !== 'success', // not the valid request
    );
    const aggregates = events.filter((e) => e.action === 'access.refusals');
    expect(events.length).toBeLessThanOrEqual(2 * (LIMIT + 1));
    expect(individual.length).toBe(FLOOD - limited.length);
    expect(aggregates.length).toBeGreaterThanOrEqual(1);
    expect(aggregates.length).toBeLessThanOrEqual(2);
    const sum = (k: string) => aggregates.reduce((n, e) => n + Number(e.details[k]), 0);
    expect(sum('count')).toBe(FLOOD);
    expect(sum('rateLimited')).toBe(limited.length);
    expect(sum('recordedIndividually')).toBe(individual.length);
    for (const a of aggregates) {
      expect(a.outcome).toBe('denied');
      expect(a.details.window).toEqual({
        from: expect.stringMatching(/:00\.000Z$/),
        to: expect.stringMatching(/:00\.000Z$/),
      });
      const byRefusal = a.details.byRefusal as Record<string, number>;
      expect(Object.values(byRefusal).reduce((n, v) => n + v, 0)).toBe(a.details.count);
    }
  }

  it('300 requests with bad keys: 429 past the limit, a bounded trail, a valid key still served', async () => {
    const ip = '198.51.100.7';
    const forged = `eak_${app.keys.support.id}_${'B'.repeat(43)}`;
    const responses = await flood(FLOOD, (i) =>
      request(app.url)
        .get('/v1/orders/ORD-RL/evidence')
        .set('X-Forwarded-For', ip)
        .set('Authorization', i % 2 ? `Bearer ${forged}` : 'Bearer nonsense'),
    );
    // Limited as it is, the address's valid keys are served as ever.
    const valid = await request(app.url)
      .get('/v1/orders/ORD-RL/evidence')
      .set('X-Forwarded-For', ip)
      .set(bearer(app.keys.support));
    expect(valid.status).toBe(200);
    expect(valid.body.items.map((i: { id: string }) => i.id)).toEqual([itemId]);
    // Another address is not limited by this one.
    const other = await request(app.url)
      .get('/v1/orders/ORD-RL/evidence')
      .set('X-Forwarded-For', '198.51.100.8');
    expect(other.status).toBe(401);
    await expectBounded(ip, responses, 401);
  });

  it('300 random share tokens: 429 past the limit, a bounded trail, a real link still opens', async () => {
    const ip = '198.51.100.9';
    const made = await request(app.url)
      .post('/v1/share-links')
      .set(bearer(app.keys.support))
      .send({ itemId });
    expect(made.status).toBe(201);
    const responses = await flood(FLOOD, () =>
      request(app.url)
        .get(`/s/${randomBytes(32).toString('base64url')}`)
        .set('X-Forwarded-For', ip),
    );
    const real = await request(app.url).get(made.body.url).set('X-Forwarded-For', ip);
    expect(real.status).toBe(200);
    await expectBounded(ip, responses, 404);
  });

  it('counts an IPv6 client by its /64: cycling through it gains nothing', async () => {
    const responses = await flood(40, (i) =>
      request(app.url)
        .get('/v1/orders/ORD-RL/evidence')
        .set('X-Forwarded-For', `2001:db8:77:1::${(i + 1).toString(16)}`),
    );
    expect(responses.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(40 - 2 * LIMIT);
  });

  it('keeps the limiter bounded when an attacker cycles addresses', async () => {
    await flood(400, (i) =>
      request(app.url)
        .get('/v1/orders/ORD-RL/evidence')
        .set('X-Forwarded-For', `198.18.${i >> 8}.${i & 255}`),
    );
    // 50 addresses tracked, the rest share one overflow tally (limited together).
    expect(app.ctx.refusals.trackedAddresses).toBeLessThanOrEqual(51);
    await app.ctx.refusals.close();
    const { rows } = await sql<EventRow>`select action, outcome, client_ip, details
      from audit_events where action = 'access.refusals' and details->>'overflow' = 'true'`.execute(
      app.ctx.db,
    );
    expect(rows.reduce((n, e) => n + Number(e.details.count), 0)).toBeGreaterThanOrEqual(250); // 350, less a fresh window's 50 if a minute ends mid-flood
  });
});

describe('without TRUST_PROXY, the client address is the socket’s', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', { REFUSAL_LIMIT_PER_MINUTE: '3' });
  });
  afterAll(() => app.close());

  it('a forged X-Forwarded-For does not escape the limit', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await request(app.url)
        .get('/v1/orders/X/evidence')
        .set('X-Forwarded-For', `203.0.113.${i}`);
      statuses.push(res.status);
    }
    // [401 x3, 429 x5]; a minute ending mid-way allows at most 3 more.
    expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
  });
});
