import type { Db, VerifyStatus } from '../db/database';
import type { EvidenceRepository, EvidenceRow } from '../evidence/evidence.repository';
import { assertNotDeleted } from '../evidence/evidence.service';
import { blobKeyFor, BlobUnavailableError, type BlobStore } from '../storage/blob-store';
import type { Logger } from '../base/logger';
import type { Metrics } from '../base/metrics';
import type { AuditRepository } from '../base/audit.repository';
import type { HashPool } from './hash-pool';
import type { AuditLog } from '../base/audit.service';
import { systemActor, type Actor } from '../base/actor';
import type { VerificationResult } from '../contract/custody.contract';

export type { VerificationResult };

/** A ranged read of an item not verified within this long queues a verification of it. */
const RANGE_RECHECK_MS = 24 * 3600_000;
/** Items waiting for such a verification in this process, at most (the scrub covers the rest). */
const MAX_QUEUED_CHECKS = 100;

export interface IntegrityServiceDeps {
  db: Db;
  store: BlobStore;
  evidence: EvidenceRepository;
  auditRepo: AuditRepository;
  audit: AuditLog;
  metrics: Metrics;
  hasher: HashPool;
  logger?: Pick<Logger, 'warn' | 'error'>;
}

/**
 * Re-reads stored bytes and checks them against three records that must agree: the item row,
 * the blob's content address, and the creation event in the hash-chained audit trail. A flipped
 * byte, a deleted blob and a hash edited in the database are each caught by at least one.
 */
export class IntegrityService {
  private readonly db: Db;
  private readonly store: BlobStore;
  private readonly evidence: EvidenceRepository;
  private readonly auditRepo: AuditRepository;
  private readonly audit: AuditLog;
  private readonly metrics: Metrics;
  private readonly hasher: HashPool;
  private readonly logger?: Pick<Logger, 'warn' | 'error'>;

  constructor(deps: IntegrityServiceDeps) {
    this.db = deps.db;
    this.store = deps.store;
    this.evidence = deps.evidence;
    this.auditRepo = deps.auditRepo;
    this.audit = deps.audit;
    this.metrics = deps.metrics;
    this.hasher = deps.hasher;
    this.logger = deps.logger;
  }

  /**
   * Items a read in this process found hashing wrong while the mark could not be written
   * (database down): their bytes are refused here until a verification records their state.
   */
  private readonly suspect = new Set<string>();
  /** Items whose verification is queued in this process (ranged reads of unverified items). */
  private readonly queued = new Set<string>();
  private checks: Promise<void> = Promise.resolve();

  /** Whether a read here found the item's bytes wrong and the mark could not be written. */
  isSuspect(itemId: string): boolean {
    return this.suspect.has(itemId);
  }

  /**
   * Queues a verification of an item whose bytes went out without being checked (a range that
   * is not the whole file), when it was not verified recently, or is suspect. One at a time, in
   * the background; its result is recorded on the item (and marks it damaged if it is).
   */
  checkSoon(row: Pick<EvidenceRow, 'id' | 'verified_at'>): void {
    const recent =
      row.verified_at !== null &&
      Date.now() - new Date(row.verified_at).getTime() < RANGE_RECHECK_MS;
    if ((recent && !this.suspect.has(row.id)) || this.queued.has(row.id)) return;
    if (this.queued.size >= MAX_QUEUED_CHECKS) return;
    this.queued.add(row.id);
    this.checks = this.checks.then(async () => {
      try {
        const current = await this.evidence.findById(this.db, row.id);
        if (current && !current.deleted_at) await this.verify(current, systemActor('range-read'));
      } catch (err) {
        this.logger?.warn({ err, itemId: row.id }, 'could not verify an item read in part');
      } finally {
        this.queued.delete(row.id);
      }
    });
  }

  /**
   * The item's creation event; when the chain has none yet, after linking what waits (an item just
   * received: its event may not be linked yet). Linking only then, not before every verification.
   */
  private async creationOf(itemId: string) {
    const linked = await this.auditRepo.creationOf(this.db, itemId);
    if (linked) return linked;
    await this.audit.settle();
    return this.auditRepo.creationOf(this.db, itemId);
  }

  /** Waits for the queued verifications (shutdown, tests). */
  async drain(): Promise<void> {
    while (this.queued.size > 0) await this.checks;
  }

