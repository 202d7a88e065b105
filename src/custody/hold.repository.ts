import { sql, type Insertable, type Selectable } from 'kysely';
import type { Executor, LegalHoldsTable } from '../db/database';

export type HoldRow = Selectable<LegalHoldsTable>;

// Any constant: hold placement takes it exclusively, deletions share it, so "is it held?" and
// "delete it" are one atomic step against a hold being placed at the same moment.
export const HOLD_LOCK = 0x686f6c64;

/** Thin data access for legal holds: one query per method. */
export class HoldRepository {
  /** Placing a hold waits for deletions in flight, and they for it. */
  async lockForPlacement(db: Executor): Promise<void> {
    await sql`select pg_advisory_xact_lock(${HOLD_LOCK})`.execute(db);
  }

  async lockForDeletion(db: Executor): Promise<void> {
    await sql`select pg_advisory_xact_lock_shared(${HOLD_LOCK})`.execute(db);
  }

  async insert(db: Executor, row: Insertable<LegalHoldsTable>): Promise<HoldRow> {
    return db.insertInto('legal_holds').values(row).returningAll().executeTakeFirstOrThrow();
  }

  /** Releases an active hold; undefined when there is no such active hold. */
  async release(
    db: Executor,
    id: string,
    r: { keyId: string; at: Date; reason: string },
  ): Promise<HoldRow | undefined> {
    return db
      .updateTable('legal_holds')
      .set({ released_by_key_id: r.keyId, released_at: r.at, release_reason: r.reason })
      .where('id', '=', id)
      .where('released_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
  }

  async list(
    db: Executor,
    f: { itemId?: string; complaintId?: string; active: boolean },
    limit: number,
  ): Promise<HoldRow[]> {
    let q = db.selectFrom('legal_holds').selectAll();
    if (f.itemId) q = q.where('item_id', '=', f.itemId);
    if (f.complaintId) q = q.where('complaint_id', '=', f.complaintId);
    if (f.active) q = q.where('released_at', 'is', null);
    return q.orderBy('placed_at', 'desc').orderBy('id').limit(limit).execute();
  }

  /** Items a complaint covers: linked to it directly or to one of its orders. */
  async itemsOfComplaint(db: Executor, complaintId: string): Promise<string[]> {
    const { rows } = await sql<{ item_id: string }>`
      select distinct l.item_id from evidence_links l
      where (l.link_type = 'complaint' and l.ref = ${complaintId})
         or (l.link_type = 'order' and l.ref = any(
              coalesce((select c.order_ids from complaints c where c.id = ${complaintId}), '{}')))
      order by l.item_id`.execute(db);
    return rows.map((r) => r.item_id);
  }

  async activeOnComplaint(db: Executor, complaintId: string): Promise<boolean> {
    const row = await db
      .selectFrom('legal_holds')
      .select('id')
      .where('complaint_id', '=', complaintId)
      .where('released_at', 'is', null)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Of these items, those still under some active hold (directly or through a complaint). */
  async stillHeld(db: Executor, itemIds: string[]): Promise<Set<string>> {
    if (itemIds.length === 0) return new Set();
    const { rows } = await sql<{ id: string }>`
      select id from unnest(${itemIds}::uuid[]) as t(id) where evidence_is_held(id)`.execute(db);
    return new Set(rows.map((r) => r.id));
  }
}
