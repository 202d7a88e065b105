import { createHash } from 'node:crypto';
import type { SignedCheckpoint } from '../custody/checkpoint.service';

/**
 * The layout of a dispute bundle, shared by the service that writes it and the offline verifier
 * (`npm run verify-bundle`). Pure: no database, no store.
 */
export const BUNDLE_FORMAT = 'evidence-archive.dispute-bundle';
export const BUNDLE_FORMAT_VERSION = 1;

export const MANIFEST = 'manifest.json';
export const MANIFEST_SIG = 'manifest.json.sig';
export const SUMS = 'SHA256SUMS';
export const SUMS_SIG = 'SHA256SUMS.sig';
export const PUBLIC_KEY = 'public-key.pem';
export const AUDIT = 'audit.jsonl';
export const VERIFY = 'VERIFY.txt';
export const FILES_DIR = 'files/';

/** Every file of a bundle but the evidence, in ZIP order. */
export const FIXED_FILES = [VERIFY, MANIFEST, MANIFEST_SIG, SUMS, SUMS_SIG, PUBLIC_KEY, AUDIT];

export interface ManifestFile {
  path: string;
  /** `original`: the archived bytes of an item; `segment`: the cut of one order's part of one. */
  type: 'original' | 'segment';
  itemId: string;
  kind: string;
  sha256: string;
  size: number;
  contentType: string;
  originalFilename: string | null;
  capturedAt: string;
  receivedAt: string;
  source: string | null;
  orderIds: string[];
  complaintIds: string[];
  callId: string | null;
  fromNumber: string | null;
  toNumber: string | null;
  fromNumberE164: string | null;
  toNumberE164: string | null;
  agentId: string | null;
  direction: string | null;
  stationId: string | null;
  operatorId: string | null;
  trackingNumber: string | null;
  lastVerification: { status: string; checkedAt: string } | null;
  /** For a segment cut: what it was cut from, and where. */
  segment?: {
    segmentId: string;
    orderId: string;
    trackingNumber: string | null;
    /** The part of the parent the segment names, in seconds. */
    startSec: number;
    endSec: number;
    /** The part actually copied (the end is clamped to the recording's end). */
    cutStartSec: number | null;
    cutEndSec: number | null;
    method: string | null;
    parentItemId: string;
    parentSha256: string;
    parentSize: number;
    parentContentType: string;
  };
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: typeof BUNDLE_FORMAT_VERSION;
  bundleId: string;
  createdAt: string;
  createdBy: { keyId: string; role: string; name: string };
  complaintId: string;
  /** The complaint as the API shows it; null when it is known only by evidence linked to it. */
  complaint: Record<string, unknown> | null;
  selection: { mode: 'all_linked' | 'selected'; itemIds: string[]; segmentIds: string[] };
  /** Items linked to the complaint but left out (deleted ones have no bytes left). */
  omitted: { itemId: string; reason: 'deleted'; deletedAt: string | null }[];
  fileCount: number;
  totalBytes: number;
  files: ManifestFile[];
  auditExcerpt: {
    path: typeof AUDIT;
    sha256: string;
    size: number;
    events: number;
    firstSeq: number | null;
    lastSeq: number | null;
    covers: string;
  };
  /** The signed audit checkpoint taken when the bundle was made: it covers every event above. */
  checkpoint: SignedCheckpoint & { objectKey: string };
  signing: {
    algorithm: 'Ed25519';
    publicKeyFile: typeof PUBLIC_KEY;
    publicKeyFingerprint: string;
    fingerprintMethod: string;
    signatures: Record<string, string>;
  };
}

export const sha256Hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** `sha256sum -c` input: "<hex>  <path>" lines. */
export function formatSums(entries: { path: string; sha256: string }[]): string {
  return entries.map((e) => `${e.sha256}  ${e.path}\n`).join('');
}

export function parseSums(text: string): Map<string, string> | string {
  const out = new Map<string, string>();
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!m) return `line ${i + 1} of ${SUMS} is not "<sha256>  <path>"`;
    if (out.has(m[2]!)) return `${m[2]} is listed twice in ${SUMS}`;
    out.set(m[2]!, m[1]!);
  }
  return out;
}

