import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { can } from '../access/roles';
import type { AuditLog } from '../base/audit.service';
import type { Db, Tx } from '../db/database';
import { AppError } from '../base/errors';
import type { BlobStore, ByteRange } from '../storage/blob-store';
import type { EvidenceRepository, EvidenceRow } from './evidence.repository';
import { openRecorded, openStored, type EvidenceService } from './evidence.service';
import { isItemId } from '../base/item-id';
import type {
  NewSegment,
  SegmentCutRow,
  SegmentRepository,
  SegmentRow,
} from './segment.repository';
import { toSegmentView, type SegmentView } from './segments';
import type { RequestActor } from '../base/actor';
import type { ArchiveListener } from './archive-listener';

export interface SegmentServiceDeps {
  db: Db;
  repo: SegmentRepository;
  evidence: EvidenceService;
  evidenceRepo: EvidenceRepository;
  store: BlobStore;
  audit: AuditLog;
  media: Pick<ArchiveListener, 'afterCommit'> & {
    reopen(tx: Tx, itemId: string): Promise<void>;
  };
}

/**
 * Per-order segments of long recordings: added at upload or later, listed with the item and in
 * lookups by order, and served as cuts (made by the media pipeline) audited like the original.
 */
export class SegmentService {
  private readonly db: Db;
  private readonly repo: SegmentRepository;
  private readonly evidence: EvidenceService;
  private readonly evidenceRepo: EvidenceRepository;
  private readonly store: BlobStore;
  private readonly audit: AuditLog;
  private readonly media: Pick<ArchiveListener, 'afterCommit'> & {
    reopen(tx: Tx, itemId: string): Promise<void>;
  };

  constructor(deps: SegmentServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.evidence = deps.evidence;
    this.evidenceRepo = deps.evidenceRepo;
    this.store = deps.store;
    this.audit = deps.audit;
    this.media = deps.media;
  }

  async forItem(itemId: string): Promise<SegmentView[]> {
    return (await this.repo.listForItem(this.db, itemId)).map(toSegmentView);
  }

  /**
   * A station adds its scan events after the upload (its own uploads only), or support does.
   * `segments` as the route parsed them (parseSegmentsBody).
   */
  async add(actor: RequestActor, id: string, segments: NewSegment[]): Promise<SegmentView[]> {
    if (!can(actor.role, 'evidence:link') && !can(actor.role, 'evidence:create')) {
      throw new AppError('forbidden', `The "${actor.role}" role may not add segments.`);
    }
    const row = await this.evidence.getLiveRow(actor, id);
    if (row.kind === 'photo') {
      throw new AppError('validation_failed', 'A photo has no segments.', { field: 'segments' });
    }
    await this.db.transaction().execute(async (tx) => {
      const orders = [...new Set(segments.map((s) => s.orderId))];
      await this.evidenceRepo.addLinks(
        tx,
        row.id,
        orders.map((ref) => ({ type: 'order' as const, ref })),
        actor.keyId,
      );
      await this.repo.insert(
        tx,
        segments.map((s) => ({ ...s, id: randomUUID(), itemId: row.id, keyId: actor.keyId })),
      );
      await this.media.reopen(tx, row.id);
      await this.audit.append(tx, [
        { action: 'evidence.link', actor, itemIds: [row.id], details: { segments } },
      ]);
    });
    this.media.afterCommit(row.id); // cut the new segments
    return this.forItem(row.id);
  }

  /** The item, one of its segments, and that segment's ready cut; or a 404 that says why not. */
  async findCut(
    actor: RequestActor,
    id: string,
    segmentId: string,
  ): Promise<{
    item: EvidenceRow;
    segment: SegmentRow;
    cut: SegmentCutRow & { sha256: string; blob_key: string };
  }> {
    const item = await this.evidence.getContentRow(actor, id);
    const segment = isItemId(segmentId) ? await this.repo.find(this.db, segmentId) : undefined;
    if (!segment || segment.item_id !== item.id) {
      throw new AppError(
        'not_found',
        `Item ${item.id} has no segment ${JSON.stringify(segmentId.slice(0, 64))}.`,
      );
    }
    const cut = await this.repo.findCut(this.db, segment.id);
    if (!cut || cut.status !== 'ready' || !cut.sha256 || !cut.blob_key) {
      const status = cut?.status === 'failed' ? 'failed' : 'pending';
      throw new AppError(
        'derivative_not_ready',
        `The cut of segment ${segment.id} is ${status}${cut?.detail ? `: ${cut.detail}` : ''}.`,
        { derivativeStatus: status },
      );
    }
    return { item, segment, cut: cut as SegmentCutRow & { sha256: string; blob_key: string } };
  }

  async openCut(
    actor: RequestActor,
    found: Awaited<ReturnType<SegmentService['findCut']>>,
    range: ByteRange | undefined,
    details: Record<string, unknown>,
  ): Promise<Readable> {
    const { item, segment, cut } = found;
    return openRecorded(
      () =>
        openStored(
          this.store,
          cut.blob_key,
          cut.size_bytes ?? 0,
          range,
          `bytes of segment ${segment.id} of item ${item.id}`,
        ),
      () => this.checkCut(actor, found, details),
    );
  }

  async checkCut(
    actor: RequestActor,
    { item, segment, cut }: Awaited<ReturnType<SegmentService['findCut']>>,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.audit.recordRead({
      action: 'derivative.download',
      actor,
      itemIds: [item.id],
      details: {
        ...details,
        derivative: 'segment',
        segmentId: segment.id,
        orderId: segment.order_id,
        startSec: Number(segment.start_sec),
        endSec: Number(segment.end_sec),
        sha256: cut.sha256,
        sourceSha256: cut.source_sha256,
      },
    });
  }
}
