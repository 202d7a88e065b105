import pg from 'pg';
import PgBoss from 'pg-boss';
import { MAX_JOB_INTERVAL_MINUTES } from '../base/config';
import { DEAD_SERVER_OPTIONS, guardCheckedOutClients, type Db } from '../db/database';
import { outageError } from '../base/errors';
import type { Logger } from '../base/logger';
import type { JobRunRepository } from './job-run.repository';

export interface QueueSpec {
  name: string;
  /** A run that takes longer than this is failed and retried. */
  expireInSeconds: number;
  /**
   * 'singleton': one job at a time across every instance (custody runs). 'stately': one queued and
   * one running job per singleton key (per item), any number of keys at once (media work).
   */
  policy?: 'singleton' | 'stately';
  retryLimit?: number;
  /** First retry after this; doubled each time (backoff). */
  retryDelaySeconds?: number;
}

export interface QueuedJob<T> {
  id: string;
  data: T;
  /** Retries so far, and how many are allowed: the last attempt records a final failure. */
  retryCount: number;
  retryLimit: number;
}

/**
 * The PostgreSQL-backed job queue (pg-boss 10), shared by custody and media jobs, so several
 * service instances (and `npm run worker` processes) share background work, retried with backoff.
 * Its schema (and each queue, a table of its own) is made and upgraded by the owner's login at
 * the migrate step (`JobQueue.prepare`); with two logins the service's queue connects with the
 * app's login, which may read and write the queue's rows and nothing more (`migrate: false`).
 */
export const JOB_QUEUE_SCHEMA = 'pgboss';

/** The first key of the lock that serialises `prepare` across instances ("job"). */
const PREPARE_LOCK_SPACE = 0x6a6f62;

/** How long a worker's fetch may wait for the database (see the executeSql above). */
const FETCH_TIMEOUT_MS = 3_600_000;

/** pg-boss's fetch: the statement that marks queued jobs active for this worker. */
function isFetch(text: string): boolean {
  return /FOR UPDATE SKIP LOCKED/.test(text) && /SET\s+state = 'active'/.test(text);
}

export interface JobQueueDeps {
  connectionString: string;
  logger: Logger;
  queryTimeoutMs?: number;
  /**
   * Create or upgrade pg-boss's schema at start (default true: the owner's login). False with the
   * app's login: a schema that is missing or behind is an error naming `npm run migrate`.
   */
  migrate?: boolean;
  /** pg-boss's maintenance (expiry, archive): default true; off for `prepare`'s short start. */
  supervise?: boolean;
  /**
   * Which instance runs which job (job_runs), so that the jobs of an instance that died are
   * handed back at once, every `everySeconds`, by whichever instance sees it gone first.
   */
  runs?: { db: Db; repo: JobRunRepository; instanceId: () => string; everySeconds: number };
}

export class JobQueue {
  private readonly boss: PgBoss;
  private starting?: Promise<unknown>;
  private started = false;
  private stopping = false;

  private readonly connectionString: string;
  private readonly logger: Logger;
  private readonly queryTimeoutMs?: number;
  private readonly migrate: boolean;
  private readonly runs?: JobQueueDeps['runs'];
  private reclaimTimer?: NodeJS.Timeout;

  constructor(deps: JobQueueDeps) {
    this.runs = deps.runs;
    this.connectionString = deps.connectionString;
    this.logger = deps.logger;
    this.queryTimeoutMs = deps.queryTimeoutMs;
    this.migrate = deps.migrate ?? true;

    this.boss = new PgBoss({
      schema: JOB_QUEUE_SCHEMA,
      migrate: this.migrate,
      supervise: deps.supervise ?? true,
      // Our own pool (see `pool`), so that a database shutdown cannot end the process through
      // one of pg-boss's connections.
      db: {
        executeSql: (text, values) =>
          this.pool.query(
            // A fetch is never given up on client-side: the server would still run it once it
            // answers again (a frozen server, a long lock wait), marking jobs active that no
            // worker took; such a job blocks its queue until it expires (six hours for a scrub).
            // (pg reads query_timeout from a query's config too; its types do not say so.)
            (isFetch(text)
              ? { text, values, query_timeout: FETCH_TIMEOUT_MS }
              : { text, values }) as pg.QueryConfig,
          ),
      },
      // Cron scheduling is not used: intervals are throttled sends (see `sendThrottled`).
      schedule: false,
      // pg-boss refuses a throttle slot longer than its archive interval (12 h by default): a
      // job interval over 720 minutes was never scheduled at all, only warned about.
      archiveCompletedAfterSeconds: MAX_JOB_INTERVAL_MINUTES * 60 + 3600,
    });
    this.boss.on('error', (err) => this.logger.warn({ err }, 'job queue error'));
  }

  private ownPool?: pg.Pool;

