import type { Readable } from 'node:stream';
import { canonicalJson } from '../base/audit-chain';
import { toComplaintView } from '../complaints/complaint.service';
import type { ComplaintRow } from '../complaints/complaint.repository';
import type { SignedCheckpoint } from '../custody/checkpoint.service';
import type { EvidenceRow } from '../evidence/evidence.repository';
import { toEvidenceView } from '../evidence/evidence.view';
import type { SegmentCutRow, SegmentRow } from '../evidence/segment.repository';
import {
  AUDIT,
  BINARY_FILES,
  BUNDLE_FORMAT,
  CERTIFICATE,
  CHECKPOINT_JSON,
  CHECKPOINT_TSR,
  MANIFEST_TSR,
  TSA_CHAIN,
  BUNDLE_FORMAT_VERSION,
  evidencePath,
  formatSums,
  MANIFEST,
  MANIFEST_SIG,
  PUBLIC_KEY,
  sha256Hex,
  SUMS,
  SUMS_SIG,
  VERIFY,
  verifyText,
  type BundleManifest,
  type ManifestFile,
} from './bundle-format';
import { zipSize, type ZipEntry } from './bundle-zip';
import { buildCertificate, type CertificateInput } from './certificate';

/**
 * What a dispute bundle is, decided from what was loaded: no database, no store, no clock, no
 * randomness (the bundle's id and time come in). The service loads the complaint, the selected
 * items and cuts, the signed checkpoint and the audit excerpt, calls planBundle, and stores the
 * plan; every later download streams the ZIP from it, so the same inputs give the same bytes.
 */

/** A segment's cut that can be bundled: made, hashed and stored. */
export type ReadyCut = SegmentCutRow & { sha256: string; blob_key: string };

/** One file of a bundle: an item's original, or the cut of one of its segments. */
export interface BundleSelection {
  item: EvidenceRow;
  segment?: { row: SegmentRow; cut: ReadyCut };
}

/** The items' audit events up to the checkpoint, one JSON line each. */
export interface AuditExcerpt {
  text: string;
  count: number;
  firstSeq: number | null;
  lastSeq: number | null;
}

/** What signs a bundle (the archive's Ed25519 key). */
export interface BundleSigner {
  readonly fingerprint: string;
  readonly publicKeyPem: string;
  /** base64 */
  sign(data: string): string;
}

/** An evidence file of the ZIP: where its bytes are stored and what they must hash to. */
export interface BundleEntry {
  path: string;
  blobKey: string;
  size: number;
  sha256: string;
}

export interface BundlePlanInput {
  bundleId: string;
  createdAt: Date;
  createdBy: { keyId: string; role: string; name: string };
  complaintId: string;
  /** Undefined when the complaint is known only by evidence linked to it. */
  complaint: ComplaintRow | undefined;
  selection: BundleManifest['selection'];
  omitted: BundleManifest['omitted'];
  /** In any order: the plan puts them in the bundle's. */
  files: BundleSelection[];
  checkpoint: SignedCheckpoint & { objectKey: string };
  excerpt: AuditExcerpt;
  signer: BundleSigner;
  /** `certificate.pdf`'s bytes (see planCertifiedBundle); absent: a bundle without one. */
  certificate?: Buffer;
  /**
   * The third-party time: RFC 3161 tokens over manifest.json (as this plan writes it, see
   * manifestTextOf) and, when it has one, the checkpoint; null: a bundle made without a timestamp
   * authority (VERIFY.txt says so); absent: a bundle as made before timestamps (the same bytes).
   */
  timestamp?: BundleTimestamp | null;
}

/** What a TSA gave for a bundle (verified on receipt by the service). */
export interface BundleTimestamp {
  /** TimeStampResp over manifest.json, DER. */
  manifestToken: Buffer;
  /** Who stamped and when (the token's genTime, ISO 8601). */
  authority: string;
  genTime: string;
  /** The certificates the token carries, PEM. */
  chainPem: string;
  /** The checkpoint's token (over canonicalJson(checkpoint)), when it was stamped. */
  checkpointToken?: Buffer;
}

export interface BundlePlan {
  manifest: BundleManifest;
  /** The manifest as written into the ZIP (and signed). */
  manifestText: string;
  manifestSha256: string;
  /** The other small files by path; signatures as base64 (see smallFile). */
  texts: Record<string, string>;
  /** The evidence files, in ZIP order. */
  entries: BundleEntry[];
  /** The items involved (an item with segments once), in bundle order. */
  itemIds: string[];
  totalBytes: number;
  /** The exact size of the ZIP. */
  zipBytes: number;
}

