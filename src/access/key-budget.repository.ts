import { sql } from 'kysely';
import type { Db, Executor } from '../db/database';

/**
 * Thin data access for per-key budgets (`key_budget_usage`, `key_budget_leases`): shared by every
 * instance, so a key's budget is one budget however many instances serve it.
 */
export class KeyBudgetRepository {
  /**
   * Adds `amount` to the key's use of `budget` in the current fixed window of `windowSeconds`,
   * unless that would pass `limit`; the first use in a window always passes (so one request
   * larger than the whole budget is not refused forever). The refused case is counted.
   */
  async charge(
    db: Executor,
    keyId: string,
    budget: string,
    windowSeconds: number,
    amount: number,
    limit: number,
  ): Promise<{ ok: boolean; used: number; windowEnd: Date }> {
    const charged = await sql<{ used: string; window_end: Date }>`
      insert into key_budget_usage (key_id, budget, window_start, used)
      values (${keyId}, ${budget},
        to_timestamp(floor(extract(epoch from now()) / ${windowSeconds}) * ${windowSeconds}),
        ${amount})
      on conflict (key_id, budget, window_start) do update
        set used = key_budget_usage.used + excluded.used
        where key_budget_usage.used + excluded.used <= ${limit}
      returning used, window_start + ${`${windowSeconds} seconds`}::interval as window_end`.execute(
      db,
    );
    const row = charged.rows[0];
    if (row) return { ok: true, used: Number(row.used), windowEnd: row.window_end };
    const refused = await sql<{ used: string; window_end: Date }>`
      update key_budget_usage set refused = refused + 1
      where key_id = ${keyId} and budget = ${budget}
        and window_start = to_timestamp(floor(extract(epoch from now()) / ${windowSeconds}) * ${windowSeconds})
      returning used, window_start + ${`${windowSeconds} seconds`}::interval as window_end`.execute(
      db,
    );
    const r = refused.rows[0];
    // (No row: the window turned between the two statements; the caller may simply retry.)
    return {
      ok: false,
      used: Number(r?.used ?? limit),
      windowEnd: r?.window_end ?? new Date(Date.now() + 1000),
    };
  }

  /**
   * A lease on one of `limit` slots of `budget` for the key, for `ttlSeconds` at most (the work
   * ends it sooner with `release`; an instance that died mid-work leaves it to expire). Undefined
   * when every slot is taken.
   */
  async acquire(
    db: Db,
    keyId: string,
    budget: string,
    limit: number,
    ttlSeconds: number,
  ): Promise<string | undefined> {
    return db.transaction().execute(async (tx) => {
      // One key's slots are counted and taken one caller at a time, on every instance.
      await sql`select pg_advisory_xact_lock(hashtextextended(${`key-budget:${budget}:${keyId}`}, 0))`.execute(
        tx,
      );
      await tx
        .deleteFrom('key_budget_leases')
        .where('key_id', '=', keyId)
        .where('budget', '=', budget)
        .where('expires_at', '<', sql<Date>`now()`)
        .execute();
      const { n } = await tx
        .selectFrom('key_budget_leases')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('key_id', '=', keyId)
        .where('budget', '=', budget)
        .executeTakeFirstOrThrow();
      if (Number(n) >= limit) return undefined;
      const lease = await tx
        .insertInto('key_budget_leases')
        .values({
          key_id: keyId,
          budget,
          expires_at: sql<Date>`now() + ${`${ttlSeconds} seconds`}::interval`,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      return lease.id;
    });
  }

  /** A refusal that spent nothing (no slot free): counted in the window, for admins to see. */
  async noteRefusal(
    db: Executor,
    keyId: string,
    budget: string,
    windowSeconds: number,
  ): Promise<void> {
    await sql`
      insert into key_budget_usage (key_id, budget, window_start, used, refused)
      values (${keyId}, ${budget},
        to_timestamp(floor(extract(epoch from now()) / ${windowSeconds}) * ${windowSeconds}), 0, 1)
      on conflict (key_id, budget, window_start) do update
        set refused = key_budget_usage.refused + 1`.execute(db);
  }

  /** Keeps a lease while its work runs on (a build longer than the lease). */
  async renew(db: Executor, id: string, ttlSeconds: number): Promise<void> {
    await db
      .updateTable('key_budget_leases')
      .set({ expires_at: sql<Date>`now() + ${`${ttlSeconds} seconds`}::interval` })
      .where('id', '=', id)
      .execute();
  }

  async release(db: Executor, id: string): Promise<void> {
    await db.deleteFrom('key_budget_leases').where('id', '=', id).execute();
  }

  /** Windows that ended more than a day ago: no budget reads them any more. */
  async forgetOldWindows(db: Executor): Promise<void> {
    await db
      .deleteFrom('key_budget_usage')
      .where('window_start', '<', sql<Date>`now() - interval '1 day'`)
      .execute();
  }

  /** Keys refused by a budget since `since`, with the budget and how often: for admins. */
  async refusalsSince(db: Executor, since: Date) {
    return (
      db
        .selectFrom('key_budget_usage as u')
        .leftJoin('api_keys as k', 'k.id', 'u.key_id')
        .select([
          'u.key_id',
          'k.name',
          'k.role',
          'u.budget',
          'u.window_start',
          'u.used',
          'u.refused',
        ])
        .where('u.refused', '>', 0)
        // Windows that ended after `since`: an hour's window that began before it is still recent.
        .where(
          sql<boolean>`u.window_start + case when u.budget = 'audit_pages_per_minute'
          then interval '1 minute' else interval '1 hour' end > ${since}`,
        )
        .orderBy('u.window_start', 'desc')
        .limit(1000)
        .execute()
    );
  }
}
