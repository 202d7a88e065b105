import { randomUUID } from 'node:crypto';
import type { Db, LinkType, Tx } from '../db/database';
import type { AuditLog, RequestActor } from '../custody/audit.service';
import { AppError } from '../errors';
import type { EvidenceRepository, PriorItem } from '../evidence/evidence.repository';
import { can } from '../access/roles';
import {
  toDuplicateReceipt,
  toEvidenceView,
  type DuplicateReceipt,
  type EvidenceView,
} from '../evidence/evidence.view';
import { sanitizeFilename } from '../evidence/filename';
import type { IdempotencyRepository, StoredResponse } from '../evidence/idempotency.repository';
import { toE164 } from '../evidence/phone-number';
import type { NewSegment, SegmentRepository } from '../evidence/segment.repository';
import { parseSegments } from '../evidence/segments';
import type { Logger } from '../logger';
import { stagingOwner, type BlobStore } from '../storage/blob-store';
import { wormColumns, type WormState } from '../storage/worm';
import type { BlobClaim, BlobClaims } from './blob-claims';
import { parseUploadFields, type UploadFields } from './upload-form';
import { assertAllowed, type StagedUpload } from './upload-storage-engine';

export interface IngestResult {
  status: 200 | 201;
  /** The whole item for the key that archived it (and people); a receipt for a later duplicate. */
  item: EvidenceView | DuplicateReceipt;
  replayed: boolean;
}

export interface IngestRequest {
  principal: RequestActor;
  staged: StagedUpload | undefined;
  fields: unknown;
  originalFilename?: string;
  idempotencyKey?: string;
  /** The caller owns the staged bytes (a resumable upload) and disposes of them itself. */
  keepStaged?: boolean;
}

/** Told of every newly archived item: in its transaction, and once it has committed. */
export interface ArchiveListener {
  inTransaction(tx: Tx, item: { id: string; sha256: string }): Promise<void>;
  afterCommit(itemId: string): void;
}

/** Writes the genuine bytes over an item's damaged blob, checks and records the repair. */
export interface DamageRepair {
  repair(
    itemId: string,
    staged: { stagingKey: string; sha256: string; size: number },
    actor: RequestActor,
    opts?: { keepStaged?: boolean },
  ): Promise<{ key: string; repaired: boolean }>;
}

/** Signals that another request committed the same Idempotency-Key first. */
class IdempotencyKeyTaken extends Error {}

/**
 * Turns a staged upload into archived evidence: checks it, promotes the blob to its
 * content-addressed key, then records row, links and receipt in one transaction. The blob is
 * durable before the row commits, so an acknowledged item always has its bytes.
 */
export class IngestService {
  constructor(
    private readonly db: Db,
    private readonly store: BlobStore,
    private readonly evidence: EvidenceRepository,
    private readonly idempotency: IdempotencyRepository,
    private readonly audit: AuditLog,
    private readonly logger: Logger,
    private readonly opts: {
      defaultPhoneRegion?: string;
      now?: () => Date;
      /** The media pipeline: new items are queued for probing and derivatives. */
      listener?: ArchiveListener;
      /** Where scan events (per-order segments of a long recording) are kept. */
      segments?: SegmentRepository;
      /** Claims on blobs between promotion and commit: no blob is left without a row. */
      claims?: BlobClaims;
      /** Repairs an item's damaged blob with the genuine bytes (the integrity service). */
      repair?: DamageRepair;
      /** Mirrors legal holds to the objects' flags: a repair's new copy must be held too. */
      holds?: { mirror(itemIds: string[]): Promise<string> };
    } = {},
  ) {}

  /** Promotions in progress here, by digest: the same bytes are copied once, not once per request. */
  private readonly promoting = new Map<string, Promise<unknown>>();

  private promoteOnce<T>(sha256: string, fn: () => Promise<T>): Promise<T> {
    const before = this.promoting.get(sha256) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(fn);
    const tail = mine.catch(() => undefined);
    this.promoting.set(sha256, tail);
    void tail.then(() => {
      if (this.promoting.get(sha256) === tail) this.promoting.delete(sha256);
    });
    return mine;
  }

