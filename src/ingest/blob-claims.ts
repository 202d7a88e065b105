import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../db/database';
import { AppError } from '../errors';
import type { InstanceRegistry } from '../jobs/instance-registry';
import type { Logger } from '../logger';
import { blobKeyFor, type BlobStore } from '../storage/blob-store';
import type { BlobClaimRepository, BlobClaimRow } from './blob-claim.repository';

const RECONCILE_BATCH = 100;
/** How long a claim waits for a drop of the same digest to finish before answering 503. */
const DROP_WAIT_MS = 10_000;

export interface BlobClaim {
  id: string;
  sha256: string;
}

export interface BlobClaimsDeps {
  db: Db;
  repo: BlobClaimRepository;
  store: BlobStore;
  instance: InstanceRegistry;
  logger: Logger;
  opts?: { objectLock?: boolean; dropWaitMs?: number };
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
 * A drop is durable before any byte goes: one short transaction (digest lock held) marks the
 * claim `dropping` and commits; only then is the blob deleted (no transaction or lock held across
 * the store's calls), and last the claim row. A dropping claim cannot be consumed (its request
 * answers 503, never a 2xx without bytes), and no new claim on the digest is placed while one
 * exists (a dedupe could otherwise find the blob present just before the delete). A drop cut off
 * after its commit (a crash, a store timeout) is finished by a reconciler: the dropper's own, or
 * any instance's once the dropper is gone.
 *
 * Under S3 Object Lock a blob's retention starts at promotion and a delete only hides it (a delete
 * marker over the locked version, which stays until its retention ends): such orphans are logged
 * as retained. Refusals that can be decided before promotion (a call that already has other bytes,
 * a reused Idempotency-Key, deleted bytes) are decided there, so this happens only on races and
 * crashes.
 */
export class BlobClaims {
  /** Claims (and drops) of this instance that are still under way: no reconciler takes them. */
  private readonly inFlight = new Set<string>();

  private readonly db: Db;
  private readonly repo: BlobClaimRepository;
  private readonly store: BlobStore;
  private readonly instance: InstanceRegistry;
  private readonly logger: Logger;
  private readonly opts: { objectLock?: boolean; dropWaitMs?: number };

  constructor(deps: BlobClaimsDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.store = deps.store;
    this.instance = deps.instance;
    this.logger = deps.logger;
    this.opts = deps.opts ?? {};
  }

