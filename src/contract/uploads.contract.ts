import type { ResponseConfig } from '@asteasolutions/zod-to-openapi';
import {
  forbiddenResponse,
  insufficientStorageResponse,
  internalErrorResponse,
  preflightHeaders,
  rateLimitedResponse,
  serviceUnavailableResponse,
  unauthorizedResponse,
} from './common.contract';
import { OCTETS } from './download';
import { problem, ref, serverErrors, type ContractModule, type Operation } from './operation';
import { z } from './zod';

// The tus endpoint (tus 1.0, served by @tus/server behind upload.routes.ts, which checks the tus
// headers before it). Every answer carries Tus-Resumable, refusals included. Request headers are
// declared here; their checks stay with the tus conformance logic in the route.

/** `Tus-Resumable`, on every answer of the tus endpoint. */
const TUS_RESUMABLE = { 'Tus-Resumable': ref('headers', 'TusResumable') };

/** An answer of the tus endpoint: the same answer with `Tus-Resumable` added to its headers. */
const tus = <T extends object>(response: T & { headers?: object }) => ({
  ...response,
  headers: { ...response.headers, ...TUS_RESUMABLE },
});

/** A problem answer of the tus endpoint (with `Tus-Resumable`). */
const tusProblem = (description: string) => tus(problem(description));

/** The standard answers, with `Tus-Resumable`: every operation on the endpoint but discovery. */
const TUS_ERRORS = {
  '401': tus(unauthorizedResponse),
  '403': tus(forbiddenResponse),
  '412': tus(ref('responses', 'TusVersionRefused')),
  '429': tus(rateLimitedResponse),
  '500': tus(internalErrorResponse),
  '503': tus(serviceUnavailableResponse),
  '507': tus(insufficientStorageResponse),
};

/** A refusal of a tus request header, as every operation that reads them may answer it. */
const INVALID_TUS_HEADER =
  '`invalid_tus_header` (`header` names it): a tus header that is not what tus 1.0 says (`Upload-Offset`, `Upload-Length` not a non-negative integer; `Upload-Metadata` not comma-separated `key base64` pairs)';

const NO_SUCH_UPLOAD = tusProblem(
  '`not_found`: no such upload for this key. It was never created, was terminated, was removed after a refusal or after it expired, or was created by another key (an upload exists only for the key that created it).',
);

/** What a PATCH (or a POST that overrides to it) is refused with, besides 413. */
const PATCH_REFUSALS = {
  '400': tusProblem(
    `\`upload_offset_required\` (no \`Upload-Offset\`), or ${INVALID_TUS_HEADER}. Nothing is written.`,
  ),
  '404': NO_SUCH_UPLOAD,
  '409': tusProblem(
    "`upload_offset_conflict`: `Upload-Offset` is not the server's (ask with HEAD); nothing is written. `upload_busy`: another request still holds the upload. On the last byte: `call_id_conflict` or `recording_of_another_call`, as for `POST /v1/evidence`; the upload is removed.",
  ),
  '410': tusProblem(
    '`upload_expired`: the upload expired. On the last byte: `evidence_deleted`, these bytes belonged to a deleted item (`itemId`); the upload is removed.',
  ),
  '415': tusProblem(
    "`upload_content_type_required`: no `Content-Type: application/offset+octet-stream` (missing or another type, tus 1.0's 415); nothing is written. `unsupported_media_type`: the first 4,100 bytes sniff as a type `kind` does not accept (`detectedType`, `kind`); the upload is removed.",
  ),
  '422': tusProblem(
    '`checksum_mismatch`, on the last byte: the declared `sha256` differs from the received bytes (`declared`, `computed`). The upload is removed; nothing is archived.',
  ),
};

/** The bytes of a creation or a PATCH. */
const OFFSET_OCTETS = { 'application/offset+octet-stream': { schema: OCTETS } };

/** Once every byte is in: the evidence item the upload became. */
const ITEM_HEADERS = {
  'Evidence-Item-Id': ref('headers', 'EvidenceItemId'),
  'Evidence-Item-Url': ref('headers', 'EvidenceItemUrl'),
  'Evidence-Item-Status': ref('headers', 'EvidenceItemStatus'),
  'Repr-Digest': ref('headers', 'UploadReprDigest'),
};