/** Originals in capture order, each item's segment cuts after it in time order. */
export function bundleOrder(files: BundleSelection[]): BundleSelection[] {
  return [...files].sort(
    (a, b) =>
      cmp(iso(a.item.captured_at), iso(b.item.captured_at)) ||
      cmp(a.item.id, b.item.id) ||
      (a.segment ? 1 : 0) - (b.segment ? 1 : 0) ||
      Number(a.segment?.row.start_sec ?? 0) - Number(b.segment?.row.start_sec ?? 0) ||
      cmp(a.segment?.row.id ?? '', b.segment?.row.id ?? ''),
  );
}

/**
 * The plan of a bundle with its `certificate.pdf`, made from the plan's own manifest (and the
 * preview images given): still no I/O, clock or randomness, so the same inputs give the same bytes.
 */
export async function planCertifiedBundle(
  input: Omit<BundlePlanInput, 'certificate'>,
  people: Omit<CertificateInput, 'manifest'>,
): Promise<BundlePlan> {
  const { manifest } = planBundle(input);
  const certificate = await buildCertificate({
    ...people,
    manifest,
    ...(input.timestamp
      ? {
          timestamp: {
            authority: people.timestamp?.authority ?? input.timestamp.authority,
            time: input.timestamp.genTime,
          },
        }
      : {}),
  });
  return planBundle({ ...input, certificate });
}

export function planBundle(input: BundlePlanInput): BundlePlan {
  const { bundleId: id, complaintId, checkpoint, excerpt, signer } = input;
  const selected = bundleOrder(input.files);
  const width = Math.max(2, String(selected.length).length);
  const files: ManifestFile[] = selected.map((s, i) => manifestFile(s, i + 1, width));
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_FORMAT_VERSION,
    bundleId: id,
    createdAt: input.createdAt.toISOString(),
    createdBy: input.createdBy,
    complaintId,
    complaint: input.complaint ? { ...toComplaintView(input.complaint) } : null,
    selection: input.selection,
    omitted: input.omitted,
    fileCount: files.length,
    totalBytes,
    files,
    auditExcerpt: {
      path: AUDIT,
      sha256: sha256Hex(excerpt.text),
      size: Buffer.byteLength(excerpt.text),
      events: excerpt.count,
      firstSeq: excerpt.firstSeq,
      lastSeq: excerpt.lastSeq,
      covers:
        'every audit event naming one of the bundled items (or the recordings the segments were cut from) or the complaint, up to the checkpoint',
    },
    checkpoint,
    signing: {
      algorithm: 'Ed25519',
      publicKeyFile: PUBLIC_KEY,
      publicKeyFingerprint: signer.fingerprint,
      fingerprintMethod:
        'SHA-256 of the DER-encoded public key (SubjectPublicKeyInfo), hex: openssl pkey -pubin -in public-key.pem -outform DER | sha256sum',
      signatures: { [MANIFEST]: MANIFEST_SIG, [SUMS]: SUMS_SIG },
    },
  };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  const manifestSha256 = sha256Hex(manifestText);
  const texts: Record<string, string> = {
    [VERIFY]: verifyText({
      bundleId: id,
      complaintId,
      createdAt: manifest.createdAt,
      fileCount: files.length,
      fingerprint: signer.fingerprint,
      checkpointSeq: checkpoint.checkpoint.seq,
      ...(input.timestamp === undefined
        ? {}
        : {
            timestamp: input.timestamp && {
              authority: input.timestamp.authority,
              genTime: input.timestamp.genTime,
              checkpoint: Boolean(input.timestamp.checkpointToken),
            },
          }),
    }),
    [MANIFEST_SIG]: signer.sign(manifestText),
    [PUBLIC_KEY]: signer.publicKeyPem,
    [AUDIT]: excerpt.text,
    ...(input.certificate ? { [CERTIFICATE]: input.certificate.toString('base64') } : {}),
    ...(input.timestamp
      ? {
          [MANIFEST_TSR]: input.timestamp.manifestToken.toString('base64'),
          [TSA_CHAIN]: input.timestamp.chainPem,
          ...(input.timestamp.checkpointToken
            ? {
                [CHECKPOINT_JSON]: canonicalJson(checkpoint.checkpoint),
                [CHECKPOINT_TSR]: input.timestamp.checkpointToken.toString('base64'),
              }
            : {}),
        }
      : {}),
  };
  const sums = formatSums([
    ...files.map((f) => ({ path: f.path, sha256: f.sha256 })),
    { path: MANIFEST, sha256: manifestSha256 },
    ...[
      MANIFEST_SIG,
      PUBLIC_KEY,
      AUDIT,
      VERIFY,
      CERTIFICATE,
      MANIFEST_TSR,
      CHECKPOINT_JSON,
      CHECKPOINT_TSR,
      TSA_CHAIN,
    ]
      .filter((p) => texts[p] !== undefined)
      .map((p) => ({
        path: p,
        sha256: sha256Hex(smallFile(p, texts[p]!)),
      })),
  ]);
  texts[SUMS] = sums;
  texts[SUMS_SIG] = signer.sign(sums);
  const entries = selected.map((s, i) => ({
    path: files[i]!.path,
    blobKey: s.segment ? s.segment.cut.blob_key : s.item.blob_key,
    size: files[i]!.size,
    sha256: files[i]!.sha256,
  }));
  return {
    manifest,
    manifestText,
    manifestSha256,
    texts,
    entries,
    itemIds: [...new Set(selected.map((s) => s.item.id))],
    totalBytes,
    zipBytes: zipSize(zipLayout(manifestText, texts, entries), input.createdAt),
  };
}

