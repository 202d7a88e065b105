import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** Counts of evidence by custody state, for GET /v1/custody/status and the metrics. */
export class CustodyStatusRepository {
  /**
   * One row of counts (bigints as strings): live, deleted, unpurged, failing, holds, damaged, and
   * `count_rows`, how many rows the archived/deleted totals were summed from. No full count: the
   * totals are the maintained evidence_item_counts (exact in this snapshot), every other figure
   * counts a small set through the partial index kept for it.
   */
  async counts(db: Executor) {
    const { rows } = await sql<{
      archived: string;
      deleted: string;
      count_rows: string;
      unpurged: string;
      failing: string;
      never_verified: string;
      holds: string;
      damaged: string;
    }>`select t.archived, t.deleted, t.count_rows,
        (select count(*) from evidence_items
          where deleted_at is not null and blob_purged_at is null) as unpurged,
        (select count(*) from evidence_items
          where deleted_at is null and verify_status <> 'ok') as failing,
        (select count(*) from evidence_items
          where deleted_at is null and verified_at is null) as never_verified,
        (select count(*) from legal_holds where released_at is null) as holds,
        (select count(*) from evidence_items
          where damaged_at is not null and deleted_at is null) as damaged
      from (select coalesce(sum(archived), 0) as archived, coalesce(sum(deleted), 0) as deleted,
              count(*) as count_rows
            from evidence_item_counts) t`.execute(db);
    return rows[0]!;
  }

  /**
   * Folds the count rows into one. Rows another transaction is still appending are not visible
   * here and stay for the next fold; two folds at once each move only the rows they deleted.
   */
  async foldCounts(db: Executor): Promise<void> {
    await sql`with gone as (delete from evidence_item_counts returning archived, deleted)
      insert into evidence_item_counts (archived, deleted)
      select sum(archived), sum(deleted) from gone having count(*) > 0`.execute(db);
  }

  /** Live items whose last verification failed, most recently checked first. */
  async failing(db: Executor, limit: number) {
    return db
      .selectFrom('evidence_items')
      .select(['id', 'verify_status', 'verified_at', 'verify_detail'])
      .where('deleted_at', 'is', null)
      .where('verify_status', '<>', 'ok')
      .orderBy('verified_at', 'desc')
      .limit(limit)
      .execute();
  }

  /** Live items whose last verification failed, counted by status. */
  async failingByStatus(db: Executor) {
    return db
      .selectFrom('evidence_items')
      .select(['verify_status', (eb) => eb.fn.countAll<string>().as('n')])
      .where('deleted_at', 'is', null)
      .where('verify_status', '<>', 'ok')
      .groupBy('verify_status')
      .execute();
  }
}