  async verify(row: EvidenceRow, actor: Actor): Promise<VerificationResult> {
    assertNotDeleted(row); // a tombstone has no bytes to verify
    const startedAt = new Date();
    const problems: string[] = [];
    const expected = { sha256: row.sha256, size: row.size_bytes };
    const creation = await this.creationOf(row.id);
    const recordedAtCreation = creation
      ? { sha256: String(creation.details.sha256), size: Number(creation.details.size) }
      : null;
    const notes: string[] = [];
    if (!recordedAtCreation) {
      // Archived before the custody trail existed: the bytes are still checked against the row.
      notes.push('no creation event in the audit trail (archived before custody auditing began)');
    } else if (
      recordedAtCreation.sha256 !== row.sha256 ||
      recordedAtCreation.size !== row.size_bytes
    ) {
      problems.push(
        `the item's recorded hash/size (${row.sha256}, ${row.size_bytes}) differ from those recorded at creation (${recordedAtCreation.sha256}, ${recordedAtCreation.size})`,
      );
    }
    if (blobKeyFor(row.sha256) !== row.blob_key) {
      problems.push(`the blob key ${row.blob_key} is not the content address of ${row.sha256}`);
    }

    let status: VerifyStatus = 'ok';
    let computed: VerificationResult['computed'] = null;
    try {
      // The store refuses a missing blob or one of the wrong size before a byte is hashed.
      computed = await this.hashBlob(row);
    } catch (err) {
      if (!(err instanceof BlobUnavailableError)) throw err;
      status = err.problem;
      problems.push(err.message);
    }
    if (computed && computed.sha256 !== row.sha256) {
      problems.push(`the stored bytes hash to ${computed.sha256}, expected ${row.sha256}`);
    }
    if (status === 'ok' && problems.length > 0) status = 'mismatch';
    // The bytes are damaged when they are there but do not hash to what was archived (the row's
    // hash or the one recorded at creation); a missing blob is unavailable, not damaged.
    const damaged =
      status === 'size_mismatch' ||
      (computed !== null &&
        (computed.sha256 !== row.sha256 ||
          (recordedAtCreation !== null && computed.sha256 !== recordedAtCreation.sha256)));

    const checkedAt = new Date();
    const result: VerificationResult = {
      itemId: row.id,
      status,
      checkedAt: checkedAt.toISOString(),
      expected,
      computed,
      recordedAtCreation,
      problems,
      notes,
      bytesRead: computed?.size ?? 0,
    };
    await this.db.transaction().execute(async (tx) => {
      const detail = { problems, computed, recordedAtCreation };
      const markedDamaged = damaged
        ? await this.evidence.markDamaged(tx, row.id, {
            at: checkedAt,
            checkStartedAt: startedAt,
            detail: { ...detail, via: 'verify' },
          })
        : false;
      if (damaged && !markedDamaged) {
        // A repair finished after this check began: the bytes it read were replaced, so its
        // result is not the item's state (the repair's own verification stays the latest).
        result.notes.push('superseded: a repair replaced the bytes while they were being checked');
        await this.audit.append(tx, [
          {
            action: 'evidence.verify',
            outcome: 'success',
            actor,
            itemIds: [row.id],
            details: {
              status,
              problems,
              computedSha256: computed?.sha256 ?? null,
              superseded: true,
            },
          },
        ]);
        return;
      }
      await this.evidence.recordVerification(tx, row.id, { at: checkedAt, status, detail });
      // Bytes that hash right again (restored from a backup, say) are served again.
      const damageCleared =
        status === 'ok' && row.damaged_at !== null
          ? await this.evidence.clearDamaged(tx, row.id, checkedAt)
          : false;
      await this.audit.append(tx, [
        {
          action: 'evidence.verify',
          outcome: status === 'ok' ? 'success' : 'failed',
          actor,
          itemIds: [row.id],
          details: {
            status,
            problems,
            computedSha256: computed?.sha256 ?? null,
            ...(markedDamaged ? { damaged: true } : {}),
            ...(damageCleared ? { damageCleared: true } : {}),
          },
        },
      ]);
    });
    this.suspect.delete(row.id); // its state is recorded now (damaged or not)
    this.metrics.integrityChecks.inc({ result: status });
    return result;
  }

