import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** Evidence items counted by the WORM state read back from the store. */
export class WormRepository {
  /** Live items by WORM status, judged against now ('expired': the retain-until has passed). */
  async countByStatus(db: Executor): Promise<{ status: string | null; n: string }[]> {
    const { rows } = await sql<{ status: string | null; n: string }>`
          select case when worm_status = 'in_force' and worm_retain_until <= now()
                      then 'expired' else worm_status end as status, count(*) as n
          from evidence_items where deleted_at is null group by 1`.execute(db);
    return rows;
  }

  /** Live items whose blob was found without WORM protection. */
  async countNotInForce(db: Executor): Promise<number> {
    const row = await db
      .selectFrom('evidence_items')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('worm_status', '=', 'not_in_force')
      .where('deleted_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
