import type { Db } from '../db/database';
import type { InstanceRegistry } from '../jobs/instance-registry';
import type { Logger } from '../logger';
import type { BlobStore } from '../storage/blob-store';
import type { BlobClaims } from './blob-claims';

export interface LeftoverReport {
  stagingRemoved: number;
  claimsDropped: number;
  instancesForgotten: number;
}

export interface LeftoverSweepDeps {
  db: Db;
  store: BlobStore;
  instance: InstanceRegistry;
  claims: BlobClaims;
  logger: Logger;
  opts: { intervalSeconds: number; stagingGraceHours: number };
}

/**
 * What uploads cut off by a crash or a failure left behind, removed at start-up and every
 * LEFTOVER_SWEEP_SECONDS on every instance (workers or not; instances may overlap):
 * - staging objects of instances that are gone (any age: their requests died with them), and
 *   any staging object older than STAGING_GRACE_HOURS (keys written without an instance id);
 * - claims on blobs no live request holds, with the blobs no row needs (a crash between
 *   promotion and commit);
 * - the registrations of instances that are gone.
 * Resumable (tus) uploads are not staging: their own sweep (UploadSweep) handles them.
 */
export class LeftoverSweep {
  private timer?: NodeJS.Timeout;
  private running?: Promise<LeftoverReport | undefined>;

  private readonly db: Db;
  private readonly store: BlobStore;
  private readonly instance: InstanceRegistry;
  private readonly claims: BlobClaims;
  private readonly logger: Logger;
  private readonly opts: { intervalSeconds: number; stagingGraceHours: number };

  constructor(deps: LeftoverSweepDeps) {
    this.db = deps.db;
    this.store = deps.store;
    this.instance = deps.instance;
    this.claims = deps.claims;
    this.logger = deps.logger;
    this.opts = deps.opts;
  }

  /** Sweeps now, then every interval, until stop(). */
  start(): Promise<LeftoverReport | undefined> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.runOnce(), this.opts.intervalSeconds * 1000).unref();
    }
    return this.runOnce();
  }

  /** One sweep (joined when one is running); failures are logged and retried next time. */
  runOnce(): Promise<LeftoverReport | undefined> {
    this.running ??= this.sweep()
      .then(
        (report) => {
          if (report.stagingRemoved + report.claimsDropped > 0) {
            this.logger.info(report, 'removed what interrupted uploads left behind');
          }
          return report;
        },
        (err: unknown) => {
          this.logger.warn({ err }, 'leftover sweep failed');
          return undefined;
        },
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async sweep(): Promise<LeftoverReport> {
    // Asked per owner once its key was listed: an instance registers before it writes, and a gone
    // id never returns (a lost session registers under a new id), so a key's owner found not live
    // now is gone for good.
    const verdicts = new Map<string, Promise<boolean>>();
    const isGone = (owner: string) => {
      let v = verdicts.get(owner);
      if (!v) {
        v = this.instance.isLive(this.db, owner).then((live) => !live);
        verdicts.set(owner, v);
      }
      return v;
    };
    const stagingRemoved = await this.store.sweepStaging(
      new Date(Date.now() - this.opts.stagingGraceHours * 3600_000),
      isGone,
    );
    const claimsDropped = await this.claims.reconcile();
    const instancesForgotten = await this.instance.forgetGone(this.db);
    return { stagingRemoved, claimsDropped, instancesForgotten };
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
