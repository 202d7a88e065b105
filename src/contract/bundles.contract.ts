import { complaintParams } from './complaints.contract';
import { downloadRequestHeaders, downloadResponses } from './download';
import { dateTime, sha256Hex, uuid } from './fields';
import type { ContractModule, Operation } from './operation';
import { complaintIdRefused, json, problem, ref, standardErrors } from './operation';
import { z } from './zod';

/** The most evidence files one bundle takes (selected, or linked to the complaint). */
export const MAX_BUNDLE_FILES = 1000;

const uuidList = (description: string) =>
  z
    .array(
      z
        .string()
        .max(64)
        .regex(/^[0-9a-fA-F-]{36}$/, 'must be a UUID')
        .openapi({ format: 'uuid' }),
    )
    .max(MAX_BUNDLE_FILES, `must list at most ${MAX_BUNDLE_FILES} ids`)
    .optional()
    .openapi({ description });

export const bundleBody = z
  .object({
    itemIds: uuidList('Items whose original bytes go in.'),
    segmentIds: uuidList("Segments whose cut (that order's part of a long recording) goes in."),
  })
  .strict()
  .openapi('BundleRequest', {
    description: 'What to bundle. Both absent or empty: every item linked to the complaint itself.',
  });
export type BundleBody = z.infer<typeof bundleBody>;

export const bundleSchema = z
  .object({
    id: uuid,
    complaintId: z.string(),
    createdAt: dateTime,
    createdBy: z.object({ keyId: z.string(), role: z.string(), name: z.string() }),
    fileCount: z.number().int().min(1).openapi({ description: 'Evidence files in the bundle.' }),
    totalBytes: z.number().int().openapi({ description: "The evidence files' bytes together." }),
    zipBytes: z.number().int().openapi({ description: 'The exact size of the ZIP.' }),
    manifestSha256: sha256Hex.openapi({
      description: "SHA-256 of `manifest.json`; the download's ETag.",
    }),
    keyFingerprint: z.string().openapi({
      description: "The signing key's fingerprint, as `GET /v1/custody/public-key` gives it.",
    }),
    checkpointSeq: z.number().int().openapi({
      description: "The signed audit checkpoint the bundle's audit excerpt ends at.",
    }),
    itemIds: z
      .array(uuid)
      .openapi({ description: 'Every item in the bundle, or cut from for it.' }),
    downloadUrl: z.string().openapi({ description: '`/v1/bundles/{id}/content`.' }),
  })
  .openapi('Bundle');
export type BundleView = z.infer<typeof bundleSchema>;

// The parameter is not called `id`: a bundle id must not be recorded as an item's.
export const bundleParams = z.object({ bundleId: uuid });

const noSuchBundle = problem('`not_found`: no bundle with this id.');

export const listComplaintBundles = {
  method: 'get',
  path: '/v1/complaints/{complaintId}/bundles',
  tags: ['bundles'],
  operationId: 'listComplaintBundles',
  summary: "A complaint's dispute bundles, newest first",
  description:
    'Roles: `support`, `admin`. At most 200. Not audited (no evidence is read); downloading one is.',
  request: { params: complaintParams },
  responses: {
    '200': {
      description: 'The bundles.',
      content: json(z.object({ complaintId: z.string(), items: z.array(bundleSchema) })),
    },
    '400': complaintIdRefused,
    ...standardErrors,
  },
} satisfies Operation;

