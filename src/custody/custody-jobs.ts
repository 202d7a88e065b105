import { randomUUID } from 'node:crypto';
import type { AppConfig } from '../base/config';
import type { Db } from '../db/database';
import { AppError } from '../base/errors';
import type { JobQueue, QueueSpec } from '../jobs/job-queue';
import type { Logger } from '../base/logger';
import type { AuditLog } from '../base/audit.service';
import type { CheckpointService } from './checkpoint.service';
import type { CustodyJob, CustodyRunRepository, RunOutcome } from './custody-run.repository';
import type { CheckpointTimestamps } from './checkpoint-timestamps';
import type { DeletionService } from './deletion.service';
import type { ScrubService } from './scrub.service';
import type { RequestActor } from '../base/actor';

export const CUSTODY_QUEUES: Record<CustodyJob, string> = {
  scrub: 'custody-scrub',
  retention: 'custody-retention',
  checkpoint: 'custody-checkpoint',
};
const TICK_MS = 30_000;

export interface CustodyJobsDeps {
  db: Db;
  runs: CustodyRunRepository;
  scrub: ScrubService;
  deletion: DeletionService;
  checkpoints: CheckpointService;
  /** Stamps the checkpoints still without an RFC 3161 token (after each checkpoint run). */
  timestamps?: CheckpointTimestamps;
  config: Pick<AppConfig, 'custody' | 'retention'>;
  audit: AuditLog;
  logger: Logger;
  queue?: JobQueue;
}

/**
 * The custody jobs (scrub, retention, checkpoint): each run is recorded in custody_runs for the
 * status page and metrics. On the job queue, every instance with workers ticks a timer that
 * enqueues each job at most once per its interval; the queue runs one at a time cluster-wide.
 */
export class CustodyJobs {
  private timer?: NodeJS.Timeout;
  private tailTimer?: NodeJS.Timeout;
  private tailChecking = false;
  private checkpointWorker?: string;
  /** The last checkpoint run here failed (a broken chain): back off to the interval. */
  private checkpointFailing = false;
  private queueStarted = false;

  private readonly db: Db;
  private readonly runs: CustodyRunRepository;
  private readonly scrub: ScrubService;
  private readonly deletion: DeletionService;
  private readonly checkpoints: CheckpointService;
  private readonly timestamps?: CheckpointTimestamps;
  private readonly config: Pick<AppConfig, 'custody' | 'retention'>;
  private readonly audit: AuditLog;
  private readonly logger: Logger;
  private readonly queue?: JobQueue;

  constructor(deps: CustodyJobsDeps) {
    this.db = deps.db;
    this.runs = deps.runs;
    this.scrub = deps.scrub;
    this.deletion = deps.deletion;
    this.checkpoints = deps.checkpoints;
    this.timestamps = deps.timestamps;
    this.config = deps.config;
    this.audit = deps.audit;
    this.logger = deps.logger;
    this.queue = deps.queue;
  }

  /** Runs a job here and now, recording the run; returns its stats. */
  async run(job: CustodyJob): Promise<{ outcome: RunOutcome; stats: Record<string, unknown> }> {
    const id = randomUUID();
    await this.runs.start(this.db, id, job, new Date());
    let outcome: RunOutcome = 'ok';
    let stats: Record<string, unknown>;
    try {
      if (job === 'scrub') {
        const report = await this.scrub.run({
          intervalMinutes: this.config.custody.scrubIntervalMinutes,
          fullPassDays: this.config.custody.scrubFullPassDays,
          stagingGraceHours: this.config.custody.stagingGraceHours,
        });
        stats = { ...report };
        if (!report.ok) outcome = 'problems';
      } else if (job === 'retention') {
        const r = await this.deletion.expire(this.config.retention);
        stats = { ...r };
        if (r.purgeFailures > 0) outcome = 'problems';
      } else {
        this.checkpointFailing = true;
        const written = await this.checkpoints.checkpoint();
        this.checkpointFailing = false;
        stats = { written: Boolean(written), seq: written?.checkpoint.seq ?? null };
        // The coming months' partitions of the trail; a failure is retried with the next run.
        await this.checkpoints.preparePartitions().then(
          (made) => made > 0 && this.logger.info({ made }, 'audit trail partitions added'),
          (err: unknown) => this.logger.warn({ err }, 'could not add audit trail partitions'),
        );
        if (this.timestamps?.configured) {
          // Stamping runs on its own (one run at a time, with a time budget): a TSA that is down or
          // slow never holds this job; it leaves checkpoints queued (retried with backoff).
          this.timestamps.soon();
          try {
            const { pending } = await this.timestamps.summary();
            stats.timestamps = { pending };
          } catch (err) {
            this.logger.error(
              { err },
              'could not count the audit checkpoints awaiting a timestamp',
            );
            stats.timestamps = { error: (err as Error).message };
          }
        }
      }
    } catch (err) {
      outcome = 'error';
      stats = { error: (err as Error).message };
      await this.runs.finish(this.db, id, { at: new Date(), outcome, stats });
      throw err;
    }
    await this.runs.finish(this.db, id, { at: new Date(), outcome, stats });
    return { outcome, stats };
  }