  async ingest(req: IngestRequest): Promise<IngestResult> {
    const { staged } = req;
    if (!staged) {
      throw new AppError('missing_file', 'The request has no file part named "file".');
    }
    let promoted = false;
    let claim: BlobClaim | undefined;
    let committed = false;
    try {
      if (staged.size === 0) throw new AppError('empty_file', 'The uploaded file is empty.');
      const fields = parseUploadFields(req.fields);
      const segments = fields.segments ? parseSegments(fields.segments) : [];
      if (segments.length > 0 && fields.kind === 'photo') {
        throw new AppError('validation_failed', 'A photo has no segments.', { field: 'segments' });
      }
      if (fields.sha256 && fields.sha256 !== staged.sha256) {
        throw new AppError(
          'checksum_mismatch',
          `The declared sha256 ${fields.sha256} does not match the received bytes (${staged.sha256}); nothing was stored.`,
          { declared: fields.sha256, computed: staged.sha256 },
        );
      }
      assertAllowed(fields.kind, staged.contentType);
      // A retry is answered only once its bytes are in and match the first attempt's: a client
      // reusing a key for a different recording is told so instead of losing that recording.
      if (req.idempotencyKey) {
        const first = await this.idempotency.find(this.db, req.principal.keyId, req.idempotencyKey);
        if (first) {
          this.replay(first, staged.sha256); // other bytes under the same key are refused first
          // The retry's bytes are the genuine ones: a damaged copy is repaired before the answer
          // is replayed (the stored answer is still what the key gets).
          if (await this.repairDamaged(req, staged)) promoted = true;
          return await this.replayed(req, first, staged.sha256);
        }
      }
      // A call that already has other bytes is refused before promotion: no blob without a row.
      if (fields.callId) {
        const call = await this.evidence.findByCall(
          this.db,
          req.principal.keyId,
          fields.source ?? null,
          fields.callId,
        );
        if (call && call.sha256 !== staged.sha256) throw callIdConflict(fields.callId);
      }
      // Checked before promotion too, so purged bytes are not stored again only to be refused.
      refuseDeleted(req.principal, await this.evidence.findBySha256(this.db, staged.sha256));
      // The same bytes as an item whose stored copy was found damaged: these (hashed as they
      // arrived, so the genuine bytes by definition) repair it instead of being thrown away.
      const started = performance.now();
      let stored: { key: string; created: boolean; worm: WormState };
      const repairedKey = await this.repairDamaged(req, staged);
      if (repairedKey) {
        // The repaired copy is a new object: its WORM protection is read back like a promotion's.
        stored = {
          key: repairedKey,
          created: false,
          worm: await this.store.verifyWorm(repairedKey),
        };
      } else {
        // Claimed before the blob exists at its address: until the row commits, the claim says a
        // live request owns it; if this request fails, the claim's release removes it again.
        claim = await this.opts.claims?.claim(staged.sha256, stagingOwner(staged.stagingKey));
        stored = await this.promoteOnce(staged.sha256, () =>
          this.store.promote(staged.stagingKey, staged.sha256, staged.size),
        );
      }
      const { key, created, worm } = stored;
      promoted = true;
      const promotedAt = performance.now();
      const result = await this.record(req, staged, fields, segments, key, worm, claim, () => {
        committed = true;
      });
      // New items, and known ones given new segments to cut, go to the media pipeline.
      if (!result.replayed && (result.status === 201 || segments.length > 0)) {
        this.opts.listener?.afterCommit(result.item.id);
      }
      this.logger.info(
        {
          itemId: result.item.id,
          sha256: staged.sha256,
          bytes: staged.size,
          status: result.status,
          newBlob: created,
          worm: worm.status,
          promoteMs: Math.round(promotedAt - started),
          recordMs: Math.round(performance.now() - promotedAt),
        },
        'evidence archived',
      );
      return result;
    } finally {
      if (claim) {
        await this.opts.claims!.release(claim, committed).catch((err) => {
          this.logger.warn({ err, sha256: staged.sha256 }, 'blob claim not released');
        });
      }
      if (!promoted && !req.keepStaged) {
        await this.store.discardStaging(staged.stagingKey).catch((err) => {
          this.logger.warn({ err, stagingKey: staged.stagingKey }, 'staging cleanup failed');
        });
      }
    }
  }

  /**
   * Repairs the item whose stored copy of these bytes was found damaged (these bytes, hashed as
   * they arrived, are the genuine ones); returns the blob's key, or undefined when none is damaged.
   */
  private async repairDamaged(
    req: IngestRequest,
    staged: StagedUpload,
  ): Promise<string | undefined> {
    const damaged =
      this.opts.repair && (await this.evidence.findDamagedBySha256(this.db, staged.sha256));
    if (!damaged) return undefined;
    const { key, repaired } = await this.opts.repair!.repair(damaged.id, staged, req.principal, {
      keepStaged: req.keepStaged,
    });
    // The genuine copy is a new object (S3: a new version) without the item's legal hold;
    // mirroring sets it and reads it back. If it fails, the next scrub's mirror retries.
    if (repaired) await this.mirrorHoldsAfterRepair(damaged.id);
    return key;
  }

