import type { Readable } from 'node:stream';
import type { DerivativeKind, Db } from '../db/database';
import type { AuditLog } from '../base/audit.service';
import { AppError } from '../base/errors';
import { openRecorded, openStored, type EvidenceService } from '../evidence/evidence.service';
import type { EvidenceRow } from '../evidence/evidence.repository';
import type { BlobStore, ByteRange } from '../storage/blob-store';
import type { DerivativeRepository, DerivativeRow, ItemMediaRow } from './derivative.repository';
import { DERIVATIVE_KINDS } from './media-plan';
import type { RequestActor } from '../base/actor';
import type {
  DerivativeList,
  MediaProbe,
  DerivativeState,
  DerivativeView,
} from '../contract/media.contract';

export type { DerivativeState, DerivativeView };

export interface MediaSummary {
  status: ItemMediaRow['status'];
  detail: string | null;
  updatedAt: string;
  probe: unknown;
  derivativesUrl: string;
}

/** URL path segment of each derivative. */
export const DERIVATIVE_PATHS: Record<DerivativeKind, string> = {
  poster: 'poster',
  thumbnail: 'thumbnail',
  contact_sheet: 'contact-sheet',
  waveform: 'waveform',
  preview: 'preview',
};

const EXTENSIONS: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'video/mp4': 'mp4',
  'audio/mp4': 'm4a',
};

export interface DerivativeServiceDeps {
  db: Db;
  repo: DerivativeRepository;
  evidence: EvidenceService;
  store: BlobStore;
  audit: AuditLog;
  /** Queues the item's media job (any instance with workers runs it). */
  schedule: (itemId: string) => void;
}

/**
 * Derivatives as support staff see them: listed with their status, served from the store, each
 * read recorded in the custody trail like a read of the original. The rules of the original
 * apply (a deleted item's derivatives are gone with it; an ingest key reads none).
 */
export class DerivativeService {
  private readonly db: Db;
  private readonly repo: DerivativeRepository;
  private readonly evidence: EvidenceService;
  private readonly store: BlobStore;
  private readonly audit: AuditLog;
  private readonly schedule: (itemId: string) => void;

  constructor(deps: DerivativeServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.evidence = deps.evidence;
    this.store = deps.store;
    this.audit = deps.audit;
    this.schedule = deps.schedule;
  }

  /**
   * Processes an item again: derivatives whose stored bytes are missing or damaged are made anew,
   * failed ones are tried again (after ffmpeg was installed, say); ready ones are kept.
   */
  async rebuild(actor: RequestActor, id: string) {
    const item = await this.evidence.getContentRow(actor, id);
    const at = new Date();
    const repaired: DerivativeKind[] = [];
    for (const d of await this.repo.listDerivatives(this.db, item.id)) {
      if (d.status !== 'ready' || !d.blob_key) continue;
      if ((await this.store.stat(d.blob_key)) !== d.size_bytes) {
        await this.repo.markBroken(
          this.db,
          item.id,
          d.kind,
          'stored bytes missing or damaged; rebuilding',
          at,
        );
        repaired.push(d.kind);
      }
    }
    await this.repo.reopenAll(this.db, item.id, at);
    await this.audit.record({
      action: 'media.derive',
      actor,
      itemIds: [item.id],
      details: { requested: 'rebuild', repaired },
    });
    this.schedule(item.id);
    return { itemId: item.id, status: 'queued' as const, repaired };
  }

  async summary(itemId: string): Promise<MediaSummary | null> {
    const media = await this.repo.findMedia(this.db, itemId);
    return media
      ? { ...mediaView(media), derivativesUrl: `/v1/evidence/${itemId}/derivatives` }
      : null;
  }

  async list(actor: RequestActor, id: string): Promise<DerivativeList> {
    // What was made, and its state, even for a damaged item (whose derivatives are not served).
    const row = await this.evidence.getLiveRow(actor, id);
    const [media, rows] = await Promise.all([
      this.repo.findMedia(this.db, row.id),
      this.repo.listDerivatives(this.db, row.id),
    ]);
    const derivatives = DERIVATIVE_KINDS[row.kind].map((kind) =>
      view(
        row.id,
        kind,
        media,
        rows.find((r) => r.kind === kind),
      ),
    );
    await this.audit.recordRead({
      action: 'evidence.view',
      actor,
      itemIds: [row.id],
      details: { derivatives: true },
    });
    const preview = derivatives.find((d) => d.kind === 'preview');
    return {
      itemId: row.id,
      sourceSha256: row.sha256,
      media: media ? mediaView(media) : null,
      derivatives,
      // What a player should load: the preview, or the original where it plays as it is.
      playback:
        preview?.status === 'ready'
          ? // A ready derivative always has its content type.
            { source: 'preview', url: preview.url, contentType: preview.contentType! }
          : preview?.status === 'not_applicable'
            ? {
                source: 'original',
                url: `/v1/evidence/${row.id}/content`,
                contentType: row.content_type,
              }
            : null,
    };
  }

