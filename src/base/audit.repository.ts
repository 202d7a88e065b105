import { sql, type Insertable, type RawBuilder, type Selectable } from 'kysely';
import type {
  AuditCheckpointsTable,
  AuditEventsTable,
  AuditPendingTable,
  Db,
  Executor,
  Tx,
} from '../db/database';

export type AuditRow = Selectable<AuditEventsTable>;
export type CheckpointRow = Selectable<AuditCheckpointsTable>;

/** Thin data access for the audit trail, its head and its checkpoints: one query per method. */
export class AuditRepository {
  /** Locks the chain head until the transaction ends: events are linked one chainer at a time. */
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
   * The head, locked until the transaction ends, or none while another transaction holds it (a
   * chainer elsewhere is at work: it links what is waiting, this one need not wait for it).
   */
  async lockHeadUnlessBusy(tx: Tx): Promise<{ seq: number; hash: string } | undefined> {
    return tx
      .selectFrom('audit_chain_head')
      .select(['seq', 'hash'])
      .forUpdate()
      .skipLocked()
      .executeTakeFirst();
  }

  /** Events recorded, to be linked (inside the caller's transaction: a write and its record). */
  async insertPending(db: Executor, rows: Insertable<AuditPendingTable>[]): Promise<void> {
    await db.insertInto('audit_pending').values(rows).execute();
  }

  /**
   * Events recorded in one statement of their own; `durable: false` commits it without waiting
   * for the WAL flush (synchronous_commit off for this statement's own transaction only).
   */
  async insertPendingBatch(
    // Never a writer's transaction: set_config(..., true) would make its commit asynchronous too.
    db: Db,
    rows: Insertable<AuditPendingTable>[],
    durable: boolean,
  ): Promise<void> {
    await sql`with e as (
        insert into audit_pending (occurred_at, action, outcome, actor_key_id, actor_role,
          actor_name, item_ids, complaint_id, request_id, client_ip, details, durable)
        select e.occurred_at, e.action, e.outcome, e.actor_key_id, e.actor_role, e.actor_name,
          e.item_ids, e.complaint_id, e.request_id, e.client_ip, e.details::jsonb, e.durable
        -- details is each row's JSON text (as insertPending takes it), parsed here
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as e(occurred_at timestamptz,
          action text, outcome text, actor_key_id text, actor_role text, actor_name text,
          item_ids text[], complaint_id text, request_id text, client_ip text, details text,
          durable boolean)
        returning 1
      )
      select (select count(*) from e) as n,
        ${durable ? sql`null` : sql`set_config('synchronous_commit', 'off', true)`} as commit_mode`.execute(
      db,
    );
  }

  /** The newest waiting event's id (undefined: none waits). */
  async lastPendingId(db: Executor): Promise<number | undefined> {
    const row = await db
      .selectFrom('audit_pending')
      .select('id')
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row?.id;
  }

  /** When the oldest event waiting to be linked was recorded (one index read: no count). */
  async oldestPendingAt(db: Executor): Promise<Date | undefined> {
    const row = await db
      .selectFrom('audit_pending')
      .select('occurred_at')
      .orderBy('id')
      .limit(1)
      .executeTakeFirst();
    return row ? new Date(row.occurred_at) : undefined;
  }

  /** The oldest waiting events (up to `uptoId`), in id order. */
  async readPending(
    tx: Tx,
    limit: number,
    uptoId?: number,
  ): Promise<Selectable<AuditPendingTable>[]> {
    let q = tx.selectFrom('audit_pending').selectAll();
    if (uptoId !== undefined) q = q.where('id', '<=', uptoId);
    return q.orderBy('id').limit(limit).execute();
  }

  /**
   * Links a batch in one statement (`audit_link_events`, a function of the owner's: the service's
   * role may not delete a waiting event): each waiting event is taken out of `audit_pending` only
   * as the very same event, chained, goes into `audit_events` (and its item index rows); any
   * mismatch fails the whole batch. One parameter, however many events.
   */
  async linkEvents(
    tx: Tx,
    events: (Insertable<AuditEventsTable> & { pending_id: number })[],
  ): Promise<void> {
    await sql`select audit_link_events(${JSON.stringify(
      // details travel as JSON text in the rows (as insertPending takes them), as JSON here
      events.map((e) => ({ ...e, details: JSON.parse(e.details) as unknown })),
    )}::jsonb)`.execute(tx);
  }