  private async mirrorHoldsAfterRepair(itemId: string): Promise<void> {
    const mirrored = await this.opts.holds?.mirror([itemId]).catch((err: unknown) => {
      this.logger.error({ err, itemId }, 'could not mirror legal holds to a repaired blob');
      return 'failed';
    });
    if (mirrored === 'failed') {
      this.logger.error({ itemId }, 'a repaired blob may lack its legal hold until the next scrub');
    }
  }

  /** Whether the item holding these bytes is marked damaged (an upload of them repairs it). */
  async isDamaged(sha256: string): Promise<boolean> {
    return (await this.evidence.findDamagedBySha256(this.db, sha256)) !== undefined;
  }

  private async record(
    req: IngestRequest,
    staged: StagedUpload,
    fields: UploadFields,
    segments: NewSegment[],
    blobKey: string,
    worm: WormState,
    claim: BlobClaim | undefined,
    onCommit: () => void,
  ): Promise<IngestResult> {
    const { principal, idempotencyKey } = req;
    const now = this.opts.now?.() ?? new Date();
    const region = this.opts.defaultPhoneRegion;
    const all: { type: LinkType; ref: string }[] = [
      ...(fields.orderId ?? []).map((ref) => ({ type: 'order' as const, ref })),
      ...(fields.complaintId ?? []).map((ref) => ({ type: 'complaint' as const, ref })),
      // The orders a recording's segments belong to find it too.
      ...segments.map((s) => ({ type: 'order' as const, ref: s.orderId })),
    ];
    const links = all.filter(
      (l, i) => all.findIndex((o) => o.type === l.type && o.ref === l.ref) === i,
    );
    try {
      const result = await this.db.transaction().execute(async (tx) => {
        // First: a claim reconciled meanwhile (this instance looked gone) commits nothing.
        if (claim) await this.opts.claims!.consume(tx, claim);
        const insertedId = await this.evidence.insertItem(tx, {
          id: randomUUID(),
          kind: fields.kind,
          sha256: staged.sha256,
          size_bytes: staged.size,
          content_type: staged.contentType,
          blob_key: blobKey,
          original_filename: sanitizeFilename(req.originalFilename),
          captured_at: fields.capturedAt ?? now,
          received_at: now,
          source: fields.source ?? null,
          created_by_key_id: principal.keyId,
          call_id: fields.callId ?? null,
          from_number: fields.fromNumber ?? null,
          from_number_e164: fields.fromNumber ? (toE164(fields.fromNumber, region) ?? null) : null,
          to_number: fields.toNumber ?? null,
          to_number_e164: fields.toNumber ? (toE164(fields.toNumber, region) ?? null) : null,
          agent_id: fields.agentId ?? null,
          direction: fields.direction ?? null,
          station_id: fields.stationId ?? null,
          operator_id: fields.operatorId ?? null,
          tracking_number: fields.trackingNumber ?? null,
          ...wormColumns(worm),
        });
        // The unique constraint on sha256 decided; a losing racer sees the winner's committed row.
        const existing = insertedId
          ? undefined
          : await this.evidence.findBySha256(tx, staged.sha256);
        const id = insertedId ?? existing?.id;
        if (!id) throw callIdConflict(fields.callId);
        refuseDeleted(principal, existing);
        // The existing blob's protection was just read back (and applied where it was missing).
        if (existing) await this.evidence.setWorm(tx, id, wormColumns(worm));
        // The same bytes as another call's recording: answering with that item would lose this
        // call (its id, numbers, time); say so instead.
        if (
          existing &&
          fields.callId &&
          existing.call_id &&
          (existing.call_id !== fields.callId || (existing.source ?? '') !== (fields.source ?? ''))
        ) {
          // Which call it was is said only to whoever may see that item.
          const call = mayKnow(principal, existing)
            ? `, the recording of call ${JSON.stringify(existing.call_id)}`
            : ", another call's recording";
          throw new AppError(
            'recording_of_another_call',
            `These bytes are already archived as item ${existing.id}${call}; nothing was stored for call ${JSON.stringify(fields.callId)}.`,
            { itemId: existing.id },
          );
        }
        if (insertedId) await this.opts.listener?.inTransaction(tx, { id, sha256: staged.sha256 });
        await this.evidence.addLinks(tx, id, links, principal.keyId);
        await this.opts.segments?.insert(
          tx,
          segments.map((s) => ({ ...s, id: randomUUID(), itemId: id, keyId: principal.keyId })),
        );
        await this.evidence.addReceipt(tx, principal.keyId, id);
        const row = (await this.evidence.findById(tx, id))!;
        const result: IngestResult = {
          status: insertedId ? 201 : 200,
          item: mayKnow(principal, row)
            ? toEvidenceView(row)
            : toDuplicateReceipt(row, [
                ...links,
                ...(await this.evidence.linksAddedBy(tx, id, principal.keyId)),
              ]),
          replayed: false,
        };
        if (idempotencyKey) {
          const stored = await this.idempotency.insert(tx, principal.keyId, idempotencyKey, {
            contentSha256: staged.sha256,
            statusCode: result.status,
            body: result.item,
          });
          if (!stored) throw new IdempotencyKeyTaken();
        }
        await this.audit.append(tx, [
          {
            action: insertedId ? 'evidence.create' : 'evidence.duplicate',
            actor: principal,
            itemIds: [id],
            details: {
              sha256: staged.sha256,
              size: staged.size,
              contentType: staged.contentType,
              kind: fields.kind,
              filename: row.original_filename,
              links: links.map((l) => `${l.type}:${l.ref}`),
              ...(segments.length > 0 ? { segments } : {}),
              ...(idempotencyKey ? { idempotencyKey } : {}),
            },
          },
        ]);
        return result;
      });
      onCommit();
      return result;
    } catch (err) {
      if (!(err instanceof IdempotencyKeyTaken) || !idempotencyKey) throw err;
      const first = await this.idempotency.find(this.db, principal.keyId, idempotencyKey);
      return this.replayed(req, first, staged.sha256);
    }
  }

