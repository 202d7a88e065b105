import { randomUUID } from 'node:crypto';
import type { Db, Executor } from '../db/database';
import { AppError } from '../base/errors';
import type { EvidenceRepository } from '../evidence/evidence.repository';
import { assertNotDeleted } from '../evidence/evidence.service';
import { isItemId, noSuchItem } from '../base/item-id';
import type { Logger } from '../base/logger';
import type { BlobStore } from '../storage/blob-store';
import type { AuditLog } from '../base/audit.service';
import type { HoldRepository, HoldRow } from './hold.repository';
import {
  reasonBody,
  type FlagMirror,
  type HoldView,
  type ListHoldsQuery,
} from '../contract/holds.contract';
import type { RequestActor } from '../base/actor';
import { parseWith } from '../base/fields';

/**
 * What a hold on a complaint asks of complaints/ (its ComplaintRepository fits): complaints/
 * sits above custody/, because a complaint under hold keeps its orders (ComplaintService).
 */
export interface ComplaintLookup {
  find(db: Executor, id: string): Promise<unknown>;
  hasLinkedEvidence(db: Executor, id: string): Promise<boolean>;
}

/** How the hold reached the objects' own legal-hold flags (S3 Object Lock). */

const iso = (d: Date | string) => new Date(d).toISOString();

function toHoldView(r: HoldRow): HoldView {
  return {
    id: r.id,
    itemId: r.item_id,
    complaintId: r.complaint_id,
    reason: r.reason,
    placedBy: r.placed_by_key_id,
    placedAt: iso(r.placed_at),
    active: r.released_at === null,
    releasedBy: r.released_by_key_id,
    releasedAt: r.released_at ? iso(r.released_at) : null,
    releaseReason: r.release_reason,
  };
}

export interface HoldServiceDeps {
  db: Db;
  repo: HoldRepository;
  evidence: EvidenceRepository;
  complaints: ComplaintLookup;
  store: BlobStore;
  audit: AuditLog;
  logger: Logger;
}

/**
 * Legal holds on one item or on a whole complaint (its linked items and its orders' items).
 * The database refuses to tombstone held evidence (trigger), so no path can delete it; the hold
 * is mirrored to each object's legal-hold flag where the store has one.
 */
export class HoldService {
  private readonly db: Db;
  private readonly repo: HoldRepository;
  private readonly evidence: EvidenceRepository;
  private readonly complaints: ComplaintLookup;
  private readonly store: BlobStore;
  private readonly audit: AuditLog;
  private readonly logger: Logger;

  constructor(deps: HoldServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.evidence = deps.evidence;
    this.complaints = deps.complaints;
    this.store = deps.store;
    this.audit = deps.audit;
    this.logger = deps.logger;
  }

  /** `reason` as `reasonBody` parses it. */
  async placeOnItem(actor: RequestActor, itemId: string, reason: string) {
    const row = isItemId(itemId) ? await this.evidence.findById(this.db, itemId) : undefined;
    if (!row) throw noSuchItem(itemId);
    assertNotDeleted(row);
    return this.place(actor, { itemId: row.id, complaintId: null, reason }, async () => [row.id]);
  }

  /** `complaintId` and `reason` as `complaintHoldParams` and `reasonBody` parse them. */
  async placeOnComplaint(actor: RequestActor, complaintId: string, reason: string) {
    // A typo must not place a hold that protects nothing and looks like it protects something.
    const known =
      (await this.complaints.find(this.db, complaintId)) ||
      (await this.complaints.hasLinkedEvidence(this.db, complaintId));
    if (!known) {
      throw new AppError(
        'not_found',
        `No complaint ${JSON.stringify(complaintId)} and no evidence linked to it; create it with PUT /v1/complaints/{id} first.`,
      );
    }
    return this.place(actor, { itemId: null, complaintId, reason }, (tx) =>
      this.repo.itemsOfComplaint(tx, complaintId),
    );
  }

  private async place(
    actor: RequestActor,
    target: { itemId: string | null; complaintId: string | null; reason: string },
    affected: (tx: Executor) => Promise<string[]>,
  ): Promise<{ hold: HoldView; itemIds: string[]; objectLegalHold: FlagMirror }> {
    const { hold, itemIds } = await this.db.transaction().execute(async (tx) => {
      await this.repo.lockForPlacement(tx);
      const hold = await this.repo.insert(tx, {
        id: randomUUID(),
        item_id: target.itemId,
        complaint_id: target.complaintId,
        reason: target.reason,
        placed_by_key_id: actor.keyId,
        placed_at: new Date(),
      });
      const itemIds = await affected(tx);
      await this.audit.append(tx, [
        {
          action: 'hold.place',
          actor,
          itemIds,
          complaintId: target.complaintId,
          details: { holdId: hold.id, reason: target.reason },
        },
      ]);
      return { hold, itemIds };
    });
    const objectLegalHold = await this.mirror(itemIds);
    return { hold: toHoldView(hold), itemIds, objectLegalHold };
  }

  async release(actor: RequestActor, holdId: string, body: unknown) {
    const { reason } = parseWith(reasonBody, body);
    if (!isItemId(holdId)) {
      throw new AppError(
        'hold_not_found',
        `No active legal hold with id ${JSON.stringify(holdId)}.`,
      );
    }
    const { hold, itemIds } = await this.db.transaction().execute(async (tx) => {
      await this.repo.lockForPlacement(tx);
      const hold = await this.repo.release(tx, holdId, {
        keyId: actor.keyId,
        at: new Date(),
        reason,
      });
      if (!hold) {
        throw new AppError('hold_not_found', `No active legal hold with id ${holdId}.`);
      }
      const itemIds = hold.item_id
        ? [hold.item_id]
        : await this.repo.itemsOfComplaint(tx, hold.complaint_id!);
      await this.audit.append(tx, [
        {
          action: 'hold.release',
          actor,
          itemIds,
          complaintId: hold.complaint_id,
          details: { holdId: hold.id, reason },
        },
      ]);
      return { hold, itemIds };
    });
    const objectLegalHold = await this.mirror(itemIds);
    return { hold: toHoldView(hold), itemIds, objectLegalHold };
  }

  async list(q: ListHoldsQuery): Promise<{ holds: HoldView[] }> {
    const rows = await this.repo.list(
      this.db,
      { itemId: q.itemId, complaintId: q.complaintId, active: q.active === 'true' },
      q.limit,
    );
    return { holds: rows.map(toHoldView) };
  }

  /**
   * Sets each item's object legal-hold flag to whether it is held now (another hold may still
   * cover an item whose hold was just released). The database is the authority: a store that
   * refuses is logged and retried by the next scrub, never a reason to undo the hold.
   */
  async mirror(itemIds: string[]): Promise<FlagMirror> {
    if (!this.store.legalHoldSupported) return 'not_supported';
    const held = await this.repo.stillHeld(this.db, itemIds);
    let failed = false;
    for (const id of itemIds) {
      const row = await this.evidence.findById(this.db, id);
      if (!row || row.blob_purged_at) continue;
      try {
        await this.store.setLegalHold(row.blob_key, held.has(id));
      } catch (err) {
        failed = true;
        this.logger.error({ err, itemId: id }, 'could not mirror a legal hold to the object');
      }
    }
    return failed ? 'failed' : 'mirrored';
  }
}
