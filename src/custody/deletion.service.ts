import type { Db, EvidenceKind, Tx } from '../db/database';
import { isItemId, noSuchItem } from '../evidence/item-id';
import { AppError } from '../errors';
import type { EvidenceRepository } from '../evidence/evidence.repository';
import { toEvidenceView, type EvidenceView } from '../evidence/evidence.view';
import type { Logger } from '../logger';
import type { BlobStore } from '../storage/blob-store';
import { systemActor, type AuditLog, type RequestActor } from './audit.service';
import type { DeletionRepository, DeletableRow } from './deletion.repository';
import type { HoldRepository } from './hold.repository';

const BATCH = 100;
const DAY_MS = 86_400_000;

export interface RetentionPolicy {
  /** Days each kind is kept after receipt; 0 keeps it forever. */
  days: Record<EvidenceKind, number>;
  afterCloseDays: number;
}

export interface RetentionStats {
  expired: number;
  expiredBytes: number;
  purged: number;
  purgeFailures: number;
}

/** PostgreSQL's answer to FOR UPDATE NOWAIT on a row someone else holds. */
const isLockBusy = (err: unknown) => (err as { code?: string }).code === '55P03';

/**
 * Deleting evidence: an admin's deletion with a reason, and retention's expiry. Both leave a
 * tombstone row (hash, size, times, reason) and the full audit history; only the bytes go, after
 * the tombstone has committed. Held items are refused here and, whatever the path, by the
 * database's trigger.
 */
export class DeletionService {
  constructor(
    private readonly db: Db,
    private readonly repo: DeletionRepository,
    private readonly holds: HoldRepository,
    private readonly evidence: EvidenceRepository,
    private readonly store: BlobStore,
    private readonly audit: AuditLog,
    private readonly logger: Logger,
    private readonly opts: {
      now?: () => Date;
      /** Removes what was made from the purged bytes (thumbnails, previews) with them. */
      onPurge?: (tx: Tx, itemId: string) => Promise<void>;
    } = {},
  ) {}

  /** `reason`: the body's, as the route parsed it (the contract's ReasonRequest). */
  async deleteItem(actor: RequestActor, id: string, reason: string): Promise<EvidenceView> {
    if (!isItemId(id)) throw noSuchItem(id);
    await this.db.transaction().execute(async (tx) => {
      await this.holds.lockForDeletion(tx);
      let row: DeletableRow | undefined;
      try {
        row = await this.repo.lockItem(tx, id);
      } catch (err) {
        if (!isLockBusy(err)) throw err;
        throw new AppError(
          'evidence_busy',
          `Item ${id} is being changed by another request; try again.`,
        );
      }
      if (!row) throw noSuchItem(id);
      if (row.deleted_at) {
        throw new AppError('evidence_deleted', `Item ${id} was already deleted.`);
      }
      if (await this.evidence.isHeld(tx, id)) {
        throw new AppError(
          'legal_hold',
          `Item ${id} is under legal hold (on the item or on a complaint it belongs to); release the hold first.`,
        );
      }
      const at = this.now();
      await this.repo.tombstone(tx, id, { at, reason, by: actor.keyId });
      await this.audit.append(tx, [
        {
          action: 'evidence.delete',
          actor,
          itemIds: [id],
          details: { reason, sha256: row.sha256, size: row.size_bytes, kind: row.kind },
        },
      ]);
    });
    await this.purge([id]);
    return toEvidenceView((await this.evidence.findById(this.db, id))!);
  }

  /** One retention pass: tombstones every expired item, batch by batch, then removes their bytes. */
  async expire(policy: RetentionPolicy): Promise<RetentionStats> {
    const now = this.now();
    const cutoff = (days: number) => (days > 0 ? new Date(now.getTime() - days * DAY_MS) : null);
    const cutoffs = {
      byKind: {
        packing_video: cutoff(policy.days.packing_video),
        call_recording: cutoff(policy.days.call_recording),
        photo: cutoff(policy.days.photo),
      },
      closedAfter: new Date(now.getTime() - policy.afterCloseDays * DAY_MS),
    };
    const reasonFor = (kind: EvidenceKind) => `retention: ${kind} kept ${policy.days[kind]} days`;
    const stats: RetentionStats = { expired: 0, expiredBytes: 0, purged: 0, purgeFailures: 0 };
    const actor = systemActor('retention');
    for (;;) {
      const batch = await this.db.transaction().execute(async (tx) => {
        await this.holds.lockForDeletion(tx);
        const rows = await this.repo.lockExpired(tx, cutoffs, BATCH);
        for (const row of rows) {
          await this.repo.tombstone(tx, row.id, {
            at: now,
            reason: reasonFor(row.kind),
            by: 'system:retention',
          });
        }
        await this.audit.append(
          tx,
          rows.map((row) => ({
            action: 'evidence.expire' as const,
            actor,
            itemIds: [row.id],
            details: {
              reason: reasonFor(row.kind),
              sha256: row.sha256,
              size: row.size_bytes,
              receivedAt: new Date(row.received_at).toISOString(),
            },
          })),
        );
        return rows;
      });
      stats.expired += batch.length;
      stats.expiredBytes += batch.reduce((n, r) => n + r.size_bytes, 0);
      if (batch.length < BATCH) break;
    }
    const purged = await this.purge();
    stats.purged = purged.purged;
    stats.purgeFailures = purged.failures;
    return stats;
  }

  /**
   * Removes the bytes of tombstoned items (these, or all still stored). Each item is locked while
   * its blob goes, so two instances never purge the same one; a store that refuses (Object Lock
   * retention not yet over) leaves the tombstone unpurged, retried by the next run.
   */
  async purge(only?: string[]): Promise<{ purged: number; failures: number }> {
    let purged = 0;
    let failures = 0;
    let after: { deletedAt: Date; id: string } | undefined;
    for (;;) {
      const rows = await this.db.transaction().execute(async (tx) => {
        const rows = await this.repo.lockUnpurged(tx, { after, ids: only }, BATCH);
        const done: string[] = [];
        for (const row of rows) {
          try {
            await this.store.delete(row.blob_key);
            await this.opts.onPurge?.(tx, row.id);
          } catch (err) {
            failures++;
            this.logger.warn(
              { err, itemId: row.id },
              'could not remove the bytes of a deleted item',
            );
            continue;
          }
          const at = this.now();
          await this.repo.markPurged(tx, row.id, at);
          done.push(row.id);
        }
        await this.audit.append(
          tx,
          done.map((id) => ({
            action: 'evidence.purge' as const,
            actor: systemActor('retention'),
            itemIds: [id],
            details: {},
          })),
        );
        purged += done.length;
        return rows;
      });
      if (rows.length < BATCH) break;
      const last = rows.at(-1)!;
      after = { deletedAt: last.deleted_at, id: last.id };
    }
    return { purged, failures };
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }
}