  /**
   * Claims a digest's blob for a request about to promote it; committed before it returns. Waits
   * (briefly) while a drop of the same digest is under way, since its delete may still come.
   */
  async claim(sha256: string, stagedBy?: string): Promise<BlobClaim> {
    // An instance without a registration looks gone: anything it claimed could be dropped at once.
    // Registering again is tried now rather than at the next heartbeat, so the first upload after
    // a database outage is not refused for up to a heartbeat's interval.
    if (!this.instance.registered) await this.instance.heartbeat().catch(() => undefined);
    if (!this.instance.registered) throw notRegistered();
    // Staged under an id given up since: another instance may sweep that staging as a gone
    // instance's at any moment, so the client sends it again (staged under the new id).
    if (stagedBy !== undefined && stagedBy !== this.instance.id) throw notRegistered();
    const claim = { id: randomUUID(), sha256 };
    // Known as in flight before it exists, so this instance's reconciler never takes it.
    this.inFlight.add(claim.id);
    try {
      const deadline = Date.now() + (this.opts.dropWaitMs ?? DROP_WAIT_MS);
      for (;;) {
        const placed = await this.db.transaction().execute(async (tx) => {
          await this.repo.lockDigest(tx, sha256);
          if (await this.repo.isDropping(tx, sha256)) return false;
          await this.repo.insert(tx, { ...claim, instance_id: this.instance.id });
          return true;
        });
        if (placed) return claim;
        if (Date.now() > deadline) {
          throw new AppError(
            'not_ready',
            'A cleanup of these same bytes is still under way; nothing was stored. Please retry.',
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (err) {
      this.inFlight.delete(claim.id);
      throw err;
    }
  }

  /**
   * In the item's transaction: turns the claim into the row. A claim that is gone or being
   * dropped was reconciled (this instance looked dead, its session lost): its blob may be deleted,
   * so nothing commits.
   */
  async consume(tx: Tx, claim: BlobClaim): Promise<void> {
    if (!(await this.repo.consume(tx, claim.id))) {
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
      if (!committed) await this.drop(claim, true);
    } finally {
      this.inFlight.delete(claim.id);
    }
  }

  /**
   * Drops claims no live request holds (this instance's abandoned ones, and those of instances
   * that are gone), deleting their blobs where nothing else needs them, and finishes drops cut
   * off after their commit. Returns how many.
   */
  async reconcile(): Promise<number> {
    // Cached for the whole loop: an instance id never comes back once gone (a lost session
    // registers again under a new id), so a verdict of gone stays true.
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
        // Claimed by this instance after the snapshot above was taken: in flight, not abandoned.
        if (this.inFlight.has(row.id)) continue;
        if (!(await gone(row))) continue;
        if (row.dropping) await this.finish(row);
        else await this.drop(row, false);
        dropped++;
        progress = rows.length === RECONCILE_BATCH;
      }
    }
    return dropped;
  }

  /** Deletes a digest's evidence blob if nothing needs it (a resumable upload given up on). */
  async dropIfUnused(sha256: string): Promise<void> {
    await this.dropDigest(sha256);
  }

  /**
   * Drops a claim, and its blob if nothing else needs it. `afterRequest`: called by the request
   * that held it, once its promotion is over. If another instance dropped the claim first (this
   * one looked gone), that drop may have looked before the promotion wrote the blob: the digest
   * is checked again now, or the blob could stay forever with no row and no claim.
   */
  // Not reachable by a test: a promotion whose CopyObject timed out on the client but completes
  // on the server after this drop's stat. The blob then lands with no claim and no row; nothing
  // here can know the copy is still coming, and the scrub reports such a blob as one no row
  // accounts for (README, "How an upload is kept safe", item 4).
  private async drop(claim: BlobClaim, afterRequest: boolean): Promise<void> {
    this.inFlight.add(claim.id);
    try {
      const marked = await this.db.transaction().execute(async (tx) => {
        await this.repo.lockDigest(tx, claim.sha256);
        if (!(await this.repo.markDropping(tx, claim.id, this.instance.id))) return false;
        if (!(await this.repo.inUse(tx, claim.sha256))) return true;
        await this.repo.delete(tx, claim.id);
        return false;
      });
      // Committed: from here the claim's request can no longer commit its row.
      if (marked) await this.finish(claim);
      else if (afterRequest) await this.dropDigest(claim.sha256);
    } finally {
      this.inFlight.delete(claim.id);
    }
  }

  /** Deletes a digest's blob if nothing needs it, fenced by a dropping claim of its own. */
  private async dropDigest(sha256: string): Promise<void> {
    const marker = { id: randomUUID(), sha256 };
    this.inFlight.add(marker.id);
    try {
      const placed = await this.db.transaction().execute(async (tx) => {
        await this.repo.lockDigest(tx, sha256);
        if (await this.repo.inUse(tx, sha256)) return false;
        await this.repo.insert(tx, { ...marker, instance_id: this.instance.id, dropping: true });
        return true;
      });
      if (placed) await this.finish(marker);
    } finally {
      this.inFlight.delete(marker.id);
    }
  }

  /**
   * The second half of a drop, its fence committed: deletes the blob, then the claim. Nothing can
   * start needing the blob meanwhile (no claim is placed while this one is dropping; an item row
   * commits only by consuming a live claim). A failure leaves the dropping claim to a reconciler.
   */
  // The window between the fence's commit and the delete has no lock to hold and nothing to race
  // deterministically in a test: its safety rests on claim() refusing a digest with a dropping
  // claim, and on consume() refusing a dropping claim (both tested through their outcomes).
  private async finish(claim: BlobClaim): Promise<void> {
    await this.deleteOrphan(blobKeyFor(claim.sha256));
    await this.repo.delete(this.db, claim.id);
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
}

const notRegistered = () =>
  new AppError(
    'not_ready',
    'This instance is not registered in the database right now (its session was lost); nothing was stored. Please retry.',
  );
