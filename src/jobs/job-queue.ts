import PgBoss from 'pg-boss';
import type { Logger } from '../logger';

export interface QueueSpec {
  name: string;
  /** A run that takes longer than this is failed and retried. */
  expireInSeconds: number;
}

/**
 * The PostgreSQL-backed job queue (pg-boss 10), so several service instances share background
 * work: each queue runs one job at a time across all of them ("singleton" policy), retried with
 * backoff. pg-boss owns its schema, so it connects with the owner's URL, never the request role.
 */
export class JobQueue {
  private readonly boss: PgBoss;
  private started = false;

  constructor(
    connectionString: string,
    private readonly logger: Logger,
  ) {
    this.boss = new PgBoss({
      connectionString,
      schema: 'pgboss',
      max: 2,
      application_name: 'evidence-archive-jobs',
      // Cron scheduling is not used: intervals are throttled sends (see `sendThrottled`).
      schedule: false,
    });
    this.boss.on('error', (err) => this.logger.warn({ err }, 'job queue error'));
  }

  async start(queues: QueueSpec[]): Promise<void> {
    await this.boss.start();
    this.started = true;
    for (const q of queues) {
      if (await this.boss.getQueue(q.name)) continue;
      try {
        await this.boss.createQueue(q.name, {
          name: q.name,
          policy: 'singleton',
          retryLimit: 3,
          retryDelay: 60,
          retryBackoff: true,
          expireInSeconds: q.expireInSeconds,
        });
      } catch (err) {
        // Another instance created it between our check and our insert.
        if (!(await this.boss.getQueue(q.name))) throw err;
      }
    }
  }

  /** Enqueues a run now; returns its job id. */
  async send(name: string): Promise<string | null> {
    return this.boss.send(name, {});
  }

  /**
   * Enqueues at most one run per time slot of `seconds`, however many instances ask: how every
   * instance can tick its own timer while the work happens once per interval.
   */
  async sendThrottled(name: string, seconds: number): Promise<string | null> {
    return this.boss.sendThrottled(name, {}, {}, seconds);
  }

  async work(name: string, handler: () => Promise<void>): Promise<void> {
    await this.boss.work(name, { pollingIntervalSeconds: 2 }, async () => handler());
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.boss.stop({ graceful: true, timeout: 10_000, wait: true });
  }
}
