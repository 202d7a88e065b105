import { sql } from 'kysely';
import type { Executor } from '../db/database';
import { held } from './service-instance.repository';

/** The jobs each instance is running now (job_runs): one query per method. */
export class JobRunRepository {
  async insert(db: Executor, run: { jobId: string; queue: string; instanceId: string }) {
    await db
      .insertInto('job_runs')
      .values({ job_id: run.jobId, queue: run.queue, instance_id: run.instanceId })
      .onConflict((oc) =>
        oc.column('job_id').doUpdateSet({ queue: run.queue, instance_id: run.instanceId }),
      )
      .execute();
  }

  async delete(db: Executor, jobId: string): Promise<void> {
    await db.deleteFrom('job_runs').where('job_id', '=', jobId).execute();
  }

  /**
   * Removes the run if it is still this instance's: true for exactly one of several callers, and
   * false once a live instance has taken the job again (its own run replaced this one).
   */
  async take(db: Executor, jobId: string, instanceId: string): Promise<boolean> {
    const res = await db
      .deleteFrom('job_runs')
      .where('job_id', '=', jobId)
      .where('instance_id', '=', instanceId)
      .executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /** Runs whose instance is gone: no session holds its lock (its row may be gone too). */
  async listOfGoneInstances(db: Executor, limit: number) {
    return db
      .selectFrom('job_runs as r')
      .select(['r.job_id', 'r.queue', 'r.instance_id'])
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('service_instances as i')
              .select(sql.lit(1).as('one'))
              .whereRef('i.id', '=', 'r.instance_id')
              .where(held(sql.ref('i.lock_key'))),
          ),
        ),
      )
      .orderBy('r.started_at')
      .limit(limit)
      .execute();
  }
}
