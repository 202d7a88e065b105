import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** Counts of evidence by custody state, for GET /v1/custody/status and the metrics. */
export class CustodyStatusRepository {
  /** One row of counts (bigints as strings): live, deleted, unpurged, failing, holds, damaged. */
  async counts(db: Executor) {
    const { rows } = await sql<{
      archived: string;
      deleted: string;
      unpurged: string;
      failing: string;
      never_verified: string;
      holds: string;
      damaged: string;
    }>`select
        count(*) filter (where deleted_at is null) as archived,
        count(*) filter (where deleted_at is not null) as deleted,
        count(*) filter (where deleted_at is not null and blob_purged_at is null) as unpurged,
        count(*) filter (where deleted_at is null and verify_status <> 'ok') as failing,
        count(*) filter (where deleted_at is null and verified_at is null) as never_verified,
        (select count(*) from legal_holds where released_at is null) as holds,
        count(*) filter (where deleted_at is null and damaged_at is not null) as damaged
      from evidence_items`.execute(db);
    return rows[0]!;
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
