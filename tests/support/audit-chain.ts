import { AuditRepository, type AuditRow } from '../../src/base/audit.repository';
import { chainedFormOf } from '../../src/base/audit.service';
import { chainHash, GENESIS_HASH } from '../../src/base/audit-chain';
import type { Db } from '../../src/db/database';

/**
 * Expects the linked trail whole: gap-free from 1, every link recomputed from the stored rows, the
 * head its last event. Returns the events (link what waits first: AuditLog.settle).
 */
export async function expectWholeChain(owner: Db): Promise<AuditRow[]> {
  const repo = new AuditRepository();
  const events = await repo.pageAfter(owner, 0, 100_000);
  let prev = GENESIS_HASH;
  for (const [i, e] of events.entries()) {
    expect([e.seq, e.prev_hash, e.hash]).toEqual([i + 1, prev, chainHash(prev, chainedFormOf(e))]);
    prev = e.hash;
  }
  expect(await repo.head(owner)).toEqual({ seq: events.length, hash: prev });
  return events;
}
