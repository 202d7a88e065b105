import type { Insertable, Selectable } from 'kysely';
import type { ComplaintsTable, Executor } from '../db/database';

export type ComplaintRow = Selectable<ComplaintsTable>;

/** Thin data access for complaints: one query per method. */
export class ComplaintRepository {
  async find(db: Executor, id: string): Promise<ComplaintRow | undefined> {
    return db.selectFrom('complaints').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async orderIdsOf(db: Executor, id: string): Promise<{ order_ids: string[] } | undefined> {
    return db.selectFrom('complaints').select('order_ids').where('id', '=', id).executeTakeFirst();
  }

  /** The complaints among these ids, with their orders. */
  async ordersOfAny(db: Executor, ids: string[]): Promise<{ id: string; order_ids: string[] }[]> {
    return db.selectFrom('complaints').select(['id', 'order_ids']).where('id', 'in', ids).execute();
  }

  /** Row-locks the complaint for the caller's transaction: concurrent PUTs apply one at a time. */
  async findForUpdate(db: Executor, id: string): Promise<ComplaintRow | undefined> {
    return db
      .selectFrom('complaints')
      .selectAll()
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
  }

  /** Creates or replaces (the caller decides `opened_at`: the given time, else the first write's). */
  async upsert(db: Executor, row: Insertable<ComplaintsTable>): Promise<ComplaintRow> {
    return db
      .insertInto('complaints')
      .values(row)
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({
          status: eb.ref('excluded.status'),
          customer_phone: eb.ref('excluded.customer_phone'),
          customer_phone_e164: eb.ref('excluded.customer_phone_e164'),
          order_ids: eb.ref('excluded.order_ids'),
          tracking_numbers: eb.ref('excluded.tracking_numbers'),
          channel: eb.ref('excluded.channel'),
          topic: eb.ref('excluded.topic'),
          claim_url: eb.ref('excluded.claim_url'),
          description: eb.ref('excluded.description'),
          opened_at: eb.ref('excluded.opened_at'),
          closed_at: eb.ref('excluded.closed_at'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /** Whether any evidence is linked to this complaint id (a complaint known only by its links). */
  async hasLinkedEvidence(db: Executor, id: string): Promise<boolean> {
    const row = await db
      .selectFrom('evidence_links')
      .select('item_id')
      .where('link_type', '=', 'complaint')
      .where('ref', '=', id)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }
}
