import { randomUUID } from 'node:crypto';
import { pipeline, Readable } from 'node:stream';
import { can } from '../access/roles';
import { ROLES } from '../base/actor';
import type { ComplaintRepository } from '../complaints/complaint.repository';
import type { AuditRepository } from '../base/audit.repository';
import { toAuditView, type AuditLog } from '../base/audit.service';
import type { CheckpointService, SignedCheckpoint } from '../custody/checkpoint.service';
import type { SigningKey } from '../custody/signing-key';
import type { CheckpointTimestamps } from '../custody/checkpoint-timestamps';
import { tokenCertificatesPem, type Timestamp } from '../custody/timestamp-authority';
import type { Db, Role } from '../db/database';
import { AppError } from '../base/errors';
import type { EvidenceRepository } from '../evidence/evidence.repository';
import { openStored, type ReadMismatchRecorder } from '../evidence/evidence.service';
import { verifyingStream } from '../evidence/verified-read';
import { isItemId } from '../base/item-id';
import type { SegmentRepository, SegmentRow } from '../evidence/segment.repository';
import type { Logger } from '../base/logger';
import { blobKeyFor, type BlobStore, type ByteRange } from '../storage/blob-store';
import { CERTIFICATE, sha256Hex, type BundleManifest } from './bundle-format';
import {
  manifestTextOf,
  planCertifiedBundle,
  type BundleTimestamp,
  smallFile,
  zipLayout,
  type BundleSelection,
  type ReadyCut,
} from './bundle-plan';
import type { CertificatePreview } from './certificate';
import type { DerivativeRepository } from '../media/derivative.repository';
import type { BundleRepository, BundleRow } from './bundle.repository';
import { buildZip, sliceStream } from './bundle-zip';
import type { Actor, RequestActor } from '../base/actor';

import { MAX_BUNDLE_FILES, type BundleBody, type BundleView } from '../contract/bundles.contract';

export { MAX_BUNDLE_FILES };
export type { BundleView };

export interface OpenedBundle {
  filename: string;
  size: number;
  etag: string;
  body: Readable;
}

/** A bundle checked and ready to be served whole, in part, or answered for without bytes. */
export interface PreparedBundle {
  filename: string;
  size: number;
  etag: string;
  lastModified: Date;
  /**
   * Records the download, then streams the ZIP's bytes (of `range` only, when given). `signal`
   * (the client went away) stops the ZIP build while it reads towards a range's start.
   */
  open(
    range: ByteRange | undefined,
    details: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<Readable>;
  /** Records a HEAD or a 304. */
  check(details: Record<string, unknown>): Promise<void>;
}

/** A bundle's certificate.pdf, checked and ready to be served (see BundleService.certificate). */
export interface PreparedCertificate {
  filename: string;
  size: number;
  etag: string;
  lastModified: Date;
  open(range: ByteRange | undefined, details: Record<string, unknown>): Promise<Readable>;
  check(details: Record<string, unknown>): Promise<void>;
}

/** Whoever opens a bundle through a share link rather than with a key of a role. */
export interface ShareVia {
  shareLinkId: string;
  clientAddress?: string;
}

/** What the media pipeline offers: making a segment's cut when a bundle asks for it. */
export interface CutMaker {
  readonly ffmpegAvailable: boolean;
  readonly toolsProblem: string | undefined;
  process(itemId: string): Promise<unknown>;
}

const iso = (d: Date | string) => new Date(d).toISOString();

export interface BundleServiceDeps {
  db: Db;
  repo: BundleRepository;
  evidenceRepo: EvidenceRepository;
  complaints: ComplaintRepository;
  segments: SegmentRepository;
  store: BlobStore;
  audit: AuditLog;
  auditRepo: AuditRepository;
  checkpoints: CheckpointService;
  key: SigningKey;
  media: CutMaker;
  logger: Logger;
  /** An original whose bytes hash wrong as the bundle streams marks its item damaged. */
  damage?: ReadMismatchRecorder;
  /**
   * The timestamp authorities (their client) and the checkpoints' tokens; absent or without a TSA:
   * bundles say they carry no third-party time.
   */
  timestamps?: CheckpointTimestamps;
  /** Where the certificate's preview images are found (absent: every file says "no preview"). */
  derivatives?: Pick<DerivativeRepository, 'findDerivative'>;
}

/** The preview the certificate shows for each kind of evidence. */
const PREVIEW_OF: Record<string, CertificatePreview['kind']> = {
  packing_video: 'poster',
  call_recording: 'waveform',
  photo: 'thumbnail',
};
/** A preview image bigger than this is not put in the certificate (they are a few KiB). */
const MAX_PREVIEW_BYTES = 4 << 20;

/**
 * Dispute bundles: a complaint's evidence (originals, or per-order cuts of long recordings) in one
 * ZIP with a manifest signed by the archive's Ed25519 key, the items' audit excerpt up to a signed
 * checkpoint, and instructions a third party follows with sha256sum and openssl. What is not
 * evidence bytes is written once, at creation, so every download is the same bytes.
 */
export class BundleService {
  private readonly db: Db;
  private readonly repo: BundleRepository;
  private readonly evidenceRepo: EvidenceRepository;
  private readonly complaints: ComplaintRepository;
  private readonly segments: SegmentRepository;
  private readonly store: BlobStore;
  private readonly audit: AuditLog;
  private readonly auditRepo: AuditRepository;
  private readonly checkpoints: CheckpointService;
  private readonly key: SigningKey;
  private readonly media: CutMaker;
  private readonly logger: Logger;
  private readonly damage?: ReadMismatchRecorder;
  private readonly derivatives?: Pick<DerivativeRepository, 'findDerivative'>;
  private readonly timestamps?: CheckpointTimestamps;