/**
 * The ZIP's files in order: instructions (and the certificate, when the bundle has one) and signed
 * records first, then the evidence. A bundle made without a certificate keeps its exact bytes.
 */
export function zipLayout(
  manifest: string,
  texts: Record<string, string>,
  entries: { path: string; blobKey: string; size: number }[],
  open?: (e: { path: string; blobKey: string; size: number }) => Promise<Readable>,
): ZipEntry[] {
  const names = [
    VERIFY,
    CERTIFICATE,
    MANIFEST,
    MANIFEST_SIG,
    SUMS,
    SUMS_SIG,
    PUBLIC_KEY,
    AUDIT,
    ...OPTIONAL_TIME_FILES,
  ];
  const small = names
    .filter(
      (p) => (p !== CERTIFICATE && !OPTIONAL_TIME_FILES.includes(p)) || texts[p] !== undefined,
    )
    .map((p) => ({
      path: p,
      data: p === MANIFEST ? Buffer.from(manifest) : smallFile(p, texts[p] ?? ''),
    }));
  return [
    ...small,
    ...entries.map((e) => ({
      path: e.path,
      size: e.size,
      open: () => (open ? open(e) : Promise.reject(new Error('not opened here'))),
    })),
  ];
}

/**
 * Signatures are kept as base64 and written raw (64 bytes), as openssl wants them; the certificate
 * as base64 too (a PDF's bytes).
 */
export function smallFile(path: string, text: string): Buffer {
  return path === MANIFEST_SIG ||
    path === SUMS_SIG ||
    path === CERTIFICATE ||
    BINARY_FILES.includes(path)
    ? Buffer.from(text, 'base64')
    : Buffer.from(text, 'utf8');
}

function manifestFile(s: BundleSelection, n: number, width: number): ManifestFile {
  const v = toEvidenceView(s.item);
  const common = {
    itemId: v.id,
    kind: v.kind,
    originalFilename: v.originalFilename,
    capturedAt: v.capturedAt,
    receivedAt: v.receivedAt,
    source: v.source,
    orderIds: v.orderIds,
    complaintIds: v.complaintIds,
    callId: v.callId,
    fromNumber: v.fromNumber,
    toNumber: v.toNumber,
    fromNumberE164: v.fromNumberE164,
    toNumberE164: v.toNumberE164,
    agentId: v.agentId,
    direction: v.direction,
    stationId: v.stationId,
    operatorId: v.operatorId,
    trackingNumber: v.trackingNumber,
    lastVerification: v.lastVerification,
  };
  if (!s.segment) {
    return {
      path: evidencePath(n, width, v.id, v.contentType, v.originalFilename, false),
      type: 'original',
      ...common,
      sha256: v.sha256,
      size: v.size,
      contentType: v.contentType,
    };
  }
  const { row, cut } = s.segment;
  const params = (cut.params ?? {}) as Record<string, unknown>;
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
  const contentType = cut.content_type ?? 'application/octet-stream';
  return {
    path: evidencePath(n, width, row.id, contentType, null, true),
    type: 'segment',
    ...common,
    sha256: cut.sha256,
    size: cut.size_bytes ?? 0,
    contentType,
    segment: {
      segmentId: row.id,
      orderId: row.order_id,
      trackingNumber: row.tracking_number,
      startSec: Number(row.start_sec),
      endSec: Number(row.end_sec),
      cutStartSec: num(params.startSec),
      cutEndSec: num(params.endSec),
      method: typeof params.method === 'string' ? params.method : null,
      parentItemId: v.id,
      parentSha256: cut.source_sha256,
      parentSize: v.size,
      parentContentType: v.contentType,
    },
  };
}

/** The timestamp files, after the others in the ZIP (only in bundles made with a TSA). */
const OPTIONAL_TIME_FILES = [MANIFEST_TSR, CHECKPOINT_JSON, CHECKPOINT_TSR, TSA_CHAIN];

/** manifest.json as planBundle writes it for these inputs: the bytes a TSA is asked to stamp. */
export function manifestTextOf(input: Omit<BundlePlanInput, 'certificate' | 'timestamp'>): string {
  return planBundle(input).manifestText;
}

const iso = (d: Date | string) => new Date(d).toISOString();
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
