import type { Logger } from '../../logger';
import type { ResumableUploadStore } from './resumable-upload.store';

const SWEEP_MS = 5 * 60_000;

export interface UploadSweepDeps {
  uploads: ResumableUploadStore;
  logger: Logger;
}

/**
 * Every few minutes, on every instance with workers: expired resumable uploads and store leftovers
 * are removed, and uploads whose last byte arrived but whose archiving was cut off are finished.
 * Instances may overlap: each upload is handled under its lock.
 */
export class UploadSweep {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  private readonly uploads: ResumableUploadStore;
  private readonly logger: Logger;

  constructor(deps: UploadSweepDeps) {
    this.uploads = deps.uploads;
    this.logger = deps.logger;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.runOnce(), SWEEP_MS).unref();
    void this.runOnce();
  }

  async runOnce(): Promise<void> {
    this.running ??= this.uploads
      .deleteExpired()
      .then((removed) => {
        if (removed > 0) this.logger.info({ removed }, 'expired resumable uploads removed');
      })
      .catch((err: unknown) => this.logger.warn({ err }, 'resumable upload sweep failed'))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