/** A name for an evidence file inside the ZIP: ordinal, id, and an extension from its type. */
export function evidencePath(
  n: number,
  width: number,
  id: string,
  contentType: string,
  originalFilename: string | null,
  segment: boolean,
): string {
  const ext =
    EXTENSIONS[contentType] ??
    /\.([A-Za-z0-9]{1,5})$/.exec(originalFilename ?? '')?.[1]?.toLowerCase() ??
    'bin';
  return `${FILES_DIR}${String(n).padStart(width, '0')}-${segment ? 'segment-' : ''}${id}.${ext}`;
}

const EXTENSIONS: Record<string, string> = {
  'video/mp4': 'mp4',
  'video/quicktime': 'mov',
  'video/webm': 'webm',
  'video/x-matroska': 'mkv',
  'video/x-msvideo': 'avi',
  'video/mpeg': 'mpg',
  'video/mp2t': 'ts',
  'video/3gpp': '3gp',
  'video/3gpp2': '3g2',
  'video/x-flv': 'flv',
  'audio/wav': 'wav',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'audio/aac': 'aac',
  'audio/ogg': 'ogg',
  'audio/flac': 'flac',
  'audio/amr': 'amr',
  'audio/amr-wb': 'awb',
  'audio/aiff': 'aiff',
  'audio/x-caf': 'caf',
  'audio/x-matroska': 'mka',
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'image/heic': 'heic',
  'image/heif': 'heif',
  'image/avif': 'avif',
  'image/tiff': 'tif',
};

/** The plain-language instructions that travel with every bundle. */
export function verifyText(m: {
  bundleId: string;
  complaintId: string;
  createdAt: string;
  fileCount: number;
  fingerprint: string;
  checkpointSeq: number;
}): string {
  return `HOW TO CHECK THIS DISPUTE BUNDLE
================================

Bundle ${m.bundleId}, complaint ${m.complaintId}, made ${m.createdAt}.
It holds ${m.fileCount} evidence file(s) under files/, exactly as the evidence archive stored them
(or, for a "segment", the part of a longer recording that concerns one order, cut from it without
re-encoding; manifest.json names the recording it was cut from, its SHA-256 and the offsets).

What is in it
-------------
  files/              the evidence files
  manifest.json       what each file is: SHA-256, size, type, when it was captured, where it came
                      from, the orders and complaints it is linked to; the complaint; the audit
                      checkpoint signed when the bundle was made
  manifest.json.sig   the archive's Ed25519 signature over the exact bytes of manifest.json
  audit.jsonl         the custody history of these items and of the complaint (one event per
                      line: who did what, when), up to that checkpoint
  SHA256SUMS          the SHA-256 of every other file in the bundle
  SHA256SUMS.sig      the archive's Ed25519 signature over SHA256SUMS
  public-key.pem      the archive's public key
  VERIFY.txt          this text

You need only standard tools: unzip, sha256sum (GNU coreutils) and OpenSSL 3 (openssl version).

1. Unpack the bundle into an empty folder and go there:

     unzip bundle.zip -d bundle && cd bundle

2. Check that the public key is really the archive's. Anyone can make a key pair and sign a
   forged bundle, so the key inside the bundle proves nothing by itself. Compute its fingerprint:

     openssl pkey -pubin -in public-key.pem -outform DER | sha256sum

   It must print ${m.fingerprint}
   and that must be the fingerprint the shop publishes (its evidence archive serves it at
   GET /v1/custody/public-key, as "fingerprint"; ask the shop for it through a channel you trust,
   or use a copy of the public key you obtained earlier instead of public-key.pem below).

3. Check the signatures. Each command must print "Signature Verified Successfully":

     openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.json -sigfile manifest.json.sig
     openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig

4. Check every file against the signed list. Each line must end in "OK":

     sha256sum -c SHA256SUMS

   The SHA-256 of each evidence file is also in manifest.json ("files"), next to what it is.

If all of that passes, the files are byte for byte what the archive signed, and manifest.json
describes them as the archive recorded them. A changed byte in any file, an edited manifest, or a
signature made with another key makes one of the steps fail.

The custody history (audit.jsonl) is an excerpt of a hash chain: each event's "hash" is the SHA-256
of the previous event's hash followed by the event (without "prevHash" and "hash") as JSON with its
keys sorted. The checkpoint in manifest.json signs the chain's head at event ${m.checkpointSeq}; the
archive can prove the whole chain up to it on request. The evidence-archive tool
"npm run verify-bundle -- bundle.zip" runs every check above, and the hashes of the events, at once.
`;
}
