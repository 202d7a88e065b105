import { createHash } from 'node:crypto';
import { z } from 'zod';

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
/** The bundle for people: a PDF summary (see certificate.ts). In bundles made since issue 17. */
export const CERTIFICATE = 'certificate.pdf';
export const FILES_DIR = 'files/';
/** An RFC 3161 TimeStampResp (DER) over the exact bytes of manifest.json (a TSA configured). */
export const MANIFEST_TSR = 'manifest.json.tsr';
/** The exact bytes the audit checkpoint's signature covers, and the TSA's token over them. */
export const CHECKPOINT_JSON = 'checkpoint.json';
export const CHECKPOINT_TSR = 'checkpoint.json.tsr';
/** The certificates the manifest's token carries (PEM): the TSA's, not a root to trust. */
export const TSA_CHAIN = 'tsa-chain.pem';
/** The timestamp files, kept as base64 (DER) in a bundle's stored texts. */
export const BINARY_FILES = [MANIFEST_TSR, CHECKPOINT_TSR];
/**
 * How long after the time a bundle claims (manifest.json `createdAt`) its token may be dated: the
 * time the TSAs take to answer (every configured one may time out first) plus clock skew.
 */
export const MAX_STAMP_DELAY_MS = 10 * 60_000;

/** Every file of a bundle but the evidence, in ZIP order. */
export const FIXED_FILES = [VERIFY, MANIFEST, MANIFEST_SIG, SUMS, SUMS_SIG, PUBLIC_KEY, AUDIT];

/**
 * Files a bundle may carry besides those (bundles made before them have none). Each is listed in
 * SHA256SUMS, so `sha256sum -c` and its signature cover it; manifest.json (format version 1, frozen)
 * does not name it, and it is made from the manifest's data.
 */
export const OPTIONAL_FILES = [
  CERTIFICATE,
  MANIFEST_TSR,
  CHECKPOINT_JSON,
  CHECKPOINT_TSR,
  TSA_CHAIN,
];