export const createBundle = {
  method: 'post',
  path: '/v1/complaints/{complaintId}/bundles',
  tags: ['bundles'],
  operationId: 'createBundle',
  summary: "Make a verifiable dispute bundle of a complaint's evidence",
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `bundle.create` (in the same transaction as the bundle), naming every item in it.\n\nWith no `itemIds` and no `segmentIds` (or both empty), the bundle takes every item linked to the complaint itself (deleted ones are left out and listed in the manifest's `omitted`). Otherwise it takes exactly the items and segment cuts selected, each of which must be the complaint's evidence: linked to the complaint or to one of its orders. A selected segment whose cut is not made yet is cut now (ffmpeg stream copy, as the media pipeline does).\n\nBefore the bundle is written, the audit trail's head is signed as a checkpoint; the bundle's `audit.jsonl` holds every event naming its items or the complaint up to that checkpoint. The ZIP (`GET /v1/bundles/{bundleId}/content`) holds the files under `files/`, `manifest.json` and its Ed25519 signature `manifest.json.sig`, `audit.jsonl`, `SHA256SUMS` (for `sha256sum -c`) and `SHA256SUMS.sig`, `public-key.pem`, `VERIFY.txt`, the instructions for checking it with standard tools, and `certificate.pdf`, a summary for people (also `GET /v1/bundles/{bundleId}/certificate.pdf`), which `SHA256SUMS` lists. Nothing is stored when the request is refused.",
  request: {
    params: complaintParams,
    body: { required: false, content: json(bundleBody) },
  },
  responses: {
    '201': {
      description: 'Made.',
      headers: {
        Location: { description: '`/v1/bundles/{bundleId}`.', schema: { type: 'string' } },
      },
      content: json(bundleSchema),
    },
    '400': problem(
      '`validation_failed`: not a JSON object of `itemIds` and `segmentIds` (UUIDs, at most 1000 together), an unknown field, a bad complaint id, or more than 1000 linked items; `invalid_json`.',
    ),
    '404': problem('`not_found`: no complaint with this id, and no evidence linked to it.'),
    '409': problem(
      "`segment_cut_unavailable`: a selected segment's cut failed, or is not made and this instance has no ffmpeg to make it (`segmentId`, `cutStatus`).",
    ),
    '413': ref('responses', 'BodyTooLarge'),
    '422': problem(
      '`bundle_unknown_items`: selected items or segments that do not exist (`itemIds`, `segmentIds`); `bundle_item_deleted`: a selected item was deleted (`itemIds`); `bundle_item_not_linked`: a selected item is not linked to the complaint or to one of its orders (`itemIds`); `bundle_empty`: nothing selected and nothing (left) linked to the complaint.',
    ),
    ...standardErrors,
    '429': ref('responses', 'BudgetExceeded'),
    '500': problem(
      "`evidence_damaged`: a selected (or linked) item's stored bytes are known to be damaged (`itemIds`); no bundle is made.",
    ),
  },
} satisfies Operation;

export const getBundle = {
  method: 'get',
  path: '/v1/bundles/{bundleId}',
  tags: ['bundles'],
  operationId: 'getBundle',
  summary: "A dispute bundle's record",
  description:
    'Roles: `support`, `admin`. Not recorded in the audit trail (no evidence is shown); downloads are.',
  request: { params: bundleParams },
  responses: {
    '200': { description: 'The bundle.', content: json(bundleSchema) },
    '404': noSuchBundle,
    ...standardErrors,
  },
} satisfies Operation;

const zipDownload = {
  whole: 'The whole ZIP.',
  partial: 'The requested range of the ZIP.',
  notModified:
    'If-None-Match matched (weak comparison), or not modified since If-Modified-Since; no body.',
  contentType: 'application/zip',
  bodySchema: { type: 'string', format: 'binary' },
  etag: '`"<manifest SHA-256>"`: strong.',
  lastModified: 'When the bundle was made (an HTTP-date).',
  reprDigest: false as const,
  contentSecurityPolicy: false,
  contentDisposition: '`attachment; filename="bundle-<complaintId>-<bundleId>.zip"`.',
  contentLength: "The ZIP's size (the bundle's `zipBytes`).",
  contentRange: '`bytes <first>-<last>/<size>`.',
  rangeNotSatisfiable:
    '`range_not_satisfiable`: the range starts at or past the end (or is `bytes=-0`).',
  unsatisfiableContentRange: '`bytes */<size>`.',
};

const downloadErrors = {
  '404': noSuchBundle,
  '410': problem(
    '`evidence_deleted`: an item of the bundle was deleted since it was made (`itemIds`).',
  ),
  ...standardErrors,
  '500': problem(
    "`evidence_unavailable`: stored bytes of a file in the bundle are missing or damaged; nothing is sent. `evidence_damaged`: an item of the bundle is known to be damaged (`itemIds`), or a file before a range's start was found damaged as it was read; nothing is sent. A file found damaged while the ZIP streams ends the download before that file is complete.",
  ),
};

export const downloadBundle = {
  method: 'get',
  path: '/v1/bundles/{bundleId}/content',
  tags: ['bundles'],
  operationId: 'downloadBundle',
  summary: 'Download a dispute bundle (ZIP)',
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `bundle.download` before a byte is sent (`HEAD` and 304 too, with `method`, `status` and `range`).\n\nThe ZIP is stored (no compression), streamed with constant memory, and the same bytes on every download: `Content-Length` is exact and known up front, `ETag` is the manifest's SHA-256 (a strong validator: the ZIP's bytes follow from the signed manifest), `Last-Modified` is when the bundle was made. A download cut off is resumed with `Range` and `If-Range` (e.g. `curl -C -`): the pieces make the very same ZIP. The ZIP is built as it streams, so a range is served by building it from the start and sending only the range: the stored files before the range's start are read and hashed on the server (not sent), until the client goes away (closing the connection stops that read), and a file among them found damaged ends the request (500 `evidence_damaged`) before any byte of the range. Conditions are evaluated in the order of RFC 9110 §13.2.2: If-Match / If-Unmodified-Since (412), If-None-Match / If-Modified-Since (304), If-Range. Before any of that (so not even a 304 answers for them), every stored file is checked to exist with its archived size; a bundle whose item was deleted since is no longer served (410), nor one whose stored bytes are missing or known damaged (500). Check it with `VERIFY.txt` inside, or `npm run verify-bundle -- bundle.zip`.",
  request: { params: bundleParams, headers: downloadRequestHeaders({ lastModified: true }) },
  responses: { ...downloadResponses(zipDownload), ...downloadErrors },
} satisfies Operation;

