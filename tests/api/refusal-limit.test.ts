import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import request from 'supertest';
import type { MintedKey } from '../../src/access/api-key.service';
import { loadConfig } from '../../src/base/config';
import { AppContext } from '../../src/context';
import { createApp } from '../../src/http/app';
import { startServer, type RunningServer } from '../../src/http/server';
import { EvidenceRepository } from '../../src/evidence/evidence.repository';
import { createLogger } from '../../src/base/logger';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';
import {
  ownPostgresUnavailable,
  startOwnPostgres,
  type OwnPostgres,
} from '../support/own-postgres';

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
      // Callbacks are checked for their signature before any key is looked at.
      TWILIO_AUTH_TOKEN: 'refusal-limit-auth-token-0123456789',
      TWILIO_ACCOUNT_SID: `AC${'2'.repeat(32)}`,
      TWILIO_INGEST_KEY_ID: 'twilio-unused',
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

  const eventsFrom = async (ip: string) => {
    await app.ctx.audit.settle(); // every event answered, linked
    return (
      await sql<EventRow>`select action, outcome, client_ip, details from audit_events
        where client_ip = ${ip} order by seq`.execute(app.ctx.db)
    ).rows;
  };

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
    const served = events.filter((e) => e.outcome === 'success'); // the valid request, if any
    // Up to LIMIT recorded one by one per window (two windows if a minute boundary falls in the
    // flood), one aggregate per window, and the one valid request made after the flood.
    expect(individual.length).toBeLessThanOrEqual(2 * LIMIT);
    expect(served.length).toBeLessThanOrEqual(1);
    expect(events.length).toBe(individual.length + aggregates.length + served.length);
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

  it('300 forged Twilio callbacks: 429 past the limit, a bounded trail', async () => {
    const ip = '198.51.100.10';
    const responses = await flood(FLOOD, (i) =>
      request(app.url)
        .post('/v1/integrations/twilio/recording')
        .set('X-Forwarded-For', ip)
        .set('X-Twilio-Signature', randomBytes(20).toString('base64'))
        .type('form')
        .send({
          AccountSid: `AC${'2'.repeat(32)}`,
          CallSid: `CA${randomBytes(16).toString('hex')}`,
          RecordingSid: `RE${randomBytes(16).toString('hex')}`,
          RecordingStatus: 'completed',
          RecordingUrl: `https://api.twilio.com/recordings/${i}`,
        }),
    );
    for (const r of responses.filter((res) => res.status === 403)) {
      expect(r.body.code).toBe('invalid_signature');
    }
    await expectBounded(ip, responses, 403);
  });

  it('a real link that fails for the service’s own reasons (damaged evidence, 500) is never counted or 429', async () => {
    const ip = '198.51.100.11';
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-RL-DAMAGED'],
      ],
      { filename: 'd.mp4', content: fakeMedia('mp4') },
    );
    const damagedId = res.json().id as string;
    const made = await request(app.url)
      .post('/v1/share-links')
      .set(bearer(app.keys.support))
      .send({ itemId: damagedId });
    expect(made.status).toBe(201);
    await new EvidenceRepository().markDamaged(app.ctx.db, damagedId, {
      at: new Date(),
      checkStartedAt: new Date(),
      detail: { test: 'refusal-limit' },
    });
    const responses = await flood(3 * LIMIT, () =>
      request(app.url).get(made.body.url).set('X-Forwarded-For', ip),
    );
    expect(responses.map((r) => [r.status, r.body.code])).toEqual(
      Array.from({ length: 3 * LIMIT }, () => [500, 'evidence_damaged']),
    );
    // Nothing of it was counted against the address: its misses still get their own allowance.
    const misses = await flood(LIMIT, () =>
      request(app.url)
        .get(`/s/${randomBytes(32).toString('base64url')}`)
        .set('X-Forwarded-For', ip),
    );
    expect(misses.filter((r) => r.status === 404).length).toBeGreaterThanOrEqual(1);
    expect(misses.every((r) => r.status === 404)).toBe(true);
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
    await app.ctx.audit.settle(); // every event answered, linked
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

/**
 * The instance's budget of refusals recorded one by one, across all addresses: past it, refusals
 * under their address's limit are answered as usual (401, 404) but only counted.
 */