// The manifest is a signed format: its schema is frozen per version. A change to it is a new
// version (manifestV2, BUNDLE_FORMAT_VERSION 2), never an edit of manifestV1, and it follows no
// API schema: the builder's types and the verifier's validation both come from here.

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** One evidence file of a version-1 bundle. */
export const manifestFileV1 = z
  .object({
    path: z.string(),
    /** `original`: the archived bytes of an item; `segment`: the cut of one order's part of one. */
    type: z.enum(['original', 'segment']),
    itemId: z.string(),
    kind: z.string(),
    originalFilename: z.string().nullable(),
    capturedAt: z.string(),
    receivedAt: z.string(),
    source: z.string().nullable(),
    orderIds: z.array(z.string()),
    complaintIds: z.array(z.string()),
    callId: z.string().nullable(),
    fromNumber: z.string().nullable(),
    toNumber: z.string().nullable(),
    fromNumberE164: z.string().nullable(),
    toNumberE164: z.string().nullable(),
    agentId: z.string().nullable(),
    direction: z.string().nullable(),
    stationId: z.string().nullable(),
    operatorId: z.string().nullable(),
    trackingNumber: z.string().nullable(),
    lastVerification: z.object({ status: z.string(), checkedAt: z.string() }).strict().nullable(),
    sha256: hex64,
    size: z.number().int().min(0),
    contentType: z.string(),
    /** For a segment cut: what it was cut from, and where. */
    segment: z
      .object({
        segmentId: z.string(),
        orderId: z.string(),
        trackingNumber: z.string().nullable(),
        /** The part of the parent the segment names, in seconds. */
        startSec: z.number(),
        endSec: z.number(),
        /** The part actually copied (the end is clamped to the recording's end). */
        cutStartSec: z.number().nullable(),
        cutEndSec: z.number().nullable(),
        method: z.string().nullable(),
        parentItemId: z.string(),
        parentSha256: hex64,
        parentSize: z.number().int().min(0),
        parentContentType: z.string(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type ManifestFile = z.infer<typeof manifestFileV1>;

/** The signed audit checkpoint as a version-1 manifest carries it. */
const checkpointV1 = z
  .object({
    checkpoint: z
      .object({
        version: z.literal(1),
        type: z.literal('evidence-archive.audit-checkpoint'),
        seq: z.number().int(),
        hash: hex64,
        signedAt: z.string(),
        keyFingerprint: hex64,
        previous: z.object({ seq: z.number().int(), hash: hex64 }).strict().nullable(),
      })
      .strict(),
    /** Ed25519 over canonicalJson(checkpoint), base64. */
    signature: z.string(),
    objectKey: z.string(),
  })
  .strict();

/** `manifest.json` of a version-1 dispute bundle. */
export const manifestV1 = z
  .object({
    format: z.literal(BUNDLE_FORMAT),
    version: z.literal(1),
    bundleId: z.string(),
    createdAt: z.string(),
    createdBy: z.object({ keyId: z.string(), role: z.string(), name: z.string() }).strict(),
    complaintId: z.string(),
    /** The complaint as the API showed it; null when it is known only by evidence linked to it. */
    complaint: z.record(z.unknown()).nullable(),
    selection: z
      .object({
        mode: z.enum(['all_linked', 'selected']),
        itemIds: z.array(z.string()),
        segmentIds: z.array(z.string()),
      })
      .strict(),
    /** Items linked to the complaint but left out (deleted ones have no bytes left). */
    omitted: z.array(
      z
        .object({
          itemId: z.string(),
          reason: z.literal('deleted'),
          deletedAt: z.string().nullable(),
        })
        .strict(),
    ),
    fileCount: z.number().int().min(0),
    totalBytes: z.number().int().min(0),
    files: z.array(manifestFileV1),
    auditExcerpt: z
      .object({
        path: z.literal(AUDIT),
        sha256: hex64,
        size: z.number().int().min(0),
        events: z.number().int().min(0),
        firstSeq: z.number().int().nullable(),
        lastSeq: z.number().int().nullable(),
        covers: z.string(),
      })
      .strict(),
    /** The signed audit checkpoint taken when the bundle was made: it covers every event above. */
    checkpoint: checkpointV1,
    signing: z
      .object({
        algorithm: z.literal('Ed25519'),
        publicKeyFile: z.literal(PUBLIC_KEY),
        publicKeyFingerprint: hex64,
        fingerprintMethod: z.string(),
        signatures: z.record(z.string()),
      })
      .strict(),
  })
  .strict();
export type BundleManifest = z.infer<typeof manifestV1>;

/** The manifest schema of each format version this code reads. */
export const MANIFEST_SCHEMAS = { 1: manifestV1 } as const;

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
  /**
   * The third-party time: a TSA's token (and whether the checkpoint has one too), or null for a
   * bundle made without one (it says so). Undefined: the text of bundles made before timestamps.
   */
  timestamp?: { authority: string; genTime: string; checkpoint: boolean } | null;
}): string {
  return `${verifyBody(m)}${m.timestamp === undefined ? '' : timestampText(m.timestamp)}`;
}

function timestampText(t: NonNullable<Parameters<typeof verifyText>[0]['timestamp']> | null) {
  if (t === null) {
    return `
Third-party time: none
----------------------
No timestamp authority gave a token when this bundle was made (none was configured, or none
answered), so it carries no third-party time: every time in it (when it was made, when the files were captured and received) is the
archive's own claim, signed with the archive's key only.
`;
  }
  return `
Third-party time (RFC 3161)
---------------------------
  manifest.json.tsr   a timestamp token from ${t.authority}: its signature over the SHA-256 of
                      manifest.json and the time ${t.genTime}
${
  t.checkpoint
    ? `  checkpoint.json     the exact bytes the audit checkpoint's signature covers
  checkpoint.json.tsr the timestamp token over checkpoint.json
`
    : ''
}  tsa-chain.pem       the certificates the token carries (for reference only)

5. Check that manifest.json existed at the authority's time. Get the timestamp authority's root
   certificate independently, from the authority itself (its web site or your own trust store),
   never from this bundle: a forger could put a root of their own here. Save it as tsa-root.pem,
   then each command must print "Verification: OK":

     openssl ts -verify -data manifest.json -in manifest.json.tsr -CAfile tsa-root.pem
${t.checkpoint ? '     openssl ts -verify -data checkpoint.json -in checkpoint.json.tsr -CAfile tsa-root.pem\n' : ''}
   See the token's time with: openssl ts -reply -in manifest.json.tsr -text
   It must not be later than the time the bundle says it was made (at the top), give or take a
   few minutes: the archive asks for the token as it makes the bundle. The token proves that these
   exact manifest bytes (and so the SHA-256 of every file it lists) existed at that time; it does
   not prove when the files were captured, nor that they are true.
`;
}

function verifyBody(m: Omit<Parameters<typeof verifyText>[0], 'timestamp'>): string {
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
