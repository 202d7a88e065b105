import { sql } from 'kysely';
import type { Executor } from '../db/database';
import type { EvidenceRow } from '../evidence/evidence.repository';
import { wormColumns, type WormState } from '../storage/worm';

export interface StoredRowRef {
  id: string;
  blob_key: string;
  deleted_at: Date | null;
  blob_purged_at: Date | null;
}

/** Items as integrity checks read them: links are not needed, so not fetched. */
const itemsWithoutLinks = (db: Executor) =>
  db
    .selectFrom('evidence_items as i')
    .selectAll('i')
    .select([
      sql<string[]>`'{}'::text[]`.as('order_ids'),
      sql<string[]>`'{}'::text[]`.as('complaint_ids'),
    ]);

/** Thin data access for the integrity scrub: one query per method. */
export class ScrubRepository {
  async countLive(db: Executor): Promise<number> {
    const row = await db
      .selectFrom('evidence_items')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('deleted_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** The live items checked longest ago (never-checked first): the next slice of the rotation. */
  async leastRecentlyVerified(db: Executor, limit: number): Promise<EvidenceRow[]> {
    return itemsWithoutLinks(db)
      .where('i.deleted_at', 'is', null)
      .orderBy(sql`i.verified_at nulls first`)
      .orderBy('i.id')
      .limit(limit)
      .execute();
  }

  /** Rows by blob key in byte order (as stores list), after a key: one side of the merge. */
  async rowsByBlobKey(db: Executor, afterKey: string, limit: number): Promise<StoredRowRef[]> {
    const { rows } = await sql<StoredRowRef>`
      select id, blob_key, deleted_at, blob_purged_at from evidence_items
      where blob_key collate "C" > ${afterKey}
      order by blob_key collate "C" limit ${limit}`.execute(db);
    return rows;
  }

  async findLive(db: Executor, id: string): Promise<EvidenceRow | undefined> {
    return itemsWithoutLinks(db)
      .where('i.id', '=', id)
      .where('i.deleted_at', 'is', null)
      .executeTakeFirst();
  }

  /**
   * Live items whose blob is not known to be under WORM (never checked, found without it, or
   * recorded in force with a retain-until that has passed since; `expired` ones stay as the store
   * confirmed them), a page after an id: what the scrub's back-fill reads back (and locks).
   */
  async withoutWorm(
    db: Executor,
    afterId: string,
    limit: number,
  ): Promise<(StoredRowRef & { lapsed: boolean })[]> {
    return db
      .selectFrom('evidence_items')
      .select(['id', 'blob_key', 'deleted_at', 'blob_purged_at'])
      .select(sql<boolean>`worm_status = 'in_force'`.as('lapsed'))
      .where('deleted_at', 'is', null)
      .where('blob_purged_at', 'is', null)
      .where((eb) =>
        eb.or([
          eb('worm_status', 'is', null),
          eb('worm_status', 'in', ['not_in_force', 'not_configured']),
          eb.and([
            eb('worm_status', '=', 'in_force'),
            eb('worm_retain_until', '<=', sql<Date>`now()`),
          ]),
        ]),
      )
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  async setWorm(db: Executor, id: string, worm: WormState): Promise<void> {
    await db.updateTable('evidence_items').set(wormColumns(worm)).where('id', '=', id).execute();
  }

  /** Live items under an active legal hold, for mirroring the flag to their objects. */
  async heldItemIds(db: Executor, afterId: string, limit: number): Promise<string[]> {
    const { rows } = await sql<{ id: string }>`
      select id from evidence_items
      where deleted_at is null and id > ${afterId}::uuid and evidence_is_held(id)
      order by id limit ${limit}`.execute(db);
    return rows.map((r) => r.id);
  }
}
