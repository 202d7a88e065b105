import type { Db, VerifyStatus } from '../db/database';
import type { EvidenceRepository, EvidenceRow } from '../evidence/evidence.repository';
import { assertNotDeleted } from '../evidence/evidence.service';
import { blobKeyFor, BlobUnavailableError, type BlobStore } from '../storage/blob-store';
import type { Metrics } from '../metrics';
import type { AuditRepository } from './audit.repository';
import type { HashPool } from './hash-pool';
import type { Actor, AuditLog } from './audit.service';

export interface VerificationResult {
  itemId: string;
  status: VerifyStatus;
  checkedAt: string;
  expected: { sha256: string; size: number };
  /** What the stored bytes hash to now; null when there are no bytes to read. */
  computed: { sha256: string; size: number } | null;
  /** What the audit trail recorded when the item arrived, the reference nobody can quietly edit. */
  recordedAtCreation: { sha256: string; size: number } | null;
  problems: string[];
  notes: string[];
  bytesRead: number;
}

/**
 * Re-reads stored bytes and checks them against three records that must agree: the item row,
 * the blob's content address, and the creation event in the hash-chained audit trail. A flipped
 * byte, a deleted blob and a hash edited in the database are each caught by at least one.
 */
export class IntegrityService {
  constructor(
    private readonly db: Db,
    private readonly store: BlobStore,
    private readonly evidence: EvidenceRepository,
    private readonly auditRepo: AuditRepository,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly hasher: HashPool,
  ) {}

  async verify(row: EvidenceRow, actor: Actor): Promise<VerificationResult> {
    assertNotDeleted(row); // a tombstone has no bytes to verify
    const problems: string[] = [];
    const expected = { sha256: row.sha256, size: row.size_bytes };
    const creation = await this.auditRepo.creationOf(this.db, row.id);
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
      await this.evidence.recordVerification(tx, row.id, {
        at: checkedAt,
        status,
        detail: { problems, computed, recordedAtCreation },
      });
      await this.audit.append(tx, [
        {
          action: 'evidence.verify',
          outcome: status === 'ok' ? 'success' : 'failed',
          actor,
          itemIds: [row.id],
          details: { status, problems, computedSha256: computed?.sha256 ?? null },
        },
      ]);
    });
    this.metrics.integrityChecks.inc({ result: status });
    return result;
  }

  private async hashBlob(row: EvidenceRow): Promise<{ sha256: string; size: number }> {
    return this.hasher.hash(() => this.store.read(row.blob_key, row.size_bytes));
  }
}