/** The headers of a PATCH's answer. */
const APPENDED_HEADERS = {
  ...TUS_RESUMABLE,
  'Upload-Offset': ref('headers', 'UploadOffset'),
  'Upload-Expires': ref('headers', 'UploadExpires'),
  ...ITEM_HEADERS,
};

const UPLOAD_STATE: ResponseConfig = {
  description: 'The upload.',
  headers: {
    ...TUS_RESUMABLE,
    'Upload-Offset': ref('headers', 'UploadOffset'),
    'Upload-Length': {
      description: 'The size declared at creation.',
      schema: {
        type: 'integer',
      },
    },
    'Upload-Metadata': {
      description: 'The metadata sent at creation.',
      schema: {
        type: 'string',
      },
    },
    'Cache-Control': {
      description: '`no-store`.',
      schema: {
        type: 'string',
      },
    },
    ...ITEM_HEADERS,
  },
};

/** OPTIONS on either path of the endpoint: tus discovery, the same answer on both. */
const tusDiscovery = (path: string, operationId: string, aboutPath: string) =>
  ({
    method: 'options',
    path,
    tags: ['uploads'],
    operationId,
    summary: 'tus capability discovery',
    description: `No authentication. tus discovery (\`Tus-Version\`, \`Tus-Extension\`, \`Tus-Max-Size\`) with \`Allow\`. A CORS preflight from a listed origin is answered as on every path; other origins get no \`Access-Control-*\` header. ${aboutPath} Nothing about any upload is looked up or revealed.`,
    security: [],
    responses: {
      '204': {
        description:
          "The server's tus capabilities and `Allow`; to a CORS preflight from an origin listed in `CORS_ORIGINS`, the CORS grant instead of the tus headers (see `#/components/responses/Options`).",
        headers: {
          ...TUS_RESUMABLE,
          'Tus-Version': { description: '`1.0.0`.', schema: { type: 'string' } },
          'Tus-Extension': {
            description:
              '`creation,creation-with-upload,termination,expiration`. Not supported: `creation-defer-length`, `concatenation`, `checksum`.',
            schema: { type: 'string' },
          },
          'Tus-Max-Size': {
            description: 'The largest `Upload-Length` accepted, in bytes: `MAX_UPLOAD_BYTES`.',
            schema: { type: 'integer' },
          },
          ...preflightHeaders,
          Vary: ref('headers', 'Vary'),
        },
      },
      ...serverErrors,
    },
  }) satisfies Operation;

export const discoverUploads = tusDiscovery(
  '/v1/uploads',
  'discoverUploads',
  'The same answer as for `/v1/uploads/{uploadId}`.',
);

