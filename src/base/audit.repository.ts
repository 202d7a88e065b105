import { sql, type Insertable, type Selectable } from 'kysely';
import type { AuditCheckpointsTable, AuditEventsTable, Db, Executor, Tx } from '../db/database';

export type AuditRow = Selectable<AuditEventsTable>;
export type CheckpointRow = Selectable<AuditCheckpointsTable>;

/** Thin data access for the audit trail, its head and its checkpoints: one query per method. */
export class AuditRepository {
  /** Locks the chain head until the transaction ends: events are appended one writer at a time. */
  async lockHead(tx: Tx): Promise<{ seq: number; hash: string }> {
    return tx
      .selectFrom('audit_chain_head')
      .select(['seq', 'hash'])
      .forUpdate()
      .executeTakeFirstOrThrow();
  }

  async head(db: Executor): Promise<{ seq: number; hash: string }> {
    return db.selectFrom('audit_chain_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
  }

  /**
   * The chain head, made durable: locked and rewritten unchanged in a transaction that commits
   * synchronously. A transaction that wrote WAL waits at commit for the WAL to be flushed through
   * its commit record, so every commit it saw (reads' events committed without waiting for their
   * flush included) is on disk when this returns. What is signed or sent outside the database (a
   * checkpoint) must never name an event that a database crash could still take back. (A mere
   * transaction id is not enough: PostgreSQL commits a transaction that wrote no WAL but its
   * commit record asynchronously.)
   */
  async durableHead(db: Db): Promise<{ seq: number; hash: string }> {
    return db.transaction().execute(async (tx) => {
      await sql`set local synchronous_commit = on`.execute(tx);
      const head = await this.lockHead(tx);
      await this.setHead(tx, head.seq, head.hash);
      return head;
    });
  }

  /** The head row, or none: the verifier reports a removed head instead of failing. */
  async findHead(db: Executor): Promise<{ seq: number; hash: string } | undefined> {
    return db.selectFrom('audit_chain_head').select(['seq', 'hash']).executeTakeFirst();
  }

  async setHead(tx: Tx, seq: number, hash: string): Promise<void> {
    await tx.updateTable('audit_chain_head').set({ seq, hash }).execute();
  }

  /**
   * In one statement: moves the head from `from` to `to` and inserts `rows`, only if the head is
   * still `from` (a writer holding its lock is waited for, then re-checked). False if it moved.
   * `durable: false` commits without waiting for the WAL flush (synchronous_commit off for this
   * statement's own transaction only).
   */
  async appendIfHead(
    db: Executor,
    from: { seq: number; hash: string },
    to: { seq: number; hash: string },
    rows: Insertable<AuditEventsTable>[],
    durable: boolean,
  ): Promise<boolean> {
    const { rows: out } = await sql<{ advanced: boolean }>`with head as (
        update audit_chain_head set seq = ${to.seq}, hash = ${to.hash}
        where seq = ${from.seq} and hash = ${from.hash}
        returning seq
      ), events as (
        insert into audit_events (seq, occurred_at, action, outcome, actor_key_id, actor_role,
          actor_name, item_ids, complaint_id, request_id, client_ip, details, prev_hash, hash)
        select e.seq, e.occurred_at, e.action, e.outcome, e.actor_key_id, e.actor_role,
          e.actor_name, e.item_ids, e.complaint_id, e.request_id, e.client_ip, e.details::jsonb,
          e.prev_hash, e.hash
        -- details is each row's JSON text (as insertEvents takes it), parsed here
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as e(seq bigint,
          occurred_at timestamptz, action text, outcome text, actor_key_id text, actor_role text,
          actor_name text, item_ids text[], complaint_id text, request_id text, client_ip text,
          details text, prev_hash text, hash text)
        where exists (select from head)
        returning seq
      )
      select exists (select from head) as advanced,
        ${durable ? sql`null` : sql`set_config('synchronous_commit', 'off', true)`} as commit_mode`.execute(
      db,
    );
    return out[0]!.advanced;
  }

  /** The rest of this transaction commits without waiting for its WAL flush. */
  async commitWithoutFlush(tx: Tx): Promise<void> {
    await sql`set local synchronous_commit = off`.execute(tx);
  }

  async insertEvents(tx: Tx, rows: Insertable<AuditEventsTable>[]): Promise<void> {
    await tx.insertInto('audit_events').values(rows).execute();
  }

  /** Events in (afterSeq, uptoSeq], in order. */
  async eventsAfter(db: Executor, afterSeq: number, uptoSeq: number, limit: number) {
    return db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>', afterSeq)
      .where('seq', '<=', uptoSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }

  /** Events naming an item, oldest first, keyset-paginated on seq. */
  /** A page of events after `afterSeq`, in order, whatever their seq (the verifier finds gaps). */
  async pageAfter(db: Executor, afterSeq: number, limit: number): Promise<AuditRow[]> {
    return db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }

  async listForItem(db: Executor, itemId: string, afterSeq: number, limit: number) {
    return db
      .selectFrom('audit_events')
      .selectAll()
      .where('item_ids', '@>', sql<string[]>`array[${itemId}]::text[]`)
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }

  /** Events in [from, to), oldest first, keyset-paginated on seq. */
  async list(db: Executor, f: { from?: Date; to?: Date }, afterSeq: number, limit: number) {
    let q = db.selectFrom('audit_events').selectAll().where('seq', '>', afterSeq);
    if (f.from) q = q.where('occurred_at', '>=', f.from);
    if (f.to) q = q.where('occurred_at', '<', f.to);
    return q.orderBy('seq').limit(limit).execute();
  }

  /** The event that recorded an item's creation: what the item's hash was when it arrived. */
  async creationOf(db: Executor, itemId: string): Promise<AuditRow | undefined> {
    return db
      .selectFrom('audit_events')
      .selectAll()
      .where('item_ids', '@>', sql<string[]>`array[${itemId}]::text[]`)
      .where('action', '=', 'evidence.create')
      .where('outcome', '=', 'success')
      .orderBy('seq')
      .limit(1)
      .executeTakeFirst();
  }

  async insertCheckpoint(db: Executor, row: Insertable<AuditCheckpointsTable>): Promise<void> {
    await db
      .insertInto('audit_checkpoints')
      .values(row)
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  /** Every checkpoint the database recorded, with the object it was written to. */
  async checkpointKeys(db: Executor): Promise<{ seq: number; object_key: string }[]> {
    return db.selectFrom('audit_checkpoints').select(['seq', 'object_key']).execute();
  }

  /** Serialises checkpoint writers (instances and the CLI) until the transaction ends. */
  async lockCheckpoints(tx: Tx, lockKey: number): Promise<void> {
    await sql`select pg_advisory_xact_lock(${lockKey})`.execute(tx);
  }

  async latestCheckpoint(db: Executor): Promise<CheckpointRow | undefined> {
    return db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
  }
}