  /** pg-boss's connections: created on first use, ended by `stop`. */
  private get pool(): pg.Pool {
    if (!this.ownPool) {
      const pool = new pg.Pool({
        connectionString: this.connectionString,
        max: 4,
        application_name: 'evidence-archive-jobs',
        connectionTimeoutMillis: 10_000,
        ...DEAD_SERVER_OPTIONS,
        ...(this.queryTimeoutMs ? { query_timeout: this.queryTimeoutMs } : {}),
      });
      pool.on('error', (err) => this.logger.warn({ err }, 'job queue connection lost'));
      guardCheckedOutClients(pool);
      this.ownPool = pool;
    }
    return this.ownPool;
  }

  get isStarted(): boolean {
    return this.started;
  }

  /**
   * The owner's step at migration: pg-boss's schema created or upgraded, and these queues (each
   * a partition table pg-boss creates) made, so that a login that may not create tables can
   * use them. Their settings are the service's to set at its start (`start`): existing queues
   * are left as they are (a migration must not reset a running service's expiry and retries).
   */
  static async prepare(
    deps: { connectionString: string; logger: Logger },
    queues: Pick<QueueSpec, 'name' | 'policy'>[],
  ): Promise<void> {
    // Instances starting at once on a fresh database would each create the queues (pg-boss
    // makes a partition table per queue): their CREATEs deadlock, and all but one instance failed
    // to start ("deadlock detected"). One at a time, under a session lock; the others then find
    // the queues made.
    const lock = new pg.Client({
      connectionString: deps.connectionString,
      application_name: 'evidence-archive-jobs',
    });
    await lock.connect();
    const queue = new JobQueue({ ...deps, migrate: true, supervise: false });
    try {
      await lock.query('select pg_advisory_lock($1::int, 1)', [PREPARE_LOCK_SPACE]);
      await queue.start(
        queues.map((q) => ({ ...q, expireInSeconds: 3600 })),
        { createOnly: true },
      );
    } finally {
      await queue.stop();
      // Ending the session lets the lock go.
      await lock.end().catch(() => undefined);
    }
  }

  /** Starts the queue (once, however many callers) and creates these queues if missing. */
  async start(queues: QueueSpec[], opts: { createOnly?: boolean } = {}): Promise<void> {
    this.starting ??= this.boss.start().catch((err: unknown) => {
      this.starting = undefined;
      if (!this.migrate && err instanceof Error && /pg-boss/.test(err.message)) {
        throw new Error(
          `${err.message}: the job queue's schema is made and upgraded by the owner's login (npm run migrate, or a start with DATABASE_URL or MIGRATION_DATABASE_URL)`,
        );
      }
      throw err;
    });
    await this.starting;
    this.started = true;
    if (this.runs && !this.reclaimTimer && !opts.createOnly) {
      const reclaim = () =>
        void this.reclaimGone().catch((err: unknown) =>
          this.logger.warn({ err }, 'could not hand back the jobs of gone instances'),
        );
      this.reclaimTimer = setInterval(reclaim, this.runs.everySeconds * 1000).unref();
    }
    for (const q of queues) {
      const options = {
        // updateQueue writes a default policy when given none: always pass ours.
        policy: q.policy ?? 'singleton',
        retryLimit: q.retryLimit ?? 3,
        retryDelay: q.retryDelaySeconds ?? 60,
        retryBackoff: true,
        expireInSeconds: q.expireInSeconds,
      };
      // Existing queues take the current configuration.
      if (await this.boss.getQueue(q.name)) {
        if (!opts.createOnly) await this.boss.updateQueue(q.name, { name: q.name, ...options });
        continue;
      }
      try {
        await this.boss.createQueue(q.name, { name: q.name, ...options });
      } catch (err) {
        // Another instance created it between our check and our insert.
        if (await this.boss.getQueue(q.name)) continue;
        if ((err as { code?: string }).code === '42501') {
          throw new Error(
            `job queue ${q.name} does not exist and this login may not create it (permission denied): run npm run migrate with the owner's login`,
          );
        }
        throw err;
      }
    }
  }

  /** Enqueues a run now; returns its job id, or null when the key already has one queued. */
  async send(
    name: string,
    data: object = {},
    opts: { singletonKey?: string } = {},
  ): Promise<string | null> {
    return this.boss.send(name, data, opts.singletonKey ? { singletonKey: opts.singletonKey } : {});
  }

  /**
   * Enqueues at most one run per time slot of `seconds`, however many instances ask: how every
   * instance can tick its own timer while the work happens once per interval.
   */
  async sendThrottled(name: string, seconds: number): Promise<string | null> {
    return this.boss.sendThrottled(name, {}, {}, seconds);
  }