  constructor(deps: BundleServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.evidenceRepo = deps.evidenceRepo;
    this.complaints = deps.complaints;
    this.segments = deps.segments;
    this.store = deps.store;
    this.audit = deps.audit;
    this.auditRepo = deps.auditRepo;
    this.checkpoints = deps.checkpoints;
    this.key = deps.key;
    this.media = deps.media;
    this.logger = deps.logger;
    this.damage = deps.damage;
    this.derivatives = deps.derivatives;
    this.timestamps = deps.timestamps;
  }

  /** `complaintId` and `b` as `complaintIdParam` and `bundleBody` parse them. */
  async create(actor: RequestActor, complaintId: string, b: BundleBody): Promise<BundleView> {
    assertMay(actor, 'bundle:create');
    const itemIds = unique((b.itemIds ?? []).map((i) => i.toLowerCase()));
    const segmentIds = unique((b.segmentIds ?? []).map((i) => i.toLowerCase()));
    const complaint = await this.complaints.find(this.db, complaintId);
    const linked = await this.evidenceRepo.listByLink(
      this.db,
      'complaint',
      complaintId,
      MAX_BUNDLE_FILES + 1,
    );
    if (!complaint && linked.length === 0) {
      throw new AppError('not_found', `No complaint with id ${JSON.stringify(complaintId)}.`);
    }

    const allLinked = itemIds.length === 0 && segmentIds.length === 0;
    let selected: BundleSelection[];
    const omitted: BundleManifest['omitted'] = [];
    if (allLinked) {
      if (linked.length > MAX_BUNDLE_FILES) {
        throw new AppError(
          'validation_failed',
          `Complaint ${complaintId} has more than ${MAX_BUNDLE_FILES} linked items; select the ones to bundle with "itemIds".`,
          { field: 'itemIds' },
        );
      }
      for (const r of linked.filter((r) => r.deleted_at)) {
        omitted.push({ itemId: r.id, reason: 'deleted', deletedAt: iso(r.deleted_at!) });
      }
      selected = linked.filter((r) => !r.deleted_at).map((item) => ({ item }));
      if (selected.length === 0) {
        throw new AppError(
          'bundle_empty',
          linked.length === 0
            ? `No evidence is linked to complaint ${complaintId}; link some, or select items.`
            : `Every item linked to complaint ${complaintId} was deleted; there is nothing to bundle.`,
        );
      }
    } else {
      if (itemIds.length + segmentIds.length > MAX_BUNDLE_FILES) {
        throw new AppError('validation_failed', `Select at most ${MAX_BUNDLE_FILES} files.`, {
          field: 'itemIds',
        });
      }
      selected = await this.resolveSelection(complaintId, complaint?.order_ids ?? [], {
        itemIds,
        segmentIds,
      });
    }

    // Bytes known to be damaged are never put in a bundle as the evidence.
    const damaged = unique(selected.filter((s) => s.item.damaged_at).map((s) => s.item.id));
    if (damaged.length > 0) throw damagedInBundle(damaged, 'cannot be bundled');

    // Every event so far is signed, so the excerpt ends at a head a third party can rely on.
    const checkpoint = await this.signedHead();
    const excerpt = await this.auditExcerpt(
      unique(selected.map((s) => s.item.id)),
      complaintId,
      checkpoint.checkpoint.seq,
    );

    const id = randomUUID();
    const createdAt = new Date();
    const previews = await this.previews(unique(selected.map((s) => s.item.id)), selected);
    const input = {
      bundleId: id,
      createdAt,
      createdBy: { keyId: actor.keyId, role: actor.role, name: actor.name },
      complaintId,
      complaint,
      selection: {
        mode: allLinked ? ('all_linked' as const) : ('selected' as const),
        itemIds,
        segmentIds,
      },
      omitted,
      files: selected,
      checkpoint,
      excerpt,
      signer: this.key,
    };
    const timestamp = await this.stampBundle(
      manifestTextOf(input),
      checkpoint.checkpoint.seq,
      new Date(createdAt),
    );
    const plan = await planCertifiedBundle(
      { ...input, timestamp },
      {
        previews,
        ...(timestamp
          ? { timestamp: { authority: timestamp.authority, time: timestamp.genTime } }
          : {}),
      },
    );
    const { manifestText, manifestSha256, texts, entries, totalBytes, zipBytes } = plan;
    const { files } = plan.manifest;
    const involved = plan.itemIds;

    const row = {
      id,
      complaint_id: complaintId,
      created_at: createdAt,
      created_by_key_id: actor.keyId,
      created_by_role: actor.role,
      created_by_name: actor.name,
      item_ids: involved,
      file_count: files.length,
      total_bytes: totalBytes,
      zip_bytes: zipBytes,
      manifest: manifestText,
      manifest_sha256: manifestSha256,
      key_fingerprint: this.key.fingerprint,
      checkpoint_seq: checkpoint.checkpoint.seq,
    };
    await this.db.transaction().execute(async (tx) => {
      await this.repo.insert(tx, {
        ...row,
        texts: JSON.stringify(texts),
        entries: JSON.stringify(entries),
      });
      await this.audit.append(tx, [
        {
          action: 'bundle.create',
          actor,
          itemIds: involved,
          complaintId,
          details: {
            bundleId: id,
            fileCount: files.length,
            totalBytes,
            zipBytes,
            manifestSha256,
            checkpointSeq: checkpoint.checkpoint.seq,
            files: files.map((f) => ({
              path: f.path,
              itemId: f.itemId,
              sha256: f.sha256,
              ...(f.segment ? { segmentId: f.segment.segmentId } : {}),
            })),
          },
        },
      ]);
    });
    return toBundleView({ ...row, texts: {}, entries: [] } as unknown as BundleRow);
  }