describe('a global budget of refusals recorded one by one', () => {
  const PER_ADDRESS = 10;
  const BUDGET = 12;
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', {
      TRUST_PROXY: 'loopback',
      REFUSAL_LIMIT_PER_MINUTE: String(PER_ADDRESS),
      REFUSAL_LIMIT_GLOBAL_PER_MINUTE: String(BUDGET),
    });
  });
  afterAll(() => app.close());

  it('30 refusals from 6 addresses, each under its own limit: all answered as usual, at most the budget recorded one by one, the rest counted', async () => {
    const ips = Array.from({ length: 6 }, (_, i) => `192.0.2.${100 + i}`);
    const responses: request.Response[] = [];
    for (let round = 0; round < 5; round++) {
      for (const ip of ips) {
        responses.push(
          round % 2
            ? await request(app.url)
                .get(`/s/${randomBytes(32).toString('base64url')}`)
                .set('X-Forwarded-For', ip)
            : await request(app.url)
                .get('/v1/orders/ORD-G/evidence')
                .set('X-Forwarded-For', ip)
                .set('Authorization', 'Bearer nonsense'),
        );
      }
    }
    expect(responses.map((r) => r.status).sort()).toEqual([
      ...Array<number>(18).fill(401),
      ...Array<number>(12).fill(404),
    ]);
    await app.ctx.refusals.close();
    await app.ctx.audit.settle(); // every event answered, linked
    const { rows } = await sql<EventRow>`select action, outcome, client_ip, details
      from audit_events where client_ip = any(${ips}) order by seq`.execute(app.ctx.db);
    const individual = rows.filter((e) => e.action !== 'access.refusals');
    const aggregates = rows.filter((e) => e.action === 'access.refusals');
    // A minute ending mid-test gives a second budget.
    expect(individual.length).toBeGreaterThanOrEqual(BUDGET);
    expect(individual.length).toBeLessThanOrEqual(2 * BUDGET);
    const sum = (k: string) => aggregates.reduce((n, e) => n + Number(e.details[k] ?? 0), 0);
    expect(sum('count')).toBe(30);
    expect(sum('recordedIndividually')).toBe(individual.length);
    expect(sum('overGlobalBudget')).toBe(30 - individual.length);
    expect(sum('rateLimited')).toBe(0);
    // Every chained event: the budget's, plus at most one count per address and minute.
    expect(rows.length).toBeLessThanOrEqual(2 * BUDGET + 2 * ips.length);
  });
});

const ownPgUnavailable = ownPostgresUnavailable();
if (ownPgUnavailable && process.env.CI)
  throw new Error(`outage tests must run in CI: ${ownPgUnavailable}`);
const describeOwnPg = ownPgUnavailable ? describe.skip : describe;

/**
 * A database outage while checking a key or resolving a share link is the service's failure, not
 * the client's: 503 dependency_unavailable with Retry-After, never 401, never 429, never counted.
 * On a PostgreSQL server of the test's own, stopped and started again (never the shared one).
 */
describeOwnPg('an outage while checking keys and links is never a refusal', () => {
  const PER_ADDRESS = 3;
  let pgServer: OwnPostgres;
  let ctx: AppContext;
  let server: RunningServer;
  let dataDir: string;
  let key: MintedKey;
  let linkUrl: string;
  jest.setTimeout(120_000);

  beforeAll(async () => {
    pgServer = await startOwnPostgres();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-refusal-outage-'));
    const config = loadConfig({
      DATABASE_URL: pgServer.url,
      DATA_DIR: dataDir,
      PORT: '0',
      LOG_LEVEL: 'silent',
      DATABASE_POOL_SIZE: '5',
      AUTH_CACHE_TTL_MS: '0',
      TRUST_PROXY: 'loopback',
      REFUSAL_LIMIT_PER_MINUTE: String(PER_ADDRESS),
    });
    ctx = await AppContext.fromConfig(
      config,
      { migrate: true },
      { logger: createLogger('silent') },
    );
    server = await startServer(createApp(ctx), config);
    key = await ctx.apiKeys.create('support', 'outage support');
    const ingest = await ctx.apiKeys.create('ingest', 'outage station');
    const res = await upload(
      server.url,
      ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-OUT'],
      ],
      { filename: 'o.mp4', content: fakeMedia('mp4') },
    );
    expect(res.status).toBe(201);
    const made = await request(server.url)
      .post('/v1/share-links')
      .set(bearer(key))
      .send({ itemId: res.json().id });
    expect(made.status).toBe(201);
    linkUrl = made.body.url;
  });

  afterAll(async () => {
    await pgServer?.start().catch(() => undefined);
    await server?.close(0);
    await ctx?.close();
    await pgServer?.destroy();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 503 dependency_unavailable to bad keys, real and unknown links alike, and counts none of them', async () => {
    const ip = '192.0.2.200';
    await pgServer.stop();
    const forged = `eak_${key.id}_${'C'.repeat(43)}`;
    const unknown = `/s/${randomBytes(32).toString('base64url')}`;
    const sends: (() => request.Test)[] = [
      () =>
        request(server.url)
          .get('/v1/orders/ORD-OUT/evidence')
          .set('X-Forwarded-For', ip)
          .set('Authorization', `Bearer ${forged}`),
      () =>
        request(server.url).post('/v1/session').set('X-Forwarded-For', ip).send({ key: forged }),
      () => request(server.url).get(unknown).set('X-Forwarded-For', ip),
      () => request(server.url).get(linkUrl).set('X-Forwarded-For', ip),
    ];
    for (const send of sends) {
      for (let i = 0; i < 3 * PER_ADDRESS; i++) {
        const res = await send();
        expect([res.status, res.body.code]).toEqual([503, 'dependency_unavailable']);
        expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      }
    }
    expect(ctx.refusals.trackedAddresses).toBe(0);

    await pgServer.start();
    // Back up: the address has its whole allowance, the outage cost it nothing.
    const after: number[] = [];
    for (let i = 0; i < PER_ADDRESS; i++) {
      after.push((await sends[i % 2 ? 2 : 0]!()).status); // a bad key, an unknown link
    }
    // The pool may need a moment to reconnect: a 503 there is an outage still, never a 429.
    expect(after.every((s) => s !== 429)).toBe(true);
    expect(after.filter((s) => s === 401 || s === 404).length).toBeGreaterThan(0);
    expect((await request(server.url).get(linkUrl).set('X-Forwarded-For', ip)).status).toBe(200);
  });
});
