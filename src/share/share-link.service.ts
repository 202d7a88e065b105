import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Actor, RequestActor } from '../base/actor';
import type { AuditLog } from '../base/audit.service';
import type { ComplaintRepository } from '../complaints/complaint.repository';
import type { Db } from '../db/database';
import { AppError } from '../base/errors';
import type { EvidenceRepository, EvidenceRow } from '../evidence/evidence.repository';
import {
  assertNotSuspect,
  checkedRead,
  openRecorded,
  openStored,
  type ReadMismatchRecorder,
} from '../evidence/evidence.service';
import { isItemId, noSuchItem } from '../base/item-id';
import type { SegmentRepository, SegmentRow } from '../evidence/segment.repository';
import {
  SHARE_TOKEN,
  type CreateShareLinkBody,
  type ListShareLinksQuery,
  type ShareLinkView,
} from '../contract/share.contract';
import type { BlobStore, ByteRange } from '../storage/blob-store';
import type { ShareLinkRepository, ShareLinkRow } from './share-link.repository';

export type { ShareLinkRow };

const DAY_MS = 86_400_000;
const LIST_LIMIT = 500;

/** What a share link opens, as the public route serves it. */
export type SharedContent =
  | { type: 'item'; item: EvidenceRow }
  | {
      type: 'segment';
      item: EvidenceRow;
      segment: SegmentRow;
      cut: { sha256: string; blobKey: string; size: number; contentType: string };
    }
  | { type: 'bundle'; bundleId: string };

/** The bundles a link may point at (the bundle service, seen from here). */
export interface BundleTargets {
  exists(bundleId: string): Promise<{ complaintId: string } | undefined>;
}

const iso = (d: Date | string) => new Date(d).toISOString();
export const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

export interface ShareLinkServiceDeps {
  db: Db;
  links: ShareLinkRepository;
  complaints: ComplaintRepository;
  evidence: EvidenceRepository;
  segments: SegmentRepository;
  store: BlobStore;
  audit: AuditLog;
  bundles: BundleTargets;
  opts?: {
    publicUrl?: string;
    now?: () => Date;
    /** A full read whose bytes hash wrong marks the item damaged (the integrity service). */
    damage?: ReadMismatchRecorder;
  };
}

/**
 * Read-only, expiring, revocable links to one item, one segment's cut or one bundle, for people
 * without a key (a marketplace reviewer, the customer). The token is shown once, at creation; the
 * database keeps only its SHA-256. Every use is recorded with the client's address.
 */
export class ShareLinkService {
  private readonly db: Db;
  private readonly links: ShareLinkRepository;
  private readonly complaints: ComplaintRepository;
  private readonly evidence: EvidenceRepository;
  private readonly segments: SegmentRepository;
  private readonly store: BlobStore;
  private readonly audit: AuditLog;
  private readonly bundles: BundleTargets;
  private readonly opts: NonNullable<ShareLinkServiceDeps['opts']>;

  constructor(deps: ShareLinkServiceDeps) {
    this.db = deps.db;
    this.links = deps.links;
    this.complaints = deps.complaints;
    this.evidence = deps.evidence;
    this.segments = deps.segments;
    this.store = deps.store;
    this.audit = deps.audit;
    this.bundles = deps.bundles;
    this.opts = deps.opts ?? {};
  }