  /** The bundles made for a complaint, newest first (at most 200). */
  async listForComplaint(actor: RequestActor, complaintId: string): Promise<BundleView[]> {
    assertMay(actor, 'bundle:read');
    return (await this.repo.listForComplaint(this.db, complaintId, 200)).map(toBundleView);
  }

  async get(actor: RequestActor, id: string): Promise<BundleView> {
    assertMay(actor, 'bundle:read');
    return toBundleView(await this.find(id));
  }

  /**
   * The bundle's ZIP, as a stream of exactly `size` bytes: prepare() and open the whole.
   */
  async open(
    actor: RequestActor | Actor,
    id: string,
    via?: ShareVia,
    details: Record<string, unknown> = {},
  ): Promise<OpenedBundle> {
    const prepared = await this.prepare(actor, id, via);
    const body = await prepared.open(undefined, details);
    return { filename: prepared.filename, size: prepared.size, etag: prepared.etag, body };
  }

  /**
   * A bundle that may be served, with what a download needs: its size, strong ETag (the
   * manifest's SHA-256: the ZIP's bytes follow from the stored manifest, texts and entries) and
   * Last-Modified. Fails before any byte (and before a 304 or a HEAD answers) when an item was
   * deleted since, is known to be damaged, or its stored bytes are missing. Every download,
   * `open` of a range or of the whole, HEAD or 304 (`check`), is recorded (`bundle.download`,
   * with the share link when `via` is given) before anything is answered.
   * `actor` is a key's holder (checked for `bundle:read`) or, for a share link, whoever the link
   * stands for (the caller has checked the link).
   */
  async prepare(actor: RequestActor | Actor, id: string, via?: ShareVia): Promise<PreparedBundle> {
    if (ROLES.includes(actor.role as Role)) assertMay(actor as RequestActor, 'bundle:read');
    const row = await this.find(id);
    const deleted = await this.repo.deletedAmong(this.db, row.item_ids);
    if (deleted.length > 0) {
      throw new AppError(
        'evidence_deleted',
        `Item ${deleted[0]!.id} of bundle ${row.id} was deleted on ${deleted[0]!.deleted_at.toISOString()}; the bundle can no longer be downloaded whole (its record and custody history remain).`,
        { itemIds: deleted.map((d) => d.id) },
      );
    }
    const damaged = await this.evidenceRepo.damagedAmong(this.db, row.item_ids);
    if (damaged.length > 0)
      throw damagedInBundle(damaged, `are in bundle ${row.id}, so it is not served`);
    // Every stored file is there, whole, before the first byte leaves.
    for (const e of row.entries) {
      const size = await this.store.stat(e.blobKey);
      if (size !== e.size) {
        const unavailable = new AppError(
          'evidence_unavailable',
          `The stored bytes of ${e.path} in bundle ${row.id} are missing or damaged, so the bundle is not served. This has been logged for an administrator.`,
        );
        unavailable.cause = new Error(
          `blob ${e.blobKey}: size ${size ?? 'missing'}, expected ${e.size}`,
        );
        throw unavailable;
      }
    }
    const record = this.downloadRecorder(actor, row, {
      zipBytes: row.zip_bytes,
      ...(via
        ? { via: { shareLinkId: via.shareLinkId, clientAddress: via.clientAddress ?? null } }
        : {}),
    });
    return {
      filename: `bundle-${safeName(row.complaint_id)}-${row.id}.zip`,
      size: Number(row.zip_bytes),
      etag: `"${row.manifest_sha256}"`,
      lastModified: new Date(row.created_at),
      check: record,
      open: async (range, details, signal) => {
        signal?.throwIfAborted();
        const stream = this.zipStream(row, actor);
        try {
          await record(details);
        } catch (err) {
          stream.destroy();
          throw err;
        }
        return range ? await sliceStream(stream, range.start, range.end, signal) : stream;
      },
    };
  }

