import { sql } from 'kysely';
import { systemActor } from '../../src/base/actor';
import { AuditRepository } from '../../src/base/audit.repository';
import { AuditLog } from '../../src/base/audit.service';
import { createLogger } from '../../src/base/logger';
import { createDb, type Db } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrator';
import { expectWholeChain as expectLinkedWhole } from '../support/audit-chain';
import { createTestDatabase } from '../support/test-db';

/**
 * A batch of events whose statement outlives DATABASE_QUERY_TIMEOUT_MS: the client gives up (an
 * outage for those requests), but the server goes on, gets the table's lock when the session that
 * held it commits, and commits the batch. Retrying its events one by one (as the log did for any
 * error) recorded those reads twice. Now only the database refusing an event's own data is retried
 * event by event; a batch whose answer was lost is refused (503), though its events may be recorded.
 */
describe('an audit batch whose answer is lost', () => {
  const TIMEOUT_MS = 500;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let owner: Db;
  let db: Db;

  beforeAll(async () => {
    database = await createTestDatabase();
    owner = createDb(database.url, 2);
    await migrateToLatest(owner, createLogger('silent'));
    db = createDb(database.url, 4, () => undefined, undefined, TIMEOUT_MS);
  });
  afterAll(async () => {
    await db?.destroy();
    await owner?.destroy();
    await database?.drop();
  });

  async function expectWholeChain(audit: AuditLog): Promise<void> {
    await audit.settle();
    await expectLinkedWhole(owner);
  }

  it('never records an event twice when its batch commits after the client gave up', async () => {
    const audit = new AuditLog({ db, repo: new AuditRepository(), logger: createLogger('silent') });
    const actor = systemActor('lost answer test');
    // A session keeps events from being recorded for 4 query timeouts, then commits. The first
    // batch (x) gives up after one, and the server cancels its statement after three (statement_timeout); the next
    // batch (a to d) gives up too, but its statement is still waiting when the lock is let go, and
    // commits.
    const holder = owner.transaction().execute(async (tx) => {
      await sql`lock table audit_pending in exclusive mode`.execute(tx);
      await sql`select pg_sleep(${(TIMEOUT_MS * 4) / 1000})`.execute(tx);
    });
    await new Promise((r) => setTimeout(r, 100));
    const record = (read: string) =>
      audit.recordRead({ action: 'evidence.view', actor, details: { read } }).then(
        () => 'recorded',
        () => 'refused',
      );
    const first = record('x');
    await new Promise((r) => setTimeout(r, 100));
    const reads = ['a', 'b', 'c', 'd'].map(record);
    await first;
    await holder;
    const outcomes = await Promise.all(reads);
    // Let any statement the server still runs finish before counting.
    await new Promise((r) => setTimeout(r, TIMEOUT_MS * 3));

    await audit.settle();
    const { rows } = await sql<{ read: string; n: number }>`
      select details->>'read' as read, count(*)::int as n from audit_events
       where action = 'evidence.view' group by 1 order by 1`.execute(owner);
    const counts = Object.fromEntries(rows.map((r) => [r.read, r.n]));
    // Never twice; and a request answered "recorded" has its event.
    for (const [i, read] of ['a', 'b', 'c', 'd'].entries()) {
      expect([read, counts[read] ?? 0]).toEqual([
        read,
        outcomes[i] === 'recorded' ? 1 : (counts[read] ?? 0),
      ]);
      expect(counts[read] ?? 0).toBeLessThanOrEqual(1);
    }
    // Their requests were refused (an outage, 503), though the events landed: recorded, not lost.
    await expectWholeChain(audit);
  });

  it('stores hostile text exactly as it was hashed: lone surrogates, a pair cut at the length limit', async () => {
    const audit = new AuditLog({ db, repo: new AuditRepository(), logger: createLogger('silent') });
    const hostile = {
      action: 'complaint.view' as const,
      actor: { ...systemActor('surrogates'), name: `agent ${'x'.repeat(199)}\u{1F600}` },
      complaintId: 'CMP-\ud800',
      details: { note: 'lone \udc00 low, lone \ud83d high', cut: `${'y'.repeat(1999)}\u{1F600}` },
    };
    await audit.record(hostile); // one statement, events as JSON
    await audit.recordRead(hostile);
    await db.transaction().execute((tx) => audit.append(tx, [hostile])); // a writer's insert
    await audit.settle();
    const { rows } = await sql<{
      n: number;
    }>`select count(*)::int as n from audit_events where action = 'complaint.view'`.execute(owner);
    expect(rows[0]!.n).toBe(3);
    await expectWholeChain(audit);
  });
});