  /**
   * A full read (a download) whose bytes hashed wrong as they streamed: recorded as a failed
   * verification, and the item is marked damaged, unless a repair finished since the read began.
   */
  async recordReadMismatch(
    row: Pick<EvidenceRow, 'id' | 'sha256'>,
    actor: Actor,
    computed: { sha256: string; size: number },
    readStartedAt: Date,
    via: string,
  ): Promise<void> {
    const at = new Date();
    const problems = [`the stored bytes hash to ${computed.sha256}, expected ${row.sha256}`];
    // Until the mark is durable, this process serves none of the item's bytes (a client resuming
    // the cut download with a range would otherwise get the held-back tail unchecked).
    this.suspect.add(row.id);
    await this.db.transaction().execute(async (tx) => {
      const marked = await this.evidence.markDamaged(tx, row.id, {
        at,
        checkStartedAt: readStartedAt,
        detail: { problems, computed, via },
      });
      if (!marked) return; // the bytes read were replaced by a repair meanwhile
      await this.evidence.recordVerification(tx, row.id, {
        at,
        status: 'mismatch',
        detail: { problems, computed, recordedAtCreation: null, via },
      });
      await this.audit.append(tx, [
        {
          action: 'evidence.verify',
          outcome: 'failed',
          actor,
          itemIds: [row.id],
          details: {
            status: 'mismatch',
            problems,
            computedSha256: computed.sha256,
            via,
            damaged: true,
          },
        },
      ]);
    });
    this.suspect.delete(row.id);
    this.metrics.integrityChecks.inc({ result: 'mismatch' });
  }

  /**
   * Writes the genuine bytes (staged, already hashed to the item's SHA-256 by the upload) over a
   * damaged blob, reads them back, and only when they hash right clears the damage mark and
   * records an `evidence.repair` event. The item's row stays locked throughout, so concurrent
   * uploads of the same bytes repair it once (the others find it repaired and write nothing). The
   * store never deletes the damaged copy first (S3: the repair is a new version; a locked damaged
   * version stays).
   */
  async repair(
    itemId: string,
    staged: { stagingKey: string; sha256: string; size: number },
    actor: Actor,
    opts: { keepStaged?: boolean } = {},
  ): Promise<{ key: string; repaired: boolean }> {
    const started = performance.now();
    const key = blobKeyFor(staged.sha256);
    const notRepaired = async () => {
      if (!opts.keepStaged)
        await this.store.discardStaging(staged.stagingKey).catch(() => undefined);
      return { key, repaired: false };
    };
    const creation = await this.creationOf(itemId);
    if (creation && String(creation.details.sha256) !== staged.sha256) {
      // The row's hash is not what arrived (edited since): bytes that match the row are not the
      // evidence, and repair nothing. They are answered as a plain duplicate.
      return notRepaired();
    }
    // A repair is rare and a blob's copy can take a while: holding the row's lock meanwhile only
    // makes other writers of this one item (repairs, verification results) wait; readers do not.
    const result = await this.db.transaction().execute(async (tx) => {
      // Another upload repairing it already: this one is answered as a duplicate now rather than
      // holding a pool connection while it waits for that copy (its bytes are not needed).
      if (!(await this.evidence.tryClaimRepair(tx, itemId))) return notRepaired();
      const damage = await this.evidence.lockDamage(tx, itemId);
      if (!damage) return notRepaired(); // another upload repaired it first
      const { previous } = await this.store.repair(
        staged.stagingKey,
        staged.sha256,
        staged.size,
        opts,
      );
      const check = await this.hasher.hash(() => this.store.read(key, staged.size));
      if (check.sha256 !== staged.sha256 || check.size !== staged.size) {
        throw new Error(
          `repair of item ${itemId}: the rewritten blob ${key} hashes to ${check.sha256} (${check.size} bytes), expected ${staged.sha256}`,
        );
      }
      const at = new Date();
      await this.evidence.clearDamaged(tx, itemId, at);
      await this.evidence.recordVerification(tx, itemId, {
        at,
        status: 'ok',
        detail: { problems: [], computed: check, recordedAtCreation: null, via: 'repair' },
      });
      await this.audit.append(tx, [
        {
          action: 'evidence.repair',
          actor,
          itemIds: [itemId],
          details: {
            sha256: staged.sha256,
            size: staged.size,
            blobKey: key,
            verified: true,
            damagedAt: damage.damagedAt.toISOString(),
            damage: damage.detail,
            ...(previous ? { damagedVersion: previous } : {}),
            ms: Math.round(performance.now() - started),
          },
        },
      ]);
      return { key, repaired: true };
    });
    if (result.repaired) {
      this.suspect.delete(itemId);
      this.metrics.integrityChecks.inc({ result: 'ok' });
    }
    return result;
  }

  private async hashBlob(row: EvidenceRow): Promise<{ sha256: string; size: number }> {
    return this.hasher.hash(() => this.store.read(row.blob_key, row.size_bytes));
  }
}