  /** The evidence row and its ready derivative of this kind, or a 404 that says why not. */
  async find(
    actor: RequestActor,
    id: string,
    kind: DerivativeKind,
  ): Promise<{
    item: EvidenceRow;
    derivative: DerivativeRow & { sha256: string; blob_key: string };
  }> {
    const item = await this.evidence.getContentRow(actor, id);
    // A clip's thumbnail is its poster frame.
    if (kind === 'thumbnail' && item.kind === 'packing_video') kind = 'poster';
    if (!DERIVATIVE_KINDS[item.kind].includes(kind)) {
      throw new AppError(
        'derivative_not_applicable',
        `A ${item.kind.replace('_', ' ')} has no ${kind.replace('_', ' ')}; it has: ${DERIVATIVE_KINDS[item.kind].join(', ')}.`,
      );
    }
    const [media, d] = await Promise.all([
      this.repo.findMedia(this.db, item.id),
      this.repo.findDerivative(this.db, item.id, kind),
    ]);
    const v = view(item.id, kind, media, d);
    if (v.status === 'not_applicable') {
      throw new AppError(
        'derivative_not_applicable',
        `No ${kind} for item ${item.id}: ${v.detail}.`,
        {
          contentUrl: `/v1/evidence/${item.id}/content`,
        },
      );
    }
    if (!d || d.status !== 'ready' || !d.sha256 || !d.blob_key) {
      throw new AppError(
        'derivative_not_ready',
        `The ${kind.replace('_', ' ')} of item ${item.id} is ${v.status.replace('_', ' ')}${v.detail ? `: ${v.detail}` : ''}.`,
        { derivativeStatus: v.status },
      );
    }
    return { item, derivative: d as DerivativeRow & { sha256: string; blob_key: string } };
  }

  filename(item: EvidenceRow, d: DerivativeRow): string {
    const base = (item.original_filename ?? item.id).replace(/\.[A-Za-z0-9]{1,5}$/, '');
    return `${base}.${DERIVATIVE_PATHS[d.kind]}.${EXTENSIONS[d.content_type ?? ''] ?? 'bin'}`;
  }

  async open(
    actor: RequestActor,
    item: EvidenceRow,
    d: DerivativeRow & { sha256: string; blob_key: string },
    range: ByteRange | undefined,
    details: Record<string, unknown>,
  ): Promise<Readable> {
    return openRecorded(
      () =>
        openStored(
          this.store,
          d.blob_key,
          d.size_bytes ?? 0,
          range,
          `bytes of the ${d.kind.replace('_', ' ')} of item ${item.id}`,
        ),
      () => this.check(actor, item, d, details),
    );
  }

  async check(
    actor: RequestActor,
    item: EvidenceRow,
    d: DerivativeRow,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.audit.recordRead({
      action: 'derivative.download',
      actor,
      itemIds: [item.id],
      details: { ...details, derivative: d.kind, sha256: d.sha256, sourceSha256: d.source_sha256 },
    });
  }
}

function mediaView(media: ItemMediaRow) {
  return {
    status: media.status,
    detail: media.detail,
    updatedAt: new Date(media.updated_at).toISOString(),
    // What the prober read, stored as it produced it (a MediaProbe).
    probe: media.probe as MediaProbe | null,
  };
}

function view(
  itemId: string,
  kind: DerivativeKind,
  media: ItemMediaRow | undefined,
  d: DerivativeRow | undefined,
): DerivativeView {
  const url = `/v1/evidence/${itemId}/${DERIVATIVE_PATHS[kind]}`;
  if (d && d.status !== 'purged') {
    return {
      kind,
      status: d.status,
      detail: d.detail,
      url,
      contentType: d.content_type,
      size: d.size_bytes,
      sha256: d.sha256,
      width: d.width,
      height: d.height,
      createdAt: new Date(d.updated_at).toISOString(),
    };
  }
  // Not made (yet): the item's processing state says why.
  const implied: Record<ItemMediaRow['status'], DerivativeState> = {
    pending: 'pending',
    processing: 'processing',
    unavailable: 'unavailable',
    failed: 'failed',
    partial: 'failed',
    done: 'pending',
  };
  const status = media ? implied[media.status] : 'pending';
  return {
    kind,
    status,
    detail: status === 'pending' ? null : (media?.detail ?? null),
    url,
    contentType: null,
    size: null,
    sha256: null,
    width: null,
    height: null,
    createdAt: null,
  };
}