  /** Records one download of a bundle (or a file of it) as `bundle.download`, before a byte is sent. */
  private downloadRecorder(
    actor: Actor | RequestActor,
    row: { id: string; item_ids: string[]; complaint_id: string; manifest_sha256: string },
    what: Record<string, unknown>,
  ) {
    return (details: Record<string, unknown>) =>
      this.audit.record({
        action: 'bundle.download',
        actor,
        itemIds: row.item_ids,
        complaintId: row.complaint_id,
        details: { ...details, bundleId: row.id, manifestSha256: row.manifest_sha256, ...what },
      });
  }

  /**
   * A bundle's certificate.pdf as it is inside the ZIP (the same bytes), with the bundle's rules:
   * `bundle:read`, not served once an item of it was deleted, and every download (HEAD and 304
   * too) recorded as `bundle.download` with `file: "certificate.pdf"` before a byte is sent. A
   * bundle made before certificates has none (404 `not_found`).
   */
  async certificate(actor: RequestActor, id: string): Promise<PreparedCertificate> {
    assertMay(actor, 'bundle:read');
    const row = await this.find(id);
    const text = row.texts[CERTIFICATE];
    if (text === undefined) {
      throw new AppError(
        'not_found',
        `Bundle ${row.id} was made before bundles carried a certificate.pdf; its ZIP and VERIFY.txt remain.`,
      );
    }
    const deleted = await this.repo.deletedAmong(this.db, row.item_ids);
    if (deleted.length > 0) {
      throw new AppError(
        'evidence_deleted',
        `Item ${deleted[0]!.id} of bundle ${row.id} was deleted on ${deleted[0]!.deleted_at.toISOString()}; the bundle's certificate is no longer served (its record and custody history remain).`,
        { itemIds: deleted.map((d) => d.id) },
      );
    }
    const pdf = smallFile(CERTIFICATE, text);
    const record = this.downloadRecorder(actor, row, { file: CERTIFICATE, bytes: pdf.length });
    return {
      filename: `certificate-${safeName(row.complaint_id)}-${row.id}.pdf`,
      size: pdf.length,
      etag: `"${sha256Hex(pdf)}"`,
      lastModified: new Date(row.created_at),
      check: record,
      open: async (range, details) => {
        await record(details);
        return Readable.from([range ? pdf.subarray(range.start, range.end + 1) : pdf]);
      },
    };
  }