  async create(
    actor: RequestActor,
    b: CreateShareLinkBody,
  ): Promise<{ link: ShareLinkView; token: string; url: string }> {
    let itemId: string | null = null;
    let complaintId = b.complaintId ?? null;
    let item: EvidenceRow | undefined;
    if (b.itemId !== undefined) {
      item = await this.liveItem(b.itemId);
      itemId = item.id;
    } else if (b.segmentId !== undefined) {
      const segment = isItemId(b.segmentId)
        ? await this.segments.find(this.db, b.segmentId)
        : undefined;
      if (!segment) {
        throw new AppError('not_found', `No segment ${JSON.stringify(b.segmentId.slice(0, 64))}.`);
      }
      item = await this.liveItem(segment.item_id);
      itemId = item.id;
    } else {
      const bundle = isItemId(b.bundleId!) ? await this.bundles.exists(b.bundleId!) : undefined;
      if (!bundle)
        throw new AppError('not_found', `No bundle ${JSON.stringify(b.bundleId!.slice(0, 64))}.`);
      if (complaintId !== null && complaintId !== bundle.complaintId) {
        throw new AppError(
          'validation_failed',
          `Bundle ${b.bundleId} belongs to complaint ${bundle.complaintId}.`,
          { field: 'complaintId' },
        );
      }
      complaintId = bundle.complaintId;
    }
    if (item && complaintId !== null) {
      // A link is listed under a complaint (and its events go into that complaint's bundles)
      // only when the evidence is that complaint's.
      const complaint = await this.complaints.orderIdsOf(this.db, complaintId);
      const orders = complaint?.order_ids ?? [];
      if (
        !item.complaint_ids.includes(complaintId) &&
        !item.order_ids.some((o) => orders.includes(o))
      ) {
        throw new AppError(
          'validation_failed',
          `Item ${item.id} is not linked to complaint ${complaintId} or to one of its orders.`,
          { field: 'complaintId' },
        );
      }
    }
    const token = randomBytes(32).toString('base64url');
    const now = this.opts.now?.() ?? new Date();
    const row = await this.db.transaction().execute(async (tx) => {
      const inserted = await this.links.insert(tx, {
        id: randomUUID(),
        token_sha256: tokenHash(token),
        target_type:
          b.itemId !== undefined ? 'item' : b.segmentId !== undefined ? 'segment' : 'bundle',
        item_id: itemId,
        segment_id: b.segmentId ?? null,
        bundle_id: b.bundleId ?? null,
        complaint_id: complaintId,
        note: b.note ?? null,
        created_by_key_id: actor.keyId,
        created_at: now,
        expires_at: new Date(now.getTime() + b.expiresInDays * DAY_MS),
      });
      await this.audit.append(tx, [
        {
          action: 'share_link.create',
          actor,
          itemIds: itemId ? [itemId] : [],
          complaintId,
          details: {
            shareLinkId: inserted.id,
            ...targetOf(inserted),
            expiresAt: iso(inserted.expires_at),
          },
        },
      ]);
      return inserted;
    });
    return { link: this.view(row, now), token, url: `${this.opts.publicUrl ?? ''}/s/${token}` };
  }

  async list(actor: RequestActor, q: ListShareLinksQuery): Promise<ShareLinkView[]> {
    if (q.itemId && !isItemId(q.itemId)) return [];
    const rows = await this.links.list(
      this.db,
      { complaintId: q.complaintId, itemId: q.itemId },
      LIST_LIMIT,
    );
    await this.audit.recordRead({
      action: 'custody.read',
      actor,
      complaintId: q.complaintId ?? null,
      details: { shareLinks: rows.length, ...q },
    });
    const now = this.opts.now?.() ?? new Date();
    return rows.map((r) => this.view(r, now));
  }

  async get(id: string): Promise<ShareLinkView> {
    return this.view(await this.find(id), this.opts.now?.() ?? new Date());
  }

  /** Revokes a link at once; revoking a revoked link answers with it as it is. */
  async revoke(actor: RequestActor, id: string): Promise<ShareLinkView> {
    const row = await this.find(id);
    const now = this.opts.now?.() ?? new Date();
    if (row.revoked_at) return this.view(row, now);
    const updated = await this.db.transaction().execute(async (tx) => {
      const r = await this.links.revoke(tx, row.id, now, actor.keyId);
      await this.audit.append(tx, [
        {
          action: 'share_link.revoke',
          actor,
          itemIds: r.item_id ? [r.item_id] : [],
          complaintId: r.complaint_id,
          details: { shareLinkId: r.id, ...targetOf(r) },
        },
      ]);
      return r;
    });
    return this.view(updated, now);
  }

  /**
   * The link a token opens, for the public route: 404 for a token nobody was given, 410 once it
   * expired or was revoked. The returned actor is the link itself, with the client's address.
   */
  async resolve(
    token: string,
    request: { requestId?: string; clientIp?: string },
  ): Promise<{ link: ShareLinkRow; actor: Actor; content: SharedContent }> {
    if (!SHARE_TOKEN.test(token)) throw unknownLink();
    const link = await this.links.findByTokenHash(this.db, tokenHash(token));
    if (!link) throw unknownLink();
    const now = this.opts.now?.() ?? new Date();
    if (link.revoked_at) {
      throw new AppError('share_link_revoked', 'This link was revoked by the shop.', {
        shareLinkId: link.id,
      });
    }
    if (new Date(link.expires_at) <= now) {
      throw new AppError('share_link_expired', `This link expired on ${iso(link.expires_at)}.`, {
        shareLinkId: link.id,
      });
    }
    const actor: Actor = {
      keyId: null,
      role: 'share_link',
      name: `share link ${link.id}`,
      requestId: request.requestId,
      clientIp: request.clientIp,
    };
    try {
      return { link, actor, content: await this.contentOf(link) };
    } catch (err) {
      // The refusal's record names the link (the route keeps this out of the answer).
      if (err instanceof AppError) {
        throw new AppError(err.code, err.message, { ...err.extra, shareLinkId: link.id });
      }
      throw err;
    }
  }

