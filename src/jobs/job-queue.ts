import PgBoss from 'pg-boss';
import type { Logger } from '../logger';

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
 * pg-boss owns its schema, so it connects with the owner's URL, never the request role.
 */
export class JobQueue {
  private readonly boss: PgBoss;
  private starting?: Promise<unknown>;
  private started = false;

  constructor(
    connectionString: string,
    private readonly logger: Logger,
  ) {
    this.boss = new PgBoss({
      connectionString,
      schema: 'pgboss',
      max: 4,
      application_name: 'evidence-archive-jobs',
      // Cron scheduling is not used: intervals are throttled sends (see `sendThrottled`).
      schedule: false,
    });
    this.boss.on('error', (err) => this.logger.warn({ err }, 'job queue error'));
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Starts the queue (once, however many callers) and creates these queues if missing. */
  async start(queues: QueueSpec[]): Promise<void> {
    this.starting ??= this.boss.start();
    await this.starting;
    this.started = true;
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
        await this.boss.updateQueue(q.name, { name: q.name, ...options });
        continue;
      }
      try {
        await this.boss.createQueue(q.name, { name: q.name, ...options });
      } catch (err) {
        // Another instance created it between our check and our insert.
        if (!(await this.boss.getQueue(q.name))) throw err;
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
        await handler({
          id: job.id,
          data: job.data,
          retryCount: job.retryCount,
          retryLimit: job.retryLimit,
        });
      },
    );
  }

  /** Wakes this process's idle worker now instead of at its next poll. */
  notify(workerId: string): void {
    this.boss.notifyWorker(workerId);
  }

  async stop(): Promise<void> {
    if (!this.starting) return;
    this.started = false;
    this.starting = undefined;
    await this.boss.stop({ graceful: true, timeout: 10_000, wait: true });
  }
}
