import { clientOf, RefusalLimiter } from '../../src/access/refusal-limiter';
import type { AuditEntry, AuditLog } from '../../src/custody/audit.service';
import type { Logger } from '../../src/logger';

/** The audit log's `record`, capturing entries (the limiter's only use of it). */
function recorder() {
  const entries: AuditEntry[] = [];
  const audit = { record: async (e: AuditEntry) => void entries.push(e) } as unknown as AuditLog;
  return { entries, audit };
}
const logger = { error: () => undefined } as unknown as Logger;
const T0 = Date.parse('2026-12-03T10:00:00.000Z');
const refusal = { action: 'evidence.list', status: 401, code: 'unauthorized', path: '/v1/x' };

describe('RefusalLimiter', () => {
  it('answers the first refusals one by one, then 429 until the minute ends, and seals the count when it does', async () => {
    let now = T0 + 15_000;
    const { entries, audit } = recorder();
    const limiter = new RefusalLimiter({
      audit,
      logger,
      limits: { perMinute: 3, maxAddresses: 10, globalPerMinute: 1000 },
      now: () => now,
    });
    const verdicts = Array.from({ length: 40 }, () => limiter.refuse('192.0.2.1', refusal));
    expect(verdicts.filter((v) => !v.limited)).toHaveLength(3);
    expect(verdicts[3]).toEqual({ limited: true, record: false, retryAfterSeconds: 45 });
    // Another address has its own allowance.
    expect(limiter.refuse('192.0.2.2', refusal).limited).toBe(false);
    await limiter.sealEnded();
    expect(entries).toEqual([]); // the minute is still open

    now = T0 + 61_000; // the next minute: a fresh allowance, and the last one's counts sealed
    expect(limiter.refuse('192.0.2.1', refusal).limited).toBe(false);
    await limiter.sealEnded();
    expect(entries).toHaveLength(1); // 192.0.2.2 was recorded one by one: no count needed
    expect(entries[0]).toMatchObject({
      action: 'access.refusals',
      outcome: 'denied',
      actor: { keyId: null, role: 'anonymous', clientIp: '192.0.2.1' },
      details: {
        window: { from: '2026-12-03T10:00:00.000Z', to: '2026-12-03T10:01:00.000Z' },
        count: 40,
        recordedIndividually: 3,
        rateLimited: 37,
        byRefusal: { 'evidence.list 401 unauthorized': 40 },
        paths: ['/v1/x'],
      },
    });
    await limiter.close();
    expect(entries).toHaveLength(1); // one refusal in the new minute, recorded one by one
  });

  it('keeps at most maxAddresses tallies; further addresses share one overflow tally and its limit', async () => {
    const { entries, audit } = recorder();
    const limiter = new RefusalLimiter({
      audit,
      logger,
      limits: { perMinute: 5, maxAddresses: 100, globalPerMinute: 1000 },
      now: () => T0,
    });
    const verdicts = Array.from({ length: 10_000 }, (_, i) =>
      limiter.refuse(`10.0.${i >> 8}.${i & 255}`, refusal),
    );
    expect(limiter.trackedAddresses).toBe(101);
    expect(verdicts.slice(0, 105).every((v) => !v.limited)).toBe(true);
    expect(verdicts.slice(105).every((v) => v.limited)).toBe(true);
    await limiter.close();
    expect(entries).toHaveLength(1);
    expect(entries[0]!.actor.clientIp).toBeUndefined();
    expect(entries[0]!.details).toMatchObject({ overflow: true, count: 9_900, sealedEarly: true });
  });

  it('records at most globalPerMinute refusals one by one across all addresses; the rest are answered as usual and counted', async () => {
    let now = T0 + 1_000;
    const { entries, audit } = recorder();
    const limiter = new RefusalLimiter({
      audit,
      logger,
      limits: { perMinute: 3, maxAddresses: 100, globalPerMinute: 5 },
      now: () => now,
    });
    // Four addresses, each under its own limit of 3: 12 refusals, 5 of them recorded one by one.
    const verdicts = ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'].flatMap((ip) =>
      Array.from({ length: 3 }, () => limiter.refuse(ip, refusal)),
    );
    expect(verdicts.every((v) => !v.limited)).toBe(true);
    expect(verdicts.map((v) => v.record)).toEqual([
      ...Array<boolean>(5).fill(true),
      ...Array<boolean>(7).fill(false),
    ]);
    // Past its own limit an address still gets 429, and that spends no budget.
    expect(limiter.refuse('192.0.2.1', refusal)).toMatchObject({ limited: true, record: false });
    // A refusal at a route that records nothing on its own (no action) spends no budget either.
    expect(limiter.refuse('192.0.2.9', { ...refusal, action: undefined })).toMatchObject({
      limited: false,
      record: true,
    });

    now = T0 + 61_000; // a new minute: a fresh budget
    expect(limiter.refuse('192.0.2.4', refusal)).toMatchObject({ limited: false, record: true });
    await limiter.sealEnded();
    // 192.0.2.1 (3 recorded, 1 limited), .2 (2 recorded, 1 counted), .3 and .4 (3 counted each).
    const byIp = Object.fromEntries(entries.map((e) => [e.actor.clientIp, e.details]));
    expect(Object.keys(byIp).sort()).toEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']);
    expect(byIp['192.0.2.1']).toMatchObject({ count: 4, recordedIndividually: 3, rateLimited: 1 });
    expect(byIp['192.0.2.1']).not.toHaveProperty('overGlobalBudget');
    expect(byIp['192.0.2.2']).toMatchObject({
      count: 3,
      recordedIndividually: 2,
      rateLimited: 0,
      overGlobalBudget: 1,
    });
    expect(byIp['192.0.2.3']).toMatchObject({
      count: 3,
      recordedIndividually: 0,
      overGlobalBudget: 3,
    });
    await limiter.close();
  });

  it('bounds the chained events of a minute by the global budget plus the tallies, however many addresses knock', async () => {
    const { entries, audit } = recorder();
    const limits = { perMinute: 5, maxAddresses: 100, globalPerMinute: 50 };
    const limiter = new RefusalLimiter({ audit, logger, limits, now: () => T0 });
    let recorded = 0;
    for (let i = 0; i < 20_000; i++) {
      // 4,000 addresses, five refusals each, and a few of them hammering.
      const ip = i < 15_000 ? `10.1.${(i % 4000) >> 8}.${(i % 4000) & 255}` : '10.9.9.9';
      if (limiter.refuse(ip, refusal).record) recorded += 1;
    }
    await limiter.close();
    expect(recorded).toBe(limits.globalPerMinute);
    expect(entries.length).toBeLessThanOrEqual(limits.maxAddresses + 1);
    expect(recorded + entries.length).toBeLessThanOrEqual(
      limits.globalPerMinute + limits.maxAddresses + 1,
    );
    // Every refusal is accounted for: recorded one by one, or counted in an aggregate.
    const sum = (k: string) => entries.reduce((n, e) => n + Number(e.details?.[k] ?? 0), 0);
    expect(sum('count')).toBe(20_000);
    expect(sum('recordedIndividually')).toBe(recorded);
    expect(sum('rateLimited') + Number(sum('overGlobalBudget'))).toBe(20_000 - recorded);
  });

  it('keeps each tally small: a few short sample paths, share-link ids and kinds', async () => {
    const { entries, audit } = recorder();
    const limiter = new RefusalLimiter({
      audit,
      logger,
      limits: { perMinute: 1, maxAddresses: 10, globalPerMinute: 1000 },
      now: () => T0,
    });
    for (let i = 0; i < 200; i++) {
      limiter.refuse('192.0.2.1', {
        action: `action.${i}`,
        status: 404,
        code: 'not_found',
        path: `/s/${String(i).padStart(4, '0')}${'x'.repeat(5_000)}`,
        shareLinkId: `${String(i).padStart(4, '0')}${'y'.repeat(5_000)}`,
      });
    }
    limiter.refuse(`${'z'.repeat(10_000)}`, refusal); // not an address: cut short as a key
    await limiter.close();
    const details = entries.find((e) => e.actor.clientIp === '192.0.2.1')!.details as {
      paths: string[];
      shareLinkIds: string[];
      byRefusal: Record<string, number>;
    };
    expect(details.paths.length).toBeLessThanOrEqual(3);
    expect(details.paths.every((p) => p.length <= 100)).toBe(true);
    expect(details.shareLinkIds.length).toBeLessThanOrEqual(5);
    expect(details.shareLinkIds.every((id) => id.length <= 64)).toBe(true);
    expect(Object.keys(details.byRefusal).length).toBeLessThanOrEqual(9);
    expect(Object.values(details.byRefusal).reduce((n, v) => n + v, 0)).toBe(200);
    expect(clientOf('z'.repeat(10_000)).length).toBeLessThanOrEqual(64);
  });

  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8:0:0:ffff:1:2:3', '2001:db8:0:0::/64'],
    ['2001:DB8:0:7::1%eth0', '2001:db8:0:7::/64'],
    ['::1', '0:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    [undefined, 'unknown'],
  ])('counts %s against %s', (ip, client) => {
    expect(clientOf(ip)).toBe(client);
  });
});