  /** Registers one worker: it takes one job at a time. Call it N times for N at once. */
  async work<T extends object>(
    name: string,
    handler: (job: QueuedJob<T>) => Promise<void>,
  ): Promise<string> {
    return this.boss.work<T>(
      name,
      { pollingIntervalSeconds: 2, batchSize: 1, includeMetadata: true },
      async ([job]) => {
        if (!job) return;
        await this.recordRun(name, job.id);
        let outcome: { failed: false } | { failed: true; err: unknown };
        try {
          await handler({
            id: job.id,
            data: job.data,
            retryCount: job.retryCount,
            retryLimit: job.retryLimit,
          });
          outcome = { failed: false };
        } catch (err) {
          outcome = { failed: true, err };
        }
        // @NOTE pg-boss 10 records a job's outcome with complete()/fail() calls it does not await
        // (timgit/pg-boss#577): with the database away they reject unhandled, and the job stays
        // "active" until it expires (hours for media). We record the outcome ourselves (a failure
        // as a failure, with its retry), retried until the database answers, then return: the
        // complete() pg-boss calls after us only touches a job that is still active, so it
        // changes nothing.
        const recorded = await this.settle(name, job.id, job.expireInSeconds, outcome);
        await this.forgetRun(job.id);
        // Not recorded (not an outage): pg-boss records it as before.
        if (!recorded && outcome.failed) throw outcome.err;
      },
    );
  }

  /**
   * Says this instance runs the job. Best effort: a run not recorded (the database away) is left
   * to pg-boss's expiry should this instance die.
   */
  private async recordRun(queue: string, jobId: string): Promise<void> {
    if (!this.runs) return;
    const { db, repo, instanceId } = this.runs;
    await repo
      .insert(db, { jobId, queue, instanceId: instanceId() })
      .catch((err: unknown) =>
        this.logger.warn({ err, job: queue, id: jobId }, 'job run not recorded'),
      );
  }

  private async forgetRun(jobId: string): Promise<void> {
    if (!this.runs) return;
    // Left behind, it is removed by reclaimGone once this instance is gone (failing a job
    // that completed changes nothing).
    await this.runs.repo.delete(this.runs.db, jobId).catch(() => undefined);
  }

  /**
   * Hands back to the queue the jobs that instances now gone were running (killed, or their
   * session lost: see InstanceRegistry): each is failed with its retry, as pg-boss's expiry would
   * do hours later, and another worker takes it. Work is therefore at least once: a job whose
   * instance only lost its database session may run twice, which every job here tolerates.
   */
  async reclaimGone(): Promise<number> {
    if (!this.runs || !this.started) return 0;
    const { db, repo } = this.runs;
    let handedBack = 0;
    for (const run of await repo.listOfGoneInstances(db, 100)) {
      // Only the instance that removes the run fails the job: another may have seen it too.
      if (!(await repo.take(db, run.job_id, run.instance_id))) continue;
      await this.boss.fail(run.queue, run.job_id, {
        message: `instance ${run.instance_id} was gone while running it`,
      });
      handedBack++;
    }
    if (handedBack > 0)
      this.logger.info({ jobs: handedBack }, 'handed back the jobs of gone instances');
    return handedBack;
  }

  /** Records a job's outcome, retrying through a database outage for up to its expiry. */
  private async settle(
    name: string,
    id: string,
    expireInSeconds: number,
    outcome: { failed: false } | { failed: true; err: unknown },
  ): Promise<boolean> {
    const until = Date.now() + Math.max(60, expireInSeconds) * 1000;
    for (let attempt = 0; ; attempt++) {
      try {
        if (outcome.failed) {
          const err = outcome.err;
          const data =
            err instanceof Error ? { message: err.message, stack: err.stack } : { value: err };
          await this.boss.fail(name, id, data);
        } else await this.boss.complete(name, id);
        if (attempt > 0) this.logger.info({ job: name, id }, 'job outcome recorded after retries');
        return true;
      } catch (err) {
        // Anything but an outage (or a queue being stopped) is pg-boss's to report.
        if (!outageError(err) || this.stopping || Date.now() > until) {
          this.logger.warn({ err, job: name, id }, 'could not record a job outcome');
          return false;
        }
        if (attempt === 0) {
          this.logger.warn({ err, job: name, id }, 'database unavailable; job outcome pending');
        }
        await new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** attempt, 10_000)));
      }
    }
  }

  /** Wakes this process's idle worker now instead of at its next poll. */
  notify(workerId: string): void {
    this.boss.notifyWorker(workerId);
  }

  async stop(): Promise<void> {
    clearInterval(this.reclaimTimer);
    this.reclaimTimer = undefined;
    if (!this.starting) return;
    this.started = false;
    this.stopping = true;
    this.starting = undefined;
    try {
      await this.boss.stop({ graceful: true, timeout: 10_000, wait: true });
    } finally {
      this.stopping = false;
      const pool = this.ownPool;
      this.ownPool = undefined;
      await pool?.end().catch(() => undefined);
    }
  }
}
