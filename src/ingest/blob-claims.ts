import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../db/database';
import { AppError } from '../errors';
import type { InstanceRegistry } from '../jobs/instance-registry';
import type { Logger } from '../logger';
import { blobKeyFor, type BlobStore } from '../storage/blob-store';
import type { BlobClaimRepository, BlobClaimRow } from './blob-claim.repository';

const RECONCILE_BATCH = 100;

export interface BlobClaim {
  id: string;
  sha256: string;
}

/**
 * No evidence blob without a row. A blob is promoted before its item row commits (so an
 * acknowledged item always has its bytes); in between, a claim in the database says a live
 * request is about to commit it. The item's transaction consumes the claim. A request that fails
 * or is refused after promotion releases its claim, and the blob goes unless something else needs
 * it; claims of instances that died (kill -9 between promotion and commit) are reconciled by the
 * leftover sweep of any instance, at start-up and every minute.
 *
 * Claiming and deleting a digest's blob are serialized by a per-digest transaction lock, so a
 * request promoting the same bytes (dedupe) never loses its blob to a cleanup: either its claim
 * is seen and the blob kept, or the blob is gone before it promotes and it writes it again.
 *
 * Under S3 Object Lock a blob's retention starts at promotion and a delete only hides it (a delete
 * marker over the locked version, which stays until its retention ends): such orphans are logged
 * as retained. Refusals that can be decided before promotion (a call that already has other bytes,
 * a reused Idempotency-Key, deleted bytes) are decided there, so this happens only on races and
 * crashes.
 */
export class BlobClaims {
  /** Claims of this instance's requests that are still promoting or committing. */
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly repo: BlobClaimRepository,
    private readonly store: BlobStore,
    private readonly instance: InstanceRegistry,
    private readonly logger: Logger,
    private readonly opts: { objectLock?: boolean } = {},
  ) {}

  /** Claims a digest's blob for a request about to promote it; committed before it returns. */
  async claim(sha256: string): Promise<BlobClaim> {
    const claim = { id: randomUUID(), sha256 };
    // Known as in flight before it exists, so this instance's reconciler never takes it.
    this.inFlight.add(claim.id);
    try {
      await this.db.transaction().execute(async (tx) => {
        await this.repo.lockDigest(tx, sha256);
        await this.repo.insert(tx, { ...claim, instance_id: this.instance.id });
      });
    } catch (err) {
      this.inFlight.delete(claim.id);
      throw err;
    }
    return claim;
  }

  /**
   * In the item's transaction: turns the claim into the row. A claim that is gone was reconciled
   * (this instance looked dead, its session lost): its blob may be deleted, so nothing commits.
   */
  async consume(tx: Tx, claim: BlobClaim): Promise<void> {
    if (!(await this.repo.delete(tx, claim.id))) {
      throw new AppError(
        'not_ready',
        'This instance lost its registration in the database while archiving the upload; nothing was stored. Please retry.',
      );
    }
  }

  /**
   * After the request: a claim its transaction did not consume is dropped, with the blob if
   * nothing else needs it. A failure here leaves the claim to this instance's reconciler.
   */
  async release(claim: BlobClaim, committed: boolean): Promise<void> {
    try {
      if (!committed) await this.drop(claim);
    } finally {
      this.inFlight.delete(claim.id);
    }
  }

  /**
   * Drops claims no live request holds (this instance's abandoned ones, and those of instances
   * that are gone), deleting their blobs where nothing else needs them. Returns how many.
   */
  async reconcile(): Promise<number> {
    const verdicts = new Map<string, boolean>();
    const gone = async (row: BlobClaimRow) => {
      if (row.instance_id === this.instance.id) return true; // not in flight: abandoned
      let v = verdicts.get(row.instance_id);
      if (v === undefined) {
        v = !(await this.instance.isLive(this.db, row.instance_id));
        verdicts.set(row.instance_id, v);
      }
      return v;
    };
    let dropped = 0;
    // Batch after batch while batches yield something: claims of live requests stay in the way.
    for (let progress = true; progress;) {
      const rows = await this.repo.notInFlight(this.db, [...this.inFlight], RECONCILE_BATCH);
      progress = false;
      for (const row of rows) {
        if (!(await gone(row))) continue;
        await this.drop(row);
        dropped++;
        progress = rows.length === RECONCILE_BATCH;
      }
    }
    return dropped;
  }

  /** Deletes a digest's evidence blob if nothing needs it (a resumable upload given up on). */
  async dropIfUnused(sha256: string): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await this.repo.lockDigest(tx, sha256);
      if (await this.repo.inUse(tx, sha256)) return;
      await this.deleteOrphan(blobKeyFor(sha256));
    });
  }

  private async deleteOrphan(key: string): Promise<void> {
    if ((await this.store.stat(key)) === undefined) return;
    await this.store.delete(key);
    this.logger.info(
      { blobKey: key, retained: this.opts.objectLock ?? false },
      this.opts.objectLock
        ? 'orphan blob hidden by a delete marker; its locked version stays until retention ends'
        : 'orphan blob removed',
    );
  }

  private async drop(claim: BlobClaim): Promise<void> {
    const key = blobKeyFor(claim.sha256);
    await this.db.transaction().execute(async (tx) => {
      await this.repo.lockDigest(tx, claim.sha256);
      if (!(await this.repo.delete(tx, claim.id))) return; // consumed, or dropped elsewhere
      if (await this.repo.inUse(tx, claim.sha256)) return;
      // Under the digest's lock: no new claim can see this blob and skip writing it.
      await this.deleteOrphan(key);
    });
  }
}