export const createUpload = {
  method: 'post',
  path: '/v1/uploads',
  tags: ['uploads'],
  operationId: 'createUpload',
  summary: 'Start a resumable (tus) upload',
  description:
    "Roles: `ingest`, `admin`. tus creation and creation-with-upload. The finished upload becomes an evidence item exactly as if the file had been sent to `POST /v1/evidence` with the same fields: it is recorded in the audit trail as `evidence.create` (`evidence.duplicate` for bytes already archived) under the key that created the upload, and refused attempts are recorded with outcome `denied` or `failed`.\n\n`Upload-Metadata` carries the upload's fields under the multipart names (the `UploadForm` schema without `file`), plus `filename`. They are checked here, before a byte is stored: an unknown key is 400 `unknown_field`, a missing `kind` or a bad value 400 `validation_failed`, a bad `filename` 400 `invalid_filename`, `Upload-Length: 0` 422 `empty_file`.\n\nThe upload belongs to the key that created it. It expires `RESUMABLE_UPLOAD_EXPIRY_HOURS` (default 72) after this request, finished or not (`Upload-Expires`); the sweep then removes it with its bytes. Its state is kept in the database and the blob store, so any instance sharing them continues it, after a crash too.\n\nWith a body (`Content-Type: application/offset+octet-stream`) the first bytes, or all of them, are stored at once (creation-with-upload); a body that completes the upload is archived before this request is answered, and the answer names the item as the last PATCH's would. Any other Content-Type: the body is ignored.\n\nEvery refusal is `application/problem+json`, the tus protocol's too (with the statuses tus 1.0 names). `X-HTTP-Method-Override` other than `POST` is 405: a creation is never turned into another method.",
  parameters: [ref('parameters', 'TusResumable')],
  request: {
    headers: z.object({
      'Upload-Length': z
        .number()
        .int()
        .min(1)
        .openapi({
          param: {
            description:
              'The size of the whole file in bytes, at most `Tus-Max-Size` (`MAX_UPLOAD_BYTES`; over it: 413 `file_too_large`). Missing: 400 `upload_length_required`. `0` is 422 `empty_file`. `Upload-Defer-Length` is not supported (501).',
          },
        }),
      'Upload-Metadata': z.string().openapi({
        param: {
          description:
            "tus metadata: comma-separated `key base64(value)` pairs. Keys: `kind` (required), `orderId` and `complaintId` (several values comma-separated inside the one value), `capturedAt`, `sha256` (hex; checked against the received bytes at the end), `source`, `callId`, `fromNumber`, `toNumber`, `agentId`, `direction`, `stationId`, `operatorId`, `trackingNumber`, `segments` (the JSON array), each as in the `UploadForm` schema, and `filename` (kept as the original file name, checked and cleaned). Accepted and never trusted, as tus clients send them by habit: `name` (Uppy's: the file name when there is no `filename`), `type` and `filetype` (ignored: the bytes decide the type), `relativePath` (ignored). A key with no value counts as absent. Any other key is 400 `unknown_field` (`allowed` lists every key above).",
          example:
            'kind cGFja2luZ192aWRlbw==,orderId T1JELTEwMDEsT1JELTEwMDI=,stationId UEstMDM=,filename Y2xpcC5tb3Y=',
        },
      }),
    }),
    body: {
      required: false,
      description: 'Optional (creation-with-upload): the first bytes of the file, or all of them.',
      content: OFFSET_OCTETS,
    },
  },
  responses: {
    '201': {
      description:
        'Created. Send the bytes to `Location` with PATCH. When a body completed the upload, it is already archived and the `Evidence-Item-*` headers name the item.',
      headers: {
        Location: {
          description:
            'The upload, relative: `/v1/uploads/{uploadId}` (so it holds behind a proxy, whatever host and scheme the client used).',
          schema: {
            type: 'string',
          },
        },
        ...TUS_RESUMABLE,
        'Upload-Expires': ref('headers', 'UploadExpires'),
        'Upload-Offset': {
          description: 'With a body: the bytes of it now stored.',
          schema: {
            type: 'integer',
          },
        },
        ...ITEM_HEADERS,
      },
    },
    ...TUS_ERRORS,
    '400': tusProblem(
      `\`unknown_field\` (\`allowed\` lists the keys), \`validation_failed\` (\`kind\` missing, a bad value, segments on a photo) or \`invalid_filename\`; \`upload_length_required\` (no \`Upload-Length\`); ${INVALID_TUS_HEADER}. Nothing is stored.`,
    ),
    '409': tusProblem(
      'Only when a body completed the upload: `call_id_conflict` or `recording_of_another_call`, as for `POST /v1/evidence`. The upload is removed.',
    ),
    '410': tusProblem(
      'Only when a body completed the upload: `evidence_deleted`, these bytes belonged to an item that was deleted (`itemId` names it). The upload is removed.',
    ),
    '413': tusProblem(
      '`file_too_large` (`Upload-Length` over `Tus-Max-Size`), or `upload_length_exceeded` (a body longer than `Upload-Length`; nothing is kept).',
    ),
    '415': tusProblem(
      "`unsupported_media_type`: the body's first 4,100 bytes sniff as a type `kind` does not accept (`detectedType`). The upload is removed.",
    ),
    '422': tusProblem(
      '`empty_file` (`Upload-Length: 0`); or, when a body completed the upload, `checksum_mismatch` (the declared `sha256` differs from the received bytes; `declared` and `computed`), and the upload is removed.',
    ),
    '501': tusProblem(
      '`tus_extension_unsupported`: `Upload-Defer-Length` (creation-defer-length) and `Upload-Concat` (concatenation) are not supported.',
    ),
    '405': tus({
      ...problem(
        '`method_not_allowed`: `X-HTTP-Method-Override` names another method than `POST`.',
      ),
      headers: { Allow: { description: '`POST, OPTIONS`.', schema: { type: 'string' } } },
    }),
  },
} satisfies Operation;

