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
    const limiter = new RefusalLimiter(
      audit,
      logger,
      { perMinute: 3, maxAddresses: 10 },
      () => now,
    );
    const verdicts = Array.from({ length: 40 }, () => limiter.refuse('192.0.2.1', refusal));
    expect(verdicts.filter((v) => !v.limited)).toHaveLength(3);
    expect(verdicts[3]).toEqual({ limited: true, retryAfterSeconds: 45 });
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
    const limiter = new RefusalLimiter(
      audit,
      logger,
      { perMinute: 5, maxAddresses: 100 },
      () => T0,
    );
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