  /** The rest of this transaction commits without waiting for its WAL flush. */
  async commitWithoutFlush(tx: Tx): Promise<void> {
    await sql`set local synchronous_commit = off`.execute(tx);
  }

  /**
   * Adds the trail's partitions for this month and the next three where missing (a function the
   * owner made: the service's login cannot create tables); returns how many it made.
   */
  async preparePartitions(db: Executor): Promise<number> {
    const { rows } = await sql<{
      made: number;
    }>`select audit_events_prepare_partitions() as made`.execute(db);
    return rows[0]?.made ?? 0;
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

  /**
   * Events naming an item, oldest first, keyset-paginated on seq: a page of the item index
   * (item_id, seq) walked in order, each event read back from its one partition. The event itself
   * must name the item too: a row slipped into the index neither pins someone else's event on the
   * item nor, skipped, cuts the page short (the walk goes on past it).
   */
  async listForItem(
    db: Executor,
    itemId: string,
    afterSeq: number,
    limit: number,
  ): Promise<AuditRow[]> {
    const events: AuditRow[] = [];
    for (let after = afterSeq; events.length < limit;) {
      const want = limit - events.length;
      const { rows } = await sql<AuditRow & { index_seq: number }>`
        select i.seq as index_seq, a.*
          from (select seq, occurred_at from audit_event_items
                 where item_id = ${itemId} and seq > ${after} order by seq limit ${want}) i
          left join audit_events a on a.seq = i.seq and a.occurred_at = i.occurred_at
                                  and a.item_ids @> array[${itemId}]::text[]
         order by i.seq`.execute(db);
      for (const { index_seq: _, ...event } of rows) if (event.seq !== null) events.push(event);
      if (rows.length < want) break;
      after = rows.at(-1)!.index_seq;
    }
    return events;
  }

  /** Events in [from, to), oldest first, keyset-paginated on seq. */
  async list(db: Executor, f: { from?: Date; to?: Date }, afterSeq: number, limit: number) {
    let q = db.selectFrom('audit_events').selectAll().where('seq', '>', afterSeq);
    if (f.from) q = q.where('occurred_at', '>=', f.from);
    if (f.to) q = q.where('occurred_at', '<', f.to);
    return q.orderBy('seq').limit(limit).execute();
  }

  /**
   * The event that recorded an item's creation: what the item's hash was when it arrived. It is
   * the item's first event (appended with the item's row), so its first hundred are tried, in seq
   * order through the index; only when none of them is (never, unless the trail was tampered
   * with) is the rest read. A planner that guesses creations are rare must not read a long
   * history whole to find the first one, nor plan that read each time (two statements, not one).
   */
  async creationOf(db: Executor, itemId: string): Promise<AuditRow | undefined> {
    const creation = (events: RawBuilder<unknown>) => sql<AuditRow>`
      select a.* from ${events} i
        join audit_events a on a.seq = i.seq and a.occurred_at = i.occurred_at
       where a.item_ids @> array[${itemId}]::text[] and a.action = 'evidence.create'
         and a.outcome = 'success'
       order by i.seq limit 1`;
    const first = await creation(sql`(select seq, occurred_at from audit_event_items
      where item_id = ${itemId} order by seq limit 100)`).execute(db);
    if (first.rows[0]) return first.rows[0];
    const rest = await creation(sql`(select seq, occurred_at from audit_event_items
      where item_id = ${itemId} order by seq offset 100)`).execute(db);
    return rest.rows[0];
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

  /**
   * Serialises checkpoint writers (instances and the CLI) on this connection until
   * `unlockCheckpoints`: a session lock, so it spans the durable read of the head and the signing
   * transaction after it.
   */
  async lockCheckpoints(conn: Db, lockKey: number): Promise<void> {
    await sql`select pg_advisory_lock(${lockKey})`.execute(conn);
  }

  async unlockCheckpoints(conn: Db, lockKey: number): Promise<void> {
    await sql`select pg_advisory_unlock(${lockKey})`.execute(conn);
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
