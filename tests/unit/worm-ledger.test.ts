import { WormLedger, wormStatusAt, type WormStatus } from '../../src/storage/worm';

describe('wormStatusAt', () => {
  it('judges a recorded in_force retention against now', () => {
    const now = Date.parse('2026-12-03T12:00:00Z');
    expect(wormStatusAt('in_force', new Date(now + 1000), now)).toBe('in_force');
    expect(wormStatusAt('in_force', new Date(now), now)).toBe('expired');
    expect(wormStatusAt('in_force', '2026-12-01T00:00:00Z', now)).toBe('expired');
    expect(wormStatusAt('not_in_force', null, now)).toBe('not_in_force');
  });
});

describe('WormLedger readiness latch', () => {
  const latched = (everyMs: number, answer: () => Promise<WormStatus>) => {
    const ledger = new WormLedger(everyMs);
    const calls: string[] = [];
    ledger.setRechecker(async (p) => {
      calls.push(`${p.object}:${p.key}`);
      return answer();
    });
    ledger.observe('evidence', 'sha256/ok', 'in_force');
    ledger.observe('evidence', 'sha256/bad', 'not_in_force');
    return { ledger, calls };
  };

  it('clears once the failing object is in force when re-checked', async () => {
    const { ledger, calls } = latched(30_000, async () => 'in_force');
    expect(ledger.snapshot().status).toBe('not_in_force');
    await ledger.refresh();
    expect(calls).toEqual(['evidence:sha256/bad']);
    expect(ledger.snapshot()).toMatchObject({
      status: 'in_force',
      lastProblem: { key: 'sha256/bad' },
    });
    await ledger.refresh(); // nothing latched: no re-check
    expect(calls).toHaveLength(1);
  });

  it('stays latched while the store still ignores it, re-checking at most every interval', async () => {
    const { ledger, calls } = latched(200, async () => 'not_in_force');
    await ledger.refresh();
    await ledger.refresh();
    expect(calls).toHaveLength(1);
    expect(ledger.snapshot().status).toBe('not_in_force');
    await new Promise((r) => setTimeout(r, 250));
    await ledger.refresh();
    expect(calls).toHaveLength(2);
    expect(ledger.snapshot().status).toBe('not_in_force');
  });

  it('waits a bounded time for a hanging re-check, shared by concurrent callers', async () => {
    let release: (s: WormStatus) => void = () => undefined;
    const { ledger, calls } = latched(0, () => new Promise((r) => (release = r)));
    const started = Date.now();
    await Promise.all([ledger.refresh(100), ledger.refresh(100), ledger.refresh(100)]);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(calls).toHaveLength(1);
    expect(ledger.snapshot().status).toBe('not_in_force');
    release('in_force');
    await ledger.refresh(100);
    expect(ledger.snapshot().status).toBe('in_force');
  });

  it('a failure observed during a re-check is not cleared by it', async () => {
    let release: (s: WormStatus) => void = () => undefined;
    const { ledger } = latched(0, () => new Promise((r) => (release = r)));
    await ledger.refresh(10);
    ledger.observe('evidence', 'sha256/worse', 'not_in_force');
    release('in_force');
    await new Promise((r) => setImmediate(r));
    expect(ledger.snapshot()).toMatchObject({
      status: 'not_in_force',
      lastProblem: { key: 'sha256/worse' },
    });
  });
});