  /**
   * Opens an item's or a cut's bytes for a link, recording the use (with the client's address)
   * before a byte leaves. Every use is recorded, whatever AUDIT_READS says.
   */
  async open(
    link: ShareLinkRow,
    actor: Actor,
    content: Exclude<SharedContent, { type: 'bundle' }>,
    range: ByteRange | undefined,
    details: Record<string, unknown>,
  ): Promise<Readable> {
    const [key, size, what] =
      content.type === 'item'
        ? [content.item.blob_key, content.item.size_bytes, `bytes of item ${content.item.id}`]
        : [content.cut.blobKey, content.cut.size, `bytes of segment ${content.segment.id}`];
    const opened = new Date();
    const body = await openRecorded(
      () => openStored(this.store, key, size, range, what),
      () => this.recordUse(link, actor, details),
    );
    return content.type === 'item'
      ? checkedRead(
          body,
          content.item,
          range,
          { actor, via: 'share_link', opened },
          this.opts.damage,
        )
      : body;
  }

  /** A use that sends no bytes (HEAD, 304) or whose bytes another service sends (a bundle). */
  async recordUse(
    link: ShareLinkRow,
    actor: Actor,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.audit.record({
      action: 'share_link.use',
      actor,
      itemIds: link.item_id ? [link.item_id] : [],
      complaintId: link.complaint_id,
      details: { shareLinkId: link.id, ...targetOf(link), ...details },
    });
    await this.links.countUse(this.db, link.id, new Date());
  }

  private async contentOf(link: ShareLinkRow): Promise<SharedContent> {
    if (link.target_type === 'bundle') return { type: 'bundle', bundleId: link.bundle_id! };
    const item = await this.evidence.findById(this.db, link.item_id!);
    if (!item || item.deleted_at) {
      throw new AppError('evidence_deleted', 'The evidence this link pointed at was deleted.');
    }
    if (item.damaged_at) {
      // Neither the bytes nor a cut made from them are passed off as the evidence.
      throw new AppError(
        'evidence_damaged',
        'The stored copy of the evidence this link points at is damaged, so it is not served. The shop has been told.',
        { itemId: item.id },
      );
    }
    assertNotSuspect(item, this.opts.damage);
    if (link.target_type === 'item') return { type: 'item', item };
    const segment = await this.segments.find(this.db, link.segment_id!);
    const cut = segment && (await this.segments.findCut(this.db, segment.id));
    if (!segment || !cut || cut.status !== 'ready' || !cut.sha256 || !cut.blob_key) {
      throw new AppError(
        'derivative_not_ready',
        'The cut of this segment is not ready yet; try again later.',
        {
          derivativeStatus: cut?.status === 'failed' ? 'failed' : 'pending',
        },
      );
    }
    return {
      type: 'segment',
      item,
      segment,
      cut: {
        sha256: cut.sha256,
        blobKey: cut.blob_key,
        size: cut.size_bytes ?? 0,
        contentType: cut.content_type ?? 'application/octet-stream',
      },
    };
  }

  private async liveItem(id: string): Promise<EvidenceRow> {
    const row = isItemId(id) ? await this.evidence.findById(this.db, id) : undefined;
    if (!row) throw noSuchItem(id);
    if (row.deleted_at)
      throw new AppError('evidence_deleted', `Item ${row.id} was deleted; it cannot be shared.`);
    return row;
  }

  private async find(id: string): Promise<ShareLinkRow> {
    const row = isItemId(id) ? await this.links.find(this.db, id) : undefined;
    if (!row) throw new AppError('not_found', `No share link ${JSON.stringify(id.slice(0, 64))}.`);
    return row;
  }

  private view(r: ShareLinkRow, now: Date): ShareLinkView {
    return {
      id: r.id,
      target: {
        type: r.target_type,
        itemId: r.item_id,
        segmentId: r.segment_id,
        bundleId: r.bundle_id,
      },
      complaintId: r.complaint_id,
      note: r.note,
      createdAt: iso(r.created_at),
      createdBy: r.created_by_key_id,
      expiresAt: iso(r.expires_at),
      revokedAt: r.revoked_at ? iso(r.revoked_at) : null,
      status: r.revoked_at ? 'revoked' : new Date(r.expires_at) <= now ? 'expired' : 'active',
      useCount: r.use_count,
      lastUsedAt: r.last_used_at ? iso(r.last_used_at) : null,
    };
  }
}

const unknownLink = () => new AppError('not_found', 'No such link.');

function targetOf(r: ShareLinkRow): Record<string, unknown> {
  return {
    target: r.target_type,
    ...(r.item_id ? { itemId: r.item_id } : {}),
    ...(r.segment_id ? { segmentId: r.segment_id } : {}),
    ...(r.bundle_id ? { bundleId: r.bundle_id } : {}),
  };
}
