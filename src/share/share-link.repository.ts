import type { Insertable, Selectable } from 'kysely';
import type { Executor, ShareLinksTable } from '../db/database';

export type ShareLinkRow = Selectable<ShareLinksTable>;

/** Thin data access for share links: one query per method. */
export class ShareLinkRepository {
  async insert(db: Executor, row: Insertable<ShareLinksTable>): Promise<ShareLinkRow> {
    return db.insertInto('share_links').values(row).returningAll().executeTakeFirstOrThrow();
  }

  async find(db: Executor, id: string): Promise<ShareLinkRow | undefined> {
    return db.selectFrom('share_links').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async findByTokenHash(db: Executor, tokenSha256: string): Promise<ShareLinkRow | undefined> {
    return db
      .selectFrom('share_links')
      .selectAll()
      .where('token_sha256', '=', tokenSha256)
      .executeTakeFirst();
  }

  /** Newest first, of a complaint or an item when one is given. */
  async list(
    db: Executor,
    filter: { complaintId?: string; itemId?: string },
    limit: number,
  ): Promise<ShareLinkRow[]> {
    let query = db.selectFrom('share_links').selectAll().orderBy('created_at', 'desc').limit(limit);
    if (filter.complaintId) query = query.where('complaint_id', '=', filter.complaintId);
    if (filter.itemId) query = query.where('item_id', '=', filter.itemId);
    return query.execute();
  }

  /** Revokes a link not yet revoked; throws when it was (the caller checked it in this run). */
  async revoke(db: Executor, id: string, at: Date, keyId: string | null): Promise<ShareLinkRow> {
    return db
      .updateTable('share_links')
      .set({ revoked_at: at, revoked_by_key_id: keyId })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async countUse(db: Executor, id: string, at: Date): Promise<void> {
    await db
      .updateTable('share_links')
      .set((eb) => ({ use_count: eb('use_count', '+', 1), last_used_at: at }))
      .where('id', '=', id)
      .execute();
  }
}
