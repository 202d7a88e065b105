import { sql } from 'kysely';
import { systemActor } from '../../src/base/actor';
import { AuditRepository } from '../../src/base/audit.repository';
import { AuditLog, type AuditEntry } from '../../src/base/audit.service';
import { createLogger } from '../../src/base/logger';
import { createDb, type Db } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrator';
import { expectWholeChain } from '../support/audit-chain';
import { createTestDatabase } from '../support/test-db';

/**
 * Events are recorded with no lock (audit_pending) and linked by whichever instance's chainer
 * gets the head: here two audit logs on one database stand for two instances, each with its own
 * pool and chainer, as the service runs them.
 */
describe('audit events recorded, then linked', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let owner: Db;
  const pools: Db[] = [];
  const logs: AuditLog[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    owner = createDb(database.url, 2);
    await migrateToLatest(owner, createLogger('silent'));
  });
  afterAll(async () => {
    for (const log of logs) await log.close();
    for (const db of pools) await db.destroy();
    await owner?.destroy();
    await database?.drop();
  });

  /** An instance: its own pool and audit log, chaining unless told not to. */
  function instance(chaining = true): { db: Db; audit: AuditLog } {
    const db = createDb(database.url, 8);
    const audit = new AuditLog({ db, repo: new AuditRepository(), logger: createLogger('silent') });
    if (chaining) audit.startChaining();
    pools.push(db);
    logs.push(audit);
    return { db, audit };
  }

  const wholeChain = () => expectWholeChain(owner);

  const waiting = async () =>
    (await sql<{ n: number }>`select count(*)::int as n from audit_pending`.execute(owner)).rows[0]!
      .n;

  it('links writes and reads from two instances into one whole chain, each event once', async () => {
    const [a, b] = [instance(), instance()];
    const actor = systemActor('linking test');
    const entry = (who: string, i: number): AuditEntry => ({
      action: 'evidence.view',
      actor,
      details: { who, i },
    });
    // Writers: one transaction per event, as a change to evidence records its own; readers batched.
    const writes = (x: { db: Db; audit: AuditLog }, who: string) =>
      Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (let i = 0; i < 25; i++) {
            await x.db.transaction().execute((tx) => x.audit.append(tx, [entry(who, w * 100 + i)]));
          }
        }),
      );
    const reads = (x: { audit: AuditLog }, who: string) =>
      Promise.all(Array.from({ length: 200 }, (_, i) => x.audit.recordRead(entry(who, i))));
    await Promise.all([
      writes(a, 'a-write'),
      writes(b, 'b-write'),
      reads(a, 'a-read'),
      reads(b, 'b-read'),
    ]);
    // Both chainers run on their own; a reader of the trail links what they have not yet.
    await a.audit.settle();
    expect(await waiting()).toBe(0);
    const events = await wholeChain();
    const seen = new Map<string, number>();
    for (const e of events) {
      const key = `${String(e.details.who)}:${String(e.details.i)}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    expect(seen.size).toBe(2 * 200 + 2 * 200);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
  });

  it('links what a stopped instance left waiting, from another instance, within its poll', async () => {
    const gone = instance(false);
    await gone.audit.close(); // its chainer is stopped: what it records now waits
    const before = (await new AuditRepository().head(owner)).seq;
    await gone.audit.record({ action: 'custody.run', actor: systemActor('gone'), details: {} });
    await gone.db
      .transaction()
      .execute((tx) =>
        gone.audit.append(tx, [{ action: 'hold.place', actor: systemActor('gone'), details: {} }]),
      );
    expect(await waiting()).toBe(2);
    instance(); // its poll finds them
    for (let t = 0; (await waiting()) > 0; t++) {
      expect(t).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await new AuditRepository().head(owner)).seq).toBe(before + 2);
    await wholeChain();
  });

  it('records nothing for a write that rolls back', async () => {
    const x = instance();
    const before = (await new AuditRepository().head(owner)).seq;
    await expect(
      x.db.transaction().execute(async (tx) => {
        await x.audit.append(tx, [{ action: 'hold.place', actor: systemActor('rb'), details: {} }]);
        throw new Error('the write failed');
      }),
    ).rejects.toThrow('the write failed');
    await x.audit.settle();
    expect(await waiting()).toBe(0);
    expect((await new AuditRepository().head(owner)).seq).toBe(before);
  });

  it('links a backlog of many batches, waiting behind a held head, in one settle', async () => {
    const x = instance(false);
    const before = (await new AuditRepository().head(owner)).seq;
    // Linking held off (a long checkpoint, a stalled disk): events pile up, recorded.
    const holder = owner.transaction().execute(async (tx) => {
      await sql`select seq from audit_chain_head for update`.execute(tx);
      await Promise.all(
        Array.from({ length: 12_000 }, (_, i) =>
          x.audit.recordRead({
            action: 'evidence.view',
            actor: systemActor('backlog'),
            details: { i },
          }),
        ),
      );
    });
    await holder;
    expect(await waiting()).toBe(12_000);
    await x.audit.settle(); // three batches (more than a statement's 65,535 parameters would allow)
    expect(await waiting()).toBe(0);
    expect((await new AuditRepository().head(owner)).seq).toBe(before + 12_000);
    await wholeChain();
  });

  it('takes a waiting event out only as the very same event goes into the chain', async () => {
    const { audit } = instance(false);
    await audit.close();
    await audit.record({ action: 'custody.run', actor: systemActor('w'), details: { n: 1 } });
    const [row] = (
      await sql<{ id: number; occurred_at: Date }>`
      select id, occurred_at from audit_pending order by id desc limit 1`.execute(owner)
    ).rows;
    const head = await new AuditRepository().head(owner);
    const forged = {
      pending_id: row!.id,
      seq: head.seq + 1,
      occurred_at: row!.occurred_at,
      action: 'custody.run',
      outcome: 'success',
      actor_role: 'system',
      actor_name: 'w',
      item_ids: [],
      details: { n: 2 }, // not what was recorded
      prev_hash: head.hash,
      hash: 'f'.repeat(64),
    };
    await expect(
      sql`select audit_link_events(${JSON.stringify([forged])}::jsonb)`.execute(owner),
    ).rejects.toMatchObject({ code: '23000' });
    expect(await waiting()).toBe(1);
    // Nor can an event the chain could not take be recorded: it would stop every link after it.
    await expect(
      sql`insert into audit_pending (occurred_at, action, outcome, item_ids, durable)
          values (now(), 'evidence.view', 'success', '{a,a}', false)`.execute(owner),
    ).rejects.toMatchObject({ code: '23514' });
    await expect(
      sql`insert into audit_pending (occurred_at, action, outcome, item_ids, durable)
          values (now(), 'evidence.view', 'success', array[null]::text[], false)`.execute(owner),
    ).rejects.toMatchObject({ code: '23514' });
    await audit.settle();
    await wholeChain();
  });

  it('refuses to change an event while it waits, even to the owner', async () => {
    const { audit } = instance(false);
    await audit.close();
    await audit.record({ action: 'custody.run', actor: systemActor('w'), details: { n: 1 } });
    await expect(
      sql`update audit_pending set details = '{"n": 2}'`.execute(owner),
    ).rejects.toMatchObject({ code: '42501' });
    await audit.settle(); // linking it is no change: it is taken out as it is linked
    await wholeChain();
  });
});