export const discoverUpload = tusDiscovery(
  '/v1/uploads/{uploadId}',
  'discoverUpload',
  'The upload id is not looked at.',
);

export const getUploadOffset = {
  method: 'head',
  path: '/v1/uploads/{uploadId}',
  tags: ['uploads'],
  operationId: 'getUploadOffset',
  summary: 'Where a resumable upload stands',
  description:
    'Roles: `ingest`, `admin`, and only the key that created the upload: for any other key it does not exist (404).\n\nWhat a client asks before resuming: send the rest from `Upload-Offset`, which counts only bytes the archive holds durably. Once every byte is in, the answer also names the evidence item (`Evidence-Item-*`, `Repr-Digest`), until the upload expires: a client whose last PATCH answer was lost learns its item here. If the last byte arrived but archiving was cut off (a crash before the answer), this request archives the upload first, so a complete offset always means an archived item; a refusal at that point is answered as it would have been to the last PATCH, and the upload is removed.\n\nAs for any HEAD, answers have no body. `Upload-Expires` comes with POST and PATCH answers, not here.',
  parameters: [ref('parameters', 'TusResumable')],
  responses: {
    '200': UPLOAD_STATE,
    ...TUS_ERRORS,
    '404': NO_SUCH_UPLOAD,
    '410': tusProblem(
      '`upload_expired` (no body: a HEAD): the upload expired, finished or not; once the sweep has removed it (within minutes), 404.',
    ),
  },
} satisfies Operation;

export const appendToUpload = {
  method: 'patch',
  path: '/v1/uploads/{uploadId}',
  tags: ['uploads'],
  operationId: 'appendToUpload',
  summary: 'Send bytes of a resumable upload',
  description:
    "Roles: `ingest`, `admin`, and only the key that created the upload: for any other key it does not exist (404).\n\nAppends the body at `Upload-Offset`, which must be the server's offset. A PATCH may stop anywhere, a dropped connection included: what arrived is kept, and the next HEAD gives the offset to continue from. The offset (with the SHA-256 state over exactly those bytes) advances only once the bytes are durable: fsynced on disk; on S3 sent as whole parts of `S3_PART_SIZE_BYTES`, the remainder as a small tail object. Bytes beyond the recorded offset, from a request cut off before that, are discarded by the next write. A newer request for the same upload (a client that reconnected) makes an older one still writing let go, on whichever instance it runs.\n\nThe first 4,100 bytes are sniffed, whichever requests bring them: a type `kind` does not accept ends the upload at once (415). The PATCH that delivers the last byte is answered only once the item is archived (the declared `sha256` checked, duplicates found, links merged, as for `POST /v1/evidence`), and its answer names the item. A refusal (415, 422, or at the end 409 and 410 problems) removes the upload and every byte of it: start a new one.",
  parameters: [ref('parameters', 'TusResumable')],
  request: {
    headers: z.object({
      'Upload-Offset': z
        .number()
        .int()
        .min(0)
        .openapi({
          param: {
            description:
              "Where this body starts: the server's offset (ask with HEAD), else 409 `upload_offset_conflict`. Missing: 400 `upload_offset_required`; not a non-negative integer: 400 `invalid_tus_header`.",
          },
        }),
    }),
    body: {
      required: true,
      description:
        'The next bytes of the file, at most up to `Upload-Length`. Content-Type exactly `application/offset+octet-stream` (missing or another: 415 `upload_content_type_required`).',
      content: OFFSET_OCTETS,
    },
  },
  responses: {
    '204': {
      description:
        'The bytes are stored. On the last byte, also archived: the `Evidence-Item-*` headers and `Repr-Digest` name the item.',
      headers: APPENDED_HEADERS,
    },
    ...TUS_ERRORS,
    ...PATCH_REFUSALS,
    '413': tusProblem(
      '`upload_length_exceeded`: the body goes past `Upload-Length`; nothing of this request is kept (the offset stays where it was).',
    ),
  },
} satisfies Operation;

