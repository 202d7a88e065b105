import type { Selectable } from 'kysely';
import type { CustodyRunsTable, Executor } from '../db/database';

export type CustodyRunRow = Selectable<CustodyRunsTable>;
export type CustodyJob = 'scrub' | 'retention' | 'checkpoint';
export type RunOutcome = 'ok' | 'problems' | 'error';

/** Thin data access for background job runs: what the custody status page and metrics show. */
export class CustodyRunRepository {
  async start(db: Executor, id: string, job: CustodyJob, at: Date): Promise<void> {
    await db.insertInto('custody_runs').values({ id, job, started_at: at }).execute();
  }

  async finish(
    db: Executor,
    id: string,
    r: { at: Date; outcome: RunOutcome; stats: Record<string, unknown> },
  ): Promise<void> {
    await db
      .updateTable('custody_runs')
      .set({ finished_at: r.at, outcome: r.outcome, stats: JSON.stringify(r.stats) })
      .where('id', '=', id)
      .execute();
  }

  /** The newest finished run of a job. */
  async latest(db: Executor, job: CustodyJob): Promise<CustodyRunRow | undefined> {
    return db
      .selectFrom('custody_runs')
      .selectAll()
      .where('job', '=', job)
      .where('finished_at', 'is not', null)
      .orderBy('started_at', 'desc')
      .limit(1)
      .executeTakeFirst();
  }
}