  /**
   * Each item's preview image for the certificate (a video's poster, a recording's waveform, a
   * photo's thumbnail) when the media pipeline made it and its stored bytes hash right; none
   * otherwise. Never fails the bundle: a preview is a courtesy, the hashes are the evidence.
   */
  private async previews(
    itemIds: string[],
    selected: BundleSelection[],
  ): Promise<Record<string, CertificatePreview | undefined>> {
    const out: Record<string, CertificatePreview | undefined> = {};
    if (!this.derivatives) return out;
    for (const itemId of itemIds) {
      const item = selected.find((s) => s.item.id === itemId)!.item;
      const kind = PREVIEW_OF[item.kind];
      if (!kind) continue;
      try {
        const d = await this.derivatives.findDerivative(this.db, itemId, kind);
        const size = Number(d?.size_bytes ?? 0);
        if (d?.status !== 'ready' || !d.blob_key || !d.sha256) continue;
        if (size <= 0 || size > MAX_PREVIEW_BYTES) continue;
        const chunks: Buffer[] = [];
        for await (const c of await this.store.read(d.blob_key, size, undefined)) {
          chunks.push(c as Buffer);
        }
        const bytes = Buffer.concat(chunks);
        if (sha256Hex(bytes) === d.sha256) out[itemId] = { kind, bytes };
        else
          this.logger.warn({ itemId, kind }, 'preview does not hash right: not in the certificate');
      } catch (err) {
        this.logger.warn({ err, itemId, kind }, 'preview unreadable: not in the certificate');
      }
    }
    return out;
  }

  /**
   * The ZIP, built as it streams. The bytes of every file before a range's start are still read
   * (and hashed: damaged bytes end the download as in a whole one), only not sent: the entries'
   * CRC-32s, which the ZIP's directory at the end needs, are not stored anywhere.
   */
  private zipStream(row: BundleRow, actor: RequestActor | Actor): Readable {
    const layout = zipLayout(row.manifest, row.texts, row.entries, (e) =>
      this.openEntry(
        row.entries.find((f) => f.path === e.path)!,
        actor,
      ),
    );
    const { size, stream } = buildZip(layout, new Date(row.created_at), (err) =>
      this.logger.error({ err, bundleId: row.id }, 'bundle download failed mid-stream'),
    );
    if (size !== Number(row.zip_bytes)) {
      stream.destroy();
      throw new Error(`bundle ${row.id}: ZIP of ${size} bytes, ${row.zip_bytes} recorded`);
    }
    return stream;
  }

  private async find(id: string): Promise<BundleRow> {
    const row = isItemId(id) ? await this.repo.find(this.db, id) : undefined;
    if (!row)
      throw new AppError('not_found', `No bundle with id ${JSON.stringify(id.slice(0, 64))}.`);
    return row;
  }