export const terminateUpload = {
  method: 'delete',
  path: '/v1/uploads/{uploadId}',
  tags: ['uploads'],
  operationId: 'terminateUpload',
  summary: 'Abandon a resumable upload',
  description:
    'Roles: `ingest`, `admin`, and only the key that created the upload: for any other key it does not exist (404).\n\ntus termination: the unfinished upload and every byte of it are removed at once; the id then answers 404. A finished upload cannot be terminated (409 `upload_complete`): its bytes are evidence now (an admin deletes the item with `DELETE /v1/evidence/{id}`).',
  parameters: [ref('parameters', 'TusResumable')],
  responses: {
    '204': {
      description: 'Removed.',
      headers: TUS_RESUMABLE,
    },
    ...TUS_ERRORS,
    '404': NO_SUCH_UPLOAD,
    '400': tusProblem(`${INVALID_TUS_HEADER}.`),
    '409': tusProblem(
      '`upload_complete`: a finished upload cannot be terminated, its bytes are evidence now.',
    ),
  },
} satisfies Operation;

export const overrideUploadMethod = {
  method: 'post',
  path: '/v1/uploads/{uploadId}',
  tags: ['uploads'],
  operationId: 'overrideUploadMethod',
  summary: 'PATCH, HEAD or DELETE sent as a POST (X-HTTP-Method-Override)',
  description:
    "For clients that cannot send `PATCH` or `DELETE` (tus 1.0: the server MUST honour `X-HTTP-Method-Override`; tus-js-client's `overridePatchMethod: true`). A `POST` with `X-HTTP-Method-Override: PATCH`, `HEAD` or `DELETE` is exactly that request, with its roles, headers and answers (see those operations). Without the header, or with another method, 405.",
  parameters: [ref('parameters', 'TusResumable')],
  request: {
    headers: z.object({
      'X-HTTP-Method-Override': z
        .enum(['PATCH', 'HEAD', 'DELETE'])
        .openapi({ param: { description: '`PATCH`, `HEAD` or `DELETE`.' } }),
    }),
    body: {
      required: false,
      description: 'With `PATCH`: the bytes, as for PATCH.',
      content: OFFSET_OCTETS,
    },
  },
  responses: {
    '200': UPLOAD_STATE,
    '204': {
      description:
        '`PATCH`: the bytes are stored (see PATCH, with its headers); `DELETE`: removed.',
      headers: APPENDED_HEADERS,
    },
    ...TUS_ERRORS,
    ...PATCH_REFUSALS,
    '405': tus({
      ...problem(
        '`method_not_allowed`: no `X-HTTP-Method-Override`, or one other than `PATCH`, `HEAD`, `DELETE`.',
      ),
      headers: {
        Allow: {
          description:
            '`HEAD, POST, PATCH, DELETE, OPTIONS` (a POST is served, with `X-HTTP-Method-Override`).',
          schema: { type: 'string' },
        },
      },
    }),
    // The component as it is (it carries `Tus-Resumable` itself).
    '412': ref('responses', 'TusVersionRefused'),
    '413': tusProblem(
      '`upload_length_exceeded`: the body goes past `Upload-Length`; the upload is removed.',
    ),
  },
} satisfies Operation;

/** The upload's id, at the path level of `/v1/uploads/{uploadId}` (every method takes it). */
const uploadIdParameter = {
  name: 'uploadId',
  in: 'path',
  required: true,
  description: 'The last segment of the `Location` that created the upload (32 hex digits).',
  schema: {
    type: 'string',
  },
};

export const uploadsContract: ContractModule = {
  operations: [
    discoverUploads,
    createUpload,
    discoverUpload,
    getUploadOffset,
    appendToUpload,
    terminateUpload,
    overrideUploadMethod,
  ],
  pathParameters: { '/v1/uploads/{uploadId}': [uploadIdParameter] },
};