export const headBundle = {
  method: 'head',
  path: '/v1/bundles/{bundleId}/content',
  tags: ['bundles'],
  operationId: 'headBundle',
  summary: 'Headers of a dispute bundle download',
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `bundle.download`.\n\nThe same status and headers as GET, without a body. `Range` and `If-Range` are for GET only (RFC 9110 §14.2): a HEAD with them gets the whole's headers (200, its full `Content-Length`), never 206 or 416.",
  request: { params: bundleParams, headers: downloadRequestHeaders({ lastModified: true }) },
  responses: {
    ...downloadResponses({ ...zipDownload, head: true, preconditionFailedBody: false }),
    ...downloadErrors,
  },
} satisfies Operation;

export const downloadBundleCertificate = {
  method: 'get',
  path: '/v1/bundles/{bundleId}/certificate.pdf',
  tags: ['bundles'],
  operationId: 'downloadBundleCertificate',
  summary: "A dispute bundle's certificate.pdf",
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `bundle.download` with `file: "certificate.pdf"` before a byte is sent (`HEAD` and 304 too).\n\nThe bundle on a page (or as few as it needs) that a reviewer reads without tools: the complaint and its orders, each file with its preview (a video\'s poster, a recording\'s waveform, a photo\'s thumbnail, or "no preview"), capture and receipt times, SHA-256 and size, the signing key\'s fingerprint, whether third-party time is included, and how to verify. The same bytes as `certificate.pdf` inside the ZIP, which `SHA256SUMS` lists (and its signature covers); made with the bundle, so the same on every download. Not served once an item of the bundle was deleted (410). Bundles made before certificates have none (404).',
  request: { params: bundleParams, headers: downloadRequestHeaders({ lastModified: true }) },
  responses: {
    ...downloadResponses({
      whole: 'The whole PDF.',
      partial: 'The requested range of the PDF.',
      contentType: 'application/pdf',
      bodySchema: { type: 'string', format: 'binary' },
      etag: '`"<SHA-256 of the PDF>"`: strong (the hash SHA256SUMS lists for it).',
      lastModified: 'When the bundle was made (an HTTP-date).',
      reprDigest: false,
      contentDisposition: '`attachment; filename="certificate-<complaintId>-<bundleId>.pdf"`.',
      contentLength: "The PDF's size.",
    }),
    '404': problem(
      '`not_found`: no bundle with this id, or a bundle made before bundles carried a certificate.',
    ),
    '410': problem(
      '`evidence_deleted`: an item of the bundle was deleted since it was made (`itemIds`).',
    ),
    ...standardErrors,
  },
} satisfies Operation;

export const bundlesContract: ContractModule = {
  operations: [
    listComplaintBundles,
    createBundle,
    getBundle,
    downloadBundle,
    headBundle,
    downloadBundleCertificate,
  ],
};