  /** Selected items and segments, each checked: known, not deleted, and the complaint's. */
  private async resolveSelection(
    complaintId: string,
    complaintOrders: string[],
    sel: { itemIds: string[]; segmentIds: string[] },
  ): Promise<BundleSelection[]> {
    const unknownItems = sel.itemIds.filter((i) => !isItemId(i));
    const unknownSegments = sel.segmentIds.filter((i) => !isItemId(i));
    const segRows: SegmentRow[] = [];
    for (const sid of sel.segmentIds.filter(isItemId)) {
      const seg = await this.segments.find(this.db, sid);
      if (seg) segRows.push(seg);
      else unknownSegments.push(sid);
    }
    const wanted = unique([...sel.itemIds.filter(isItemId), ...segRows.map((s) => s.item_id)]);
    const rows = new Map(
      (await this.evidenceRepo.findByIds(this.db, wanted)).map((r) => [r.id, r]),
    );
    unknownItems.push(...sel.itemIds.filter((i) => isItemId(i) && !rows.has(i)));
    if (unknownItems.length + unknownSegments.length > 0) {
      throw new AppError(
        'bundle_unknown_items',
        `No such ${[
          unknownItems.length ? `item(s): ${unknownItems.slice(0, 10).join(', ')}` : '',
          unknownSegments.length ? `segment(s): ${unknownSegments.slice(0, 10).join(', ')}` : '',
        ]
          .filter(Boolean)
          .join('; ')}.`,
        { itemIds: unknownItems, segmentIds: unknownSegments },
      );
    }
    const all = [...rows.values()];
    const deleted = all.filter((r) => r.deleted_at);
    if (deleted.length > 0) {
      throw new AppError(
        'bundle_item_deleted',
        `Deleted evidence has no bytes to bundle: ${deleted
          .map((r) => r.id)
          .slice(0, 10)
          .join(', ')}.`,
        { itemIds: deleted.map((r) => r.id) },
      );
    }
    // The complaint's evidence: linked to it, or to one of its orders.
    const foreign = all.filter(
      (r) =>
        !r.complaint_ids.includes(complaintId) &&
        !r.order_ids.some((o) => complaintOrders.includes(o)),
    );
    // A long recording is linked to every order it shows: a segment must be one of this
    // complaint's orders, never another customer's parcel (the whole recording, when linked to
    // the complaint, can still be bundled as an item).
    for (const seg of segRows) {
      if (!complaintOrders.includes(seg.order_id)) foreign.push(rows.get(seg.item_id)!);
    }
    if (foreign.length > 0) {
      throw new AppError(
        'bundle_item_not_linked',
        `Not linked to complaint ${complaintId} or to one of its orders: ${foreign
          .map((r) => r.id)
          .slice(0, 10)
          .join(', ')}. Link them first.`,
        { itemIds: foreign.map((r) => r.id) },
      );
    }
    const selected: BundleSelection[] = sel.itemIds.map((i) => ({ item: rows.get(i)! }));
    for (const seg of segRows) {
      selected.push({
        item: rows.get(seg.item_id)!,
        segment: { row: seg, cut: await this.cutOf(seg) },
      });
    }
    return selected;
  }

  /** The segment's ready cut, made now (by the media pipeline) when it was not made yet. */
  private async cutOf(seg: SegmentRow): Promise<ReadyCut> {
    let cut = await this.segments.findCut(this.db, seg.id);
    if (!cut && this.media.ffmpegAvailable) {
      await this.media.process(seg.item_id);
      cut = await this.segments.findCut(this.db, seg.id);
    }
    if (cut?.status === 'ready' && cut.sha256 && cut.blob_key) {
      return cut as ReadyCut;
    }
    const why = !cut
      ? this.media.ffmpegAvailable
        ? 'it could not be made'
        : `it is not made yet and this instance cannot make it (${this.media.toolsProblem ?? 'ffmpeg is not available'})`
      : cut.status === 'failed'
        ? `cutting it failed: ${cut.detail ?? 'no detail'}`
        : `its cut was ${cut.status}`;
    throw new AppError(
      'segment_cut_unavailable',
      `Segment ${seg.id} (order ${seg.order_id}) cannot be bundled: ${why}.`,
      { segmentId: seg.id, cutStatus: cut?.status ?? 'pending' },
    );
  }

  /**
   * The third-party time of a new bundle: a verified token over its manifest.json and the
   * checkpoint's token when it has one. Never in the way: when every TSA fails the bundle is made
   * without (null, and it says it carries no third-party time).
   */
  private async stampBundle(
    manifestText: string,
    seq: number,
    createdAt: Date,
  ): Promise<BundleTimestamp | null> {
    const tsa = this.timestamps?.tsa;
    if (!this.timestamps || !tsa) return null;
    let stamp: Timestamp;
    try {
      // A token dated before the manifest says it was made cannot be over it (a TSA's clock off).
      stamp = await tsa.stamp(Buffer.from(manifestText, 'utf8'), { notBefore: createdAt });
    } catch (err) {
      this.logger.error(
        { err: (err as Error).message },
        'dispute bundle made without a timestamp: no timestamp authority gave a usable token',
      );
      return null;
    }
    let checkpointToken: Buffer | undefined;
    try {
      // Stamped already, or now (a TSA just answered): the checkpoint is usually brand new.
      let found = await this.timestamps.tokenFor(seq);
      if (!found) {
        await this.timestamps.stampCheckpoint(seq);
        found = await this.timestamps.tokenFor(seq);
      }
      checkpointToken = found?.token;
    } catch (err) {
      this.logger.warn({ seq, err: (err as Error).message }, 'checkpoint token not available');
    }
    return {
      manifestToken: stamp.response,
      authority: `${stamp.signer} (${stamp.authority})`,
      genTime: stamp.genTime.toISOString(),
      chainPem: tokenCertificatesPem(stamp.response),
      ...(checkpointToken ? { checkpointToken } : {}),
    };
  }

