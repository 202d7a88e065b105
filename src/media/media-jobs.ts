import type { Db, Tx } from '../db/database';
import type { ArchiveListener } from '../ingest/ingest.service';
import type { JobQueue, QueuedJob } from '../jobs/job-queue';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { DerivativeRepository } from './derivative.repository';
import type { MediaService } from './media.service';
import type { ScratchRepository } from './scratch.repository';

export const MEDIA_QUEUE = 'media-derive';
const SWEEP_MS = 30_000;
const SWEEP_BATCH = 500;

export interface MediaJobsConfig {
  /** Jobs this instance runs at once (one ffmpeg each). */
  concurrency: number;
  timeoutSeconds: number;
  retryDelaySeconds: number;
}

export interface MediaJobsDeps {
  db: Db;
  repo: DerivativeRepository;
  media: MediaService;
  scratch: ScratchRepository;
  cfg: MediaJobsConfig;
  logger: Logger;
  queue?: JobQueue;
}

/**
 * Media work on the PostgreSQL job queue: one job per item (the "stately" policy keeps at most
 * one queued and one running per item), retried with backoff. Every instance with workers also
 * sweeps for items whose job was never sent (a crash between commit and send) or was abandoned.
 */
export class MediaJobs implements ArchiveListener {
  private timer?: NodeJS.Timeout;
  /** This process's media workers, woken when this process queues work. */
  private workerIds: string[] = [];

  private readonly db: Db;
  private readonly repo: DerivativeRepository;
  private readonly media: MediaService;
  private readonly scratch: ScratchRepository;
  private readonly cfg: MediaJobsConfig;
  private readonly logger: Logger;
  private readonly queue?: JobQueue;

  constructor(deps: MediaJobsDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.media = deps.media;
    this.scratch = deps.scratch;
    this.cfg = deps.cfg;
    this.logger = deps.logger;
    this.queue = deps.queue;
  }

  async inTransaction(tx: Tx, item: { id: string; sha256: string }): Promise<void> {
    await this.repo.insertPending(tx, item.id, item.sha256);
  }

  /** New segments on a processed item: back to pending in the same transaction. */
  async reopen(tx: Tx, itemId: string): Promise<void> {
    await this.repo.reopen(tx, itemId, new Date());
  }

  afterCommit(itemId: string): void {
    this.schedule(itemId);
  }

  /** Asks for an item to be processed; never fails the caller (the sweep catches what is lost). */
  schedule(itemId: string): void {
    if (!this.queue?.isStarted) return;
    const queue = this.queue;
    queue
      .send(MEDIA_QUEUE, { itemId }, { singletonKey: itemId })
      .then((jobId) => {
        // Idle workers here fetch at once rather than at their next poll (one of them gets it).
        if (jobId) for (const id of this.workerIds) queue.notify(id);
      })
      .catch((err: unknown) => this.logger.warn({ err, itemId }, 'could not queue media work'));
  }

  async start(opts: { workers: boolean; sweepMs?: number }): Promise<void> {
    if (!this.queue) return;
    // A job runs several ffmpeg passes of up to the timeout each; beyond this pg-boss retries it.
    await this.queue.start([
      {
        name: MEDIA_QUEUE,
        policy: 'stately',
        expireInSeconds: Math.min(this.cfg.timeoutSeconds * 4 + 600, 23 * 3600),
        retryLimit: 3,
        retryDelaySeconds: this.cfg.retryDelaySeconds,
      },
    ]);
    if (!opts.workers) return;
    for (let i = 0; i < this.cfg.concurrency; i++) {
      this.workerIds.push(
        await this.queue.work<{ itemId: string }>(MEDIA_QUEUE, (job) => this.handle(job)),
      );
    }
    const sweep = () =>
      void this.sweep().catch((err: unknown) => this.logger.warn({ err }, 'media sweep failed'));
    sweep();
    this.timer = setInterval(sweep, opts.sweepMs ?? SWEEP_MS).unref();
  }

  private async handle(job: QueuedJob<{ itemId: string }>): Promise<void> {
    const itemId = String(job.data.itemId ?? '');
    if (!/^[0-9a-f-]{36}$/.test(itemId)) return;
    const started = performance.now();
    const status = await this.media.process(itemId, job);
    this.logger.info(
      { itemId, status, ms: Math.round(performance.now() - started), attempt: job.retryCount + 1 },
      'media processed',
    );
  }

  /**
   * Queues items that are waiting with no job (sent before, the queue drops the duplicate), and
   * removes scratch copies left by a crashed job.
   */
  async sweep(): Promise<number> {
    const now = Date.now();
    const scratchBefore = new Date(now - (this.cfg.timeoutSeconds * 4 + 3600) * 1000);
    const removed = await this.scratch.sweep(scratchBefore);
    if (removed > 0) this.logger.info({ removed }, 'removed media scratch left by crashed jobs');
    const ids = await this.repo.listUnfinished(this.db, {
      // Give a fresh upload's own send a moment to land first.
      touchedBefore: new Date(now - 60_000),
      staleBefore: new Date(now - (this.cfg.timeoutSeconds * 4 + 1200) * 1000),
      includeUnavailable: this.media.ffmpegAvailable,
      limit: SWEEP_BATCH,
    });
    for (const id of ids) this.schedule(id);
    return ids.length;
  }

  /** Where media processing stands, for /metrics: a backlog or failures show at a glance. */
  registerMetrics(metrics: Metrics): void {
    metrics.gauge(
      'evidence_media_items',
      'Live items by media processing status (pending, processing, done, partial, failed, unavailable)',
      ['status'],
      async (set) => {
        for (const r of await this.repo.countByStatus(this.db)) set(r.n, { status: r.status });
      },
    );
    metrics.gauge(
      'media_tools_available',
      'Whether this instance found ffmpeg and ffprobe (1) or not (0)',
      [],
      async (set) => set(this.media.ffmpegAvailable ? 1 : 0),
    );
  }

  stop(): void {
    clearInterval(this.timer);
    this.media.stop();
  }
}