  /** A replayed answer is still a delivery of the same bytes by this key: it is audited. */
  private async replayed(
    req: IngestRequest,
    first: StoredResponse | undefined,
    sha256: string,
  ): Promise<IngestResult> {
    const result = await this.entitled(req.principal, this.replay(first, sha256));
    await this.audit.record({
      action: 'evidence.duplicate',
      actor: req.principal,
      itemIds: [result.item.id],
      details: { sha256, replayed: true, idempotencyKey: req.idempotencyKey },
    });
    return result;
  }

  /**
   * A replayed answer as the key may see it now: answers stored before duplicates were answered
   * with receipts held another key's whole item, and are cut down to the receipt.
   */
  private async entitled(principal: RequestActor, result: IngestResult): Promise<IngestResult> {
    if ('duplicate' in result.item || result.status === 201) return result;
    if (can(principal.role, 'evidence:read')) return result;
    const row = await this.evidence.findById(this.db, result.item.id);
    if (!row || mayKnow(principal, row)) return result;
    const links = await this.evidence.linksAddedBy(this.db, row.id, principal.keyId);
    return { ...result, item: toDuplicateReceipt(row, links) };
  }

  /** The first response for an Idempotency-Key, if this request carried the same bytes. */
  private replay(first: StoredResponse | undefined, sha256: string): IngestResult {
    if (!first || first.contentSha256 !== sha256) {
      throw new AppError(
        'idempotency_key_reused',
        'This Idempotency-Key was already used for a different file; nothing was stored. Use a new key for new evidence.',
      );
    }
    return {
      status: first.statusCode as 200 | 201,
      item: first.body as EvidenceView,
      replayed: true,
    };
  }
}

const callIdConflict = (callId: string | undefined) =>
  new AppError(
    'call_id_conflict',
    `Call ${JSON.stringify(callId)} from this source already has a recording with different bytes; nothing was stored.`,
    { callId },
  );

/** Bytes deleted under retention or by an admin are never archived again under the old item. */
function refuseDeleted(principal: RequestActor, prior: PriorItem | undefined): void {
  if (prior?.deleted_at) {
    const why = mayKnow(principal, prior) ? ` (${prior.deletion_reason})` : '';
    throw new AppError(
      'evidence_deleted',
      `These bytes were archived before as item ${prior.id} and deleted${why}; a deleted item is never revived.`,
      { itemId: prior.id },
    );
  }
}

/**
 * Whether a key may see what was recorded about an item: people may, and so may the key that
 * archived it. Another key that holds the same bytes learns only what it sent (its receipt).
 */
function mayKnow(principal: RequestActor, item: { created_by_key_id: string }): boolean {
  return can(principal.role, 'evidence:read') || item.created_by_key_id === principal.keyId;
}