  /** Signs the chain head now (unless it is signed already) and returns the newest checkpoint. */
  private async signedHead(): Promise<SignedCheckpoint & { objectKey: string }> {
    const written = await this.checkpoints.checkpoint();
    const latest = await this.auditRepo.latestCheckpoint(this.db);
    if (!latest) throw new Error('no audit checkpoint could be signed');
    if (written && written.checkpoint.seq === latest.seq) {
      return { ...written, objectKey: latest.object_key };
    }
    const signed = await this.checkpoints.stored(latest.object_key);
    if (!signed) throw new Error(`audit checkpoint ${latest.object_key} is missing from the store`);
    return {
      checkpoint: signed.checkpoint,
      signature: signed.signature,
      objectKey: latest.object_key,
    };
  }

  private async auditExcerpt(itemIds: string[], complaintId: string, uptoSeq: number) {
    const lines: string[] = [];
    let after = 0;
    let firstSeq: number | null = null;
    let lastSeq: number | null = null;
    for (;;) {
      const rows = await this.repo.auditExcerpt(
        this.db,
        itemIds,
        complaintId,
        after,
        uptoSeq,
        5000,
      );
      for (const r of rows) {
        lines.push(`${JSON.stringify(toAuditView(r))}\n`);
        firstSeq ??= r.seq;
        lastSeq = r.seq;
      }
      if (rows.length < 5000) break;
      after = rows.at(-1)!.seq;
    }
    return { text: lines.join(''), count: lines.length, firstSeq, lastSeq };
  }

  /**
   * A file's bytes, hashed as they stream into the ZIP: bytes that do not hash to the manifest's
   * SHA-256 end the download before that file is complete, and mark an original's item damaged.
   */
  private async openEntry(
    e: { path: string; blobKey: string; size: number; sha256: string },
    actor: Actor,
  ): Promise<Readable> {
    const started = new Date();
    const body = await openStored(this.store, e.blobKey, e.size, undefined, `bytes of ${e.path}`);
    return pipeline(
      body,
      verifyingStream(e.sha256, async (computed) => {
        if (e.blobKey !== blobKeyFor(e.sha256)) return; // a segment cut: a derivative
        const item = await this.evidenceRepo.findBySha256(this.db, e.sha256);
        if (item) {
          await this.damage?.recordReadMismatch(
            { id: item.id, sha256: e.sha256 },
            actor,
            computed,
            started,
            'bundle',
          );
        }
      }),
      () => undefined,
    );
  }
}

function toBundleView(r: BundleRow): BundleView {
  return {
    id: r.id,
    complaintId: r.complaint_id,
    createdAt: iso(r.created_at),
    createdBy: { keyId: r.created_by_key_id, role: r.created_by_role, name: r.created_by_name },
    fileCount: r.file_count,
    totalBytes: r.total_bytes,
    zipBytes: r.zip_bytes,
    manifestSha256: r.manifest_sha256,
    keyFingerprint: r.key_fingerprint,
    checkpointSeq: r.checkpoint_seq,
    itemIds: r.item_ids,
    downloadUrl: `/v1/bundles/${r.id}/content`,
  };
}

function assertMay(actor: RequestActor, permission: 'bundle:create' | 'bundle:read'): void {
  if (!can(actor.role, permission)) {
    throw new AppError('forbidden', `The "${actor.role}" role may not do this.`, {
      requires: permission,
    });
  }
}

const unique = <T>(xs: T[]): T[] => [...new Set(xs)];
const safeName = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80);

/** Items whose stored bytes were found damaged: neither bundled nor served in a bundle. */
function damagedInBundle(itemIds: string[], what: string): AppError {
  return new AppError(
    'evidence_damaged',
    `The stored bytes of item${itemIds.length > 1 ? 's' : ''} ${itemIds.join(', ')} were found not to match the archived SHA-256 and ${what}. Uploading the genuine bytes again repairs an item; this has been logged for an administrator.`,
    { itemIds },
  );
}