  private intervalSeconds(job: CustodyJob): number {
    const minutes = {
      scrub: this.config.custody.scrubIntervalMinutes,
      retention: this.config.retention.intervalMinutes,
      checkpoint: this.config.custody.checkpointIntervalMinutes,
    }[job];
    return minutes * 60;
  }

  /** Starts the queue; with `workers`, also this instance's workers and its interval timer. */
  async start(opts: { workers: boolean; tickMs?: number }): Promise<void> {
    if (!this.queue) return;
    const specs: QueueSpec[] = (Object.keys(CUSTODY_QUEUES) as CustodyJob[]).map((job) => ({
      name: CUSTODY_QUEUES[job],
      // A full scrub slice reads many gigabytes; a checkpoint takes a second.
      expireInSeconds: job === 'checkpoint' ? 600 : 6 * 3600,
    }));
    await this.queue.start(specs);
    this.queueStarted = true;
    if (!opts.workers) return;
    for (const job of Object.keys(CUSTODY_QUEUES) as CustodyJob[]) {
      const workerId = await this.queue.work(CUSTODY_QUEUES[job], async () => {
        await this.run(job);
      });
      if (job === 'checkpoint') this.checkpointWorker = workerId;
    }
    const tick = () => {
      for (const job of Object.keys(CUSTODY_QUEUES) as CustodyJob[]) {
        this.queue!.sendThrottled(CUSTODY_QUEUES[job], this.intervalSeconds(job)).catch(
          (err: unknown) => this.logger.warn({ err, job }, 'could not schedule a custody job'),
        );
      }
    };
    tick();
    this.timer = setInterval(tick, opts.tickMs ?? TICK_MS).unref();
    // The tail window: new events are checkpointed within CHECKPOINT_MAX_LAG_SECONDS. Polled at a
    // sixth of the window, a checkpoint is queued (at most one per third of it) only when events
    // were appended after the newest checkpoint: an event waits at most a poll, a throttle slot
    // and a poll (two thirds of the window) before its checkpoint is queued; the worker is woken.
    const lag = this.config.custody.checkpointMaxLagSeconds;
    const tailTick = () => {
      this.tailCheck(Math.max(1, Math.floor(lag / 3))).catch((err: unknown) =>
        this.logger.warn({ err }, 'could not schedule a tail checkpoint'),
      );
    };
    this.tailTimer = setInterval(tailTick, Math.min(TICK_MS, (lag * 1000) / 6)).unref();
  }

  private async tailCheck(throttleSeconds: number): Promise<void> {
    if (this.tailChecking) return;
    this.tailChecking = true;
    try {
      if (await this.checkpoints.pending()) {
        const jobId = await this.queue!.sendThrottled(
          CUSTODY_QUEUES.checkpoint,
          this.checkpointFailing ? this.intervalSeconds('checkpoint') : throttleSeconds,
        );
        // Queued here: this instance's worker takes it now rather than at its next poll.
        if (jobId && this.checkpointWorker) this.queue!.notify(this.checkpointWorker);
      }
    } finally {
      this.tailChecking = false;
    }
  }

  /** Asks the cluster to run a job soon (whichever instance has workers). */
  async enqueue(actor: RequestActor, job: string) {
    if (job !== 'scrub' && job !== 'retention') {
      throw new AppError('not_found', 'Jobs that can be started on demand: scrub, retention.');
    }
    if (!this.queue || !this.queueStarted) {
      throw new AppError('not_ready', 'The job queue is not running on this instance.');
    }
    const jobId = await this.queue.send(CUSTODY_QUEUES[job]);
    await this.audit.record({ action: 'custody.run', actor, details: { job, jobId } });
    return { job, jobId, status: 'queued' as const };
  }

  /** Stops this instance's timer; the shared queue is stopped by its owner (the context). */
  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.tailTimer);
    this.queueStarted = false;
  }
}
