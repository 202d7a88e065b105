import { EVIDENCE_KINDS } from '../base/kinds';
import { identifier, isoTimestamp, phoneField } from '../base/fields';
import { downloadRequestHeaders, downloadResponses, OCTETS } from './download';
import {
  dateTime,
  instantQuery,
  itemIdParams,
  pageCursor,
  pageLimit,
  sha256Hex,
  uuid,
} from './fields';
import { reasonBody, reasonRefused } from './holds.contract';
import type { ContractModule, Operation } from './operation';
import { bodyTooLarge, complaintIdRefused, json, problem, ref, standardErrors } from './operation';
import { z } from './zod';

const nullableString = z.string().nullable();
/** zod-to-openapi leaves `null` out of a nullable enum's `enum`, which would refuse it. */
const nullableEnum = <T extends [string, ...string[]]>(values: T) =>
  z
    .enum(values)
    .nullable()
    .openapi({ enum: [...values, null] });

// ---------------------------------------------------------------------------------------------
// Shapes: the items, receipts and segments the evidence routes answer with.

export const evidenceKindSchema = z
  .enum(EVIDENCE_KINDS, {
    errorMap: () => ({ message: `must be one of ${EVIDENCE_KINDS.join(', ')}` }),
  })
  .openapi('EvidenceKind');

export const verifyStatusSchema = z
  .enum(['ok', 'mismatch', 'missing', 'size_mismatch'])
  .openapi('VerifyStatus', {
    description:
      "`ok`: the bytes hash to the recorded SHA-256 and every record agrees; `missing`: the stored blob is gone; `size_mismatch`: the blob's size differs; `mismatch`: anything else disagrees (the bytes' hash, the creation event, the content address).",
  });

export const evidenceItemSchema = z
  .object({
    id: uuid,
    kind: evidenceKindSchema,
    sha256: sha256Hex.openapi({
      description: 'SHA-256 of the bytes, lowercase hex, computed by the server.',
    }),
    size: z.number().int().min(1).openapi({ description: 'Size in bytes.' }),
    contentType: z
      .string()
      .openapi({ description: 'Sniffed from the bytes, never taken from the client.' }),
    originalFilename: nullableString.openapi({
      description:
        'The uploaded filename, sanitised (last path segment, no control characters, at most 255 UTF-8 bytes).',
    }),
    capturedAt: dateTime.openapi({
      description: 'From the upload, else the time it was received.',
    }),
    receivedAt: dateTime,
    source: nullableString,
    orderIds: z.array(z.string()).openapi({ description: 'Sorted.' }),
    complaintIds: z.array(z.string()).openapi({ description: 'Sorted.' }),
    callId: nullableString,
    fromNumber: nullableString.openapi({ description: 'As given.' }),
    toNumber: nullableString.openapi({ description: 'As given.' }),
    fromNumberE164: nullableString.openapi({
      description: 'E.164 form of `fromNumber`; null when it cannot be normalised.',
    }),
    toNumberE164: nullableString.openapi({
      description: 'E.164 form of `toNumber`; null when it cannot be normalised.',
    }),
    agentId: nullableString,
    direction: nullableEnum(['inbound', 'outbound']),
    stationId: nullableString,
    operatorId: nullableString,
    trackingNumber: nullableString,
    contentUrl: z.string().openapi({ description: '`/v1/evidence/{id}/content`.' }),
    status: z.enum(['archived', 'deleted']).openapi({
      description:
        '`deleted` items are tombstones: hash, size, times, links and custody history stay, the bytes are gone.',
    }),
    deletedAt: dateTime.nullable().openapi({
      description: 'When it was deleted (by an admin or by retention); null while archived.',
    }),
    deletionReason: nullableString.openapi({
      description: "The admin's reason, or `retention: <kind> kept <n> days`; null while archived.",
    }),
    lastVerification: z
      .object({ status: verifyStatusSchema, checkedAt: dateTime })
      .nullable()
      .openapi({
        description:
          'The latest integrity check (on demand or by the scrub); null when never verified.',
      }),
    worm: z
      .object({
        status: z.enum(['in_force', 'not_in_force', 'expired', 'not_configured']),
        mode: nullableEnum(['GOVERNANCE', 'COMPLIANCE']).openapi({
          description: 'The retention mode the store reports for the object.',
        }),
        retainUntil: dateTime.nullable().openapi({
          description: 'Until when the store retains the object, as it reports it.',
        }),
      })
      .nullable()
      .openapi({
        description:
          "WORM protection of the item's bytes as read back from the store after archiving (never assumed from the request): `in_force` when S3 Object Lock retention of the configured mode is on the object, reaching at least the configured retention when it was written (a shorter one, such as a bucket default, is extended first), `not_in_force` when Object Lock is configured but the store did not apply it (even when asked again with PutObjectRetention), `expired` once `retainUntil` has passed (judged at the time of the request; the configured retention counts from archiving and is not renewed, except by a new upload of the same bytes), `not_configured` without S3 Object Lock. Null for items archived before the service checked it.",
      }),
    integrity: z.enum(['unverified', 'ok', 'problem', 'damaged']).openapi({
      description:
        '`damaged`: a verification, the scrub or a full download found that the stored bytes do not hash to `sha256`; nothing made from them is served (500 `evidence_damaged`) until the genuine bytes are uploaded again, which repairs the blob (`evidence.repair` in the audit trail). `ok`: the last verification passed; `problem`: it failed without finding the bytes damaged (e.g. the blob is missing); `unverified`: never checked.',
    }),
    damagedAt: dateTime.nullable().openapi({
      description: 'When the damage was found; null unless `integrity` is `damaged`.',
    }),
  })
  .openapi('EvidenceItem');
export type EvidenceItem = z.infer<typeof evidenceItemSchema>;

export const duplicateReceiptSchema = z
  .object({
    id: uuid,
    sha256: sha256Hex,
    size: z.number().int().min(1),
    orderIds: z.array(z.string()).openapi({ description: 'The orders this key linked, sorted.' }),
    complaintIds: z
      .array(z.string())
      .openapi({ description: 'The complaints this key linked, sorted.' }),
    duplicate: z.literal(true),
  })
  .strict()
  .openapi('DuplicateReceipt', {
    description:
      "What an `ingest` key that delivered bytes another key archived first may know of the item: its id, the bytes' SHA-256 and size, and the links this key added itself. Nothing else (numbers, agent, other orders or complaints) is shown to it, now or later: `GET /v1/evidence/{id}` answers this key with the same receipt. The key that archived the item, and `support` and `admin` keys, see the whole `EvidenceItem`.",
  });
export type DuplicateReceipt = z.infer<typeof duplicateReceiptSchema>;

export const segmentSchema = z
  .object({
    id: uuid,
    orderId: z.string(),
    trackingNumber: nullableString,
    startSec: z.number(),
    endSec: z.number(),
    contentUrl: z.string().openapi({
      description:
        'The cut of just this part (`/content?segment=`), once the media pipeline has made it.',
    }),
  })
  .openapi('Segment');
export type Segment = z.infer<typeof segmentSchema>;

const SEVEN_DAYS = 7 * 86_400;

/** Scan events from a packing station: which part of a clip belongs to which order. */
export const segmentInputSchema = z
  .object({
    orderId: identifier(),
    trackingNumber: identifier().optional(),
    startSec: z.number().finite().min(0).max(SEVEN_DAYS),
    endSec: z
      .number()
      .finite()
      .min(0)
      .max(SEVEN_DAYS)
      .openapi({ description: "After startSec; clamped to the recording's end when cut." }),
  })
  .strict()
  .refine((s) => s.endSec > s.startSec, { message: 'endSec must be after startSec' })
  .openapi('SegmentInput');
export type SegmentInput = z.infer<typeof segmentInputSchema>;

export const segmentInputsSchema = z
  .array(segmentInputSchema)
  .max(500, 'at most 500 segments at a time');

export const mediaProbeSchema = z
  .object({
    container: nullableString,
    durationSeconds: z.number().nullable(),
    bitRate: z.number().nullable(),
    video: z
      .object({
        codec: nullableString,
        profile: nullableString,
        width: z.number().int(),
        height: z.number().int(),
        displayWidth: z
          .number()
          .int()
          .openapi({ description: 'After the rotation the file asks for.' }),
        displayHeight: z.number().int(),
        rotation: z.number(),
        frameRate: z.number().nullable(),
        pixelFormat: nullableString,
        bitRate: z.number().nullable(),
      })
      .partial()
      .nullable(),
    audio: z
      .object({
        codec: nullableString,
        sampleRate: z.number().nullable(),
        channels: z.number().int().nullable(),
        channelLayout: nullableString,
        bitRate: z.number().nullable(),
      })
      .partial()
      .nullable(),
    image: z
      .object({
        width: z.number().int(),
        height: z.number().int(),
        orientation: z.number().int().nullable(),
      })
      .partial(),
    creationTime: nullableString,
    tags: z.record(z.string()),
  })
  .partial()
  .openapi('MediaProbe', {
    description:
      "What ffprobe (or, for photos, sharp) read from the file's headers. Tags are as the file states them, never trusted as fact.",
  });

export const mediaSummarySchema = z
  .object({
    status: z.enum(['pending', 'processing', 'done', 'partial', 'failed', 'unavailable']).openapi({
      description:
        '`partial`: some derivatives failed; `unavailable`: no ffmpeg on the worker (see `detail`).',
    }),
    detail: nullableString.openapi({
      description: 'Why processing failed or is waiting, in plain words.',
    }),
    updatedAt: dateTime,
    // Not `mediaProbeSchema.nullable()`: zod-to-openapi would make the MediaProbe component nullable.
    probe: z.union([mediaProbeSchema, z.null()]),
    derivativesUrl: z.string(),
  })
  .nullable()
  .openapi('MediaSummary', {
    description: 'Where the media pipeline stands for this item (null for items it has not seen).',
  });
export type MediaSummary = z.infer<typeof mediaSummarySchema>;

export const evidenceItemDetailSchema = evidenceItemSchema
  .extend({ media: mediaSummarySchema, segments: z.array(segmentSchema) })
  .openapi('EvidenceItemDetail');
export type EvidenceItemDetail = z.infer<typeof evidenceItemDetailSchema>;

export const itemListSchema = z.array(evidenceItemSchema).openapi('ItemList');

export const searchResultSchema = z
  .object({
    items: itemListSchema,
    nextCursor: nullableString.openapi({ description: 'Opaque; null on the last page.' }),
  })
  .openapi('SearchResult');
export type SearchResult = z.infer<typeof searchResultSchema>;

// ---------------------------------------------------------------------------------------------
// Requests

/** The limit on how far in the future a declared capture time may lie (clock skew). */
const MAX_CLOCK_SKEW_MS = 24 * 3600 * 1000;

/** Order or complaint ids of a form: one value or the field repeated; duplicates merged. */
const repeatedIds = (description: string) =>
  z
    .union([identifier(), z.array(identifier())])
    .transform((v) => [...new Set(Array.isArray(v) ? v : [v])])
    .refine((v) => v.length <= 100, 'may be given at most 100 times')
    .optional()
    .openapi({
      type: 'array',
      items: { type: 'string', minLength: 1, maxLength: 128 },
      maxItems: 100,
      description,
    });

/**
 * The fields of an upload, as a multipart form (`POST /v1/evidence`), tus metadata or a pushed
 * call's query and headers carry them. Validated by the ingest service (src/ingest/upload-form.ts).
 */
const uploadFieldsShape = {
  kind: evidenceKindSchema,
  orderId: repeatedIds('Order ids to link; repeat the field for several (duplicates are merged).'),
  complaintId: repeatedIds(
    'Complaint ids to link; repeat the field for several (duplicates are merged).',
  ),
  capturedAt: isoTimestamp(MAX_CLOCK_SKEW_MS).optional().openapi({
    type: 'string',
    format: 'date-time',
    description:
      'When it was recorded: ISO 8601 with a time zone, at most a day in the future. Defaults to the time received.',
  }),
  sha256: z
    .string()
    .trim()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hexadecimal characters')
    .transform((v) => v.toLowerCase())
    .optional()
    .openapi({
      description:
        'Expected SHA-256 (hex); a mismatch is 422 `checksum_mismatch` and nothing is stored.',
    }),
  source: identifier()
    .optional()
    .openapi({ description: 'The system that sent it (e.g. a PBX or station name).' }),
  callId: identifier(256)
    .optional()
    .openapi({ description: "Calls: the phone system's call id; unique per `source`." }),
  fromNumber: phoneField()
    .optional()
    .openapi({ description: 'Calls: caller number; normalised to E.164 for search.' }),
  toNumber: phoneField()
    .optional()
    .openapi({ description: 'Calls: callee number; normalised to E.164 for search.' }),
  agentId: identifier().optional().openapi({ description: 'Calls: the support agent.' }),
  direction: z
    .enum(['inbound', 'outbound'])
    .optional()
    .openapi({ description: 'Calls: direction.' }),
  stationId: identifier().optional().openapi({ description: 'Packing: the packing station.' }),
  operatorId: identifier()
    .optional()
    .openapi({ description: 'Packing: the operator at the station.' }),
  trackingNumber: identifier()
    .optional()
    .openapi({ description: 'Packing: the parcel tracking number.' }),
  /** Scan events, a JSON array of segmentInputSchema (parsed by evidence/segments.ts). */
  segments: z
    .string()
    .max(64 * 1024, 'must be at most 64 KiB of JSON')
    .optional()
    .openapi({
      description:
        'Scan events of a long recording, as a JSON array of `{orderId, trackingNumber, startSec, endSec}` (at most 500): each order is linked and finds its part of the clip. Not for photos.',
    }),
};

/** The upload fields, validated (unknown names refused). */
export const uploadFieldsSchema = z.object(uploadFieldsShape).strict();
export type UploadFields = z.output<typeof uploadFieldsSchema>;

/** The multipart form of `POST /v1/evidence`: the upload fields and one `file` part. */
export const uploadFormSchema = z
  .object({
    // Required (a custom check refuses undefined): the form has exactly one file part.
    file: z
      .custom<unknown>((v) => v !== undefined)
      .openapi({
        type: 'string',
        format: 'binary',
        description: 'The evidence file; exactly one part, named `file`.',
        ...({ contentMediaType: 'application/octet-stream' } as object),
      }),
    ...uploadFieldsShape,
  })
  .strict()
  .openapi('UploadForm');

export const linksBody = z
  .object({
    orderIds: z.array(identifier()).max(100).default([]),
    complaintIds: z.array(identifier()).max(100).default([]),
  })
  .strict()
  .refine((b) => b.orderIds.length + b.complaintIds.length > 0, {
    message: 'must contain at least one of orderIds or complaintIds',
  })
  .openapi('LinksRequest', { description: 'At least one id in total.' });
export type LinksRequest = z.output<typeof linksBody>;

export const searchQuery = z
  .object({
    orderId: identifier()
      .optional()
      .openapi({ param: { description: 'Items linked to this order id.' } }),
    complaintId: identifier()
      .optional()
      .openapi({ param: { description: 'Items linked to this complaint id.' } }),
    kind: z.enum(EVIDENCE_KINDS).optional(),
    phone: phoneField()
      .optional()
      .openapi({
        param: {
          description:
            'Calls from or to this number, compared in E.164 form; a number that cannot be normalised is 400 `invalid_phone_number`.',
        },
      }),
    stationId: identifier()
      .optional()
      .openapi({ param: { description: 'Items from this packing station.' } }),
    from: instantQuery('Captured at or after this instant (ISO 8601 with a time zone).'),
    to: instantQuery('Captured before this instant (exclusive; ISO 8601 with a time zone).'),
    limit: pageLimit(200, 50),
    cursor: pageCursor(200),
  })
  .strict();
export type SearchQuery = z.output<typeof searchQuery>;

/** `{ref}` of an order or complaint link to remove. */
const unlinkParams = (type: 'order' | 'complaint') =>
  itemIdParams.extend({
    ref: identifier().openapi({ param: { description: `The ${type} id to unlink.` } }),
  });

export const unlinkOrderParams = unlinkParams('order');
export const unlinkComplaintParams = unlinkParams('complaint');

export const orderEvidenceParams = z.object({ orderId: identifier() });
export const complaintEvidenceParams = z.object({ complaintId: identifier() });

export const addSegmentsBody = z.object({ segments: segmentInputsSchema });

export const callRecordingParams = z.object({
  callId: identifier(256).openapi({
    param: {
      description:
        "The phone system's call id (Asterisk's UNIQUEID, a Twilio CallSid...), 1-256 printable characters. Together with `source` it identifies the call.",
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// Operations

const idempotentReplayed = {
  description: '`true` when this is a replay of an earlier response for the same Idempotency-Key.',
  schema: { type: 'string' as const, ...({ const: 'true' } as object) },
};
const created = {
  description: 'Archived as a new item.',
  headers: {
    Location: {
      description: '`/v1/evidence/{id}` of the new item.',
      schema: { type: 'string' as const },
    },
    'Idempotent-Replayed': idempotentReplayed,
  },
  content: json(evidenceItemSchema),
};
const itemOrReceipt = z.union([evidenceItemSchema, duplicateReceiptSchema]);
const uploadRefusals = {
  '400': problem(
    'Invalid upload: `validation_failed`, `unknown_field`, `invalid_multipart`, `missing_file`, `invalid_filename` (path, control characters or over 255 bytes), `too_many_files`, `too_many_fields`, `field_name_too_long`, `field_value_too_long`, `upload_aborted` or `invalid_idempotency_key`. Nothing is stored.',
  ),
  '410': problem(
    '`evidence_deleted`: these bytes belonged to an item that was deleted (`itemId` names it). Nothing is stored.',
  ),
  '413': problem(
    '`file_too_large`: the file (or the declared Content-Length) exceeds the upload limit; `body_too_large` for a JSON body over 64 KiB. Nothing is stored.',
  ),
  '415': problem(
    '`multipart_required`: the body is not multipart/form-data; `unsupported_media_type`: the sniffed content type is not accepted for the kind. Nothing is stored.',
  ),
  '422': problem(
    '`empty_file`, `checksum_mismatch` (the declared `sha256` differs from the received bytes) or `idempotency_key_reused`. Nothing is stored.',
  ),
};
/**
 * What an upload answers, a form's or a pushed recording's: `duplicate` describes its 200 (bytes
 * already archived), `conflict` its 409.
 */
const archiveResponses = (duplicate: string, conflict: string) => ({
  '200': {
    description: duplicate,
    headers: { 'Idempotent-Replayed': idempotentReplayed },
    content: json(itemOrReceipt),
  },
  '201': created,
  ...uploadRefusals,
  '409': problem(conflict),
  ...standardErrors,
});

export const uploadEvidence = {
  method: 'post',
  path: '/v1/evidence',
  tags: ['evidence'],
  operationId: 'uploadEvidence',
  summary: 'Upload one evidence file',
  description:
    "Roles: `ingest`, `admin`. Recorded in the audit trail as `evidence.create` (`evidence.duplicate` for bytes already archived and for replays).\n\nOne `file` part plus the fields below. The SHA-256 is computed from the received bytes and the content type is sniffed from them (the client's type is ignored); it must fit the kind (`video/*` for `packing_video`, `audio/*` for `call_recording`, `image/*` for `photo`), else 415 `unsupported_media_type`. A damaged file of the right type is stored as is. Unknown field names are refused (400 `unknown_field`); fields other than `orderId` and `complaintId` may be given only once.\n\nBytes already archived are not stored twice: the new order/complaint links are merged into the existing item and the answer is 200, with the whole item for the key that archived it (and `admin`), and only a `DuplicateReceipt` for any other key (same bytes are no right to what another device recorded about them). Bytes of an item marked damaged (`integrity: damaged`) repair it: they are written over the damaged blob (on S3 as a new object version; a locked damaged version is kept), read back and checked, recorded as `evidence.repair`, and the item is served again. With an `Idempotency-Key` that this key already used successfully, the file is received again and, if its SHA-256 matches the first attempt's, the first response (status and body) is replayed with `Idempotent-Replayed: true`; a different file under the same key is 422 `idempotency_key_reused` and nothing of it is stored. When the bytes show early that the upload will be refused (wrong type after the first 4 KiB when `kind` precedes the file, or over the size limit), the error is answered at once and the connection closed, without waiting for the rest of the body. Bytes of an item that was deleted are refused with 410 `evidence_deleted` (a deleted item is never revived).",
  request: {
    headers: z.object({
      'Idempotency-Key': z
        .string()
        .regex(/^[\x21-\x7e]{1,255}$/)
        .optional()
        .openapi({
          param: {
            description:
              'Makes retries safe: per API key, the same value with the same bytes returns the first response. Reusing it for a different file is 422 `idempotency_key_reused`.',
          },
        }),
    }),
    body: {
      required: true,
      content: {
        'multipart/form-data': {
          schema: uploadFormSchema,
          encoding: { file: { contentType: '*/*' } },
        },
      },
    },
  },
  responses: archiveResponses(
    'These bytes were already archived. The key that archived them (and an `admin` key) gets the existing item, with the new links merged in; any other key gets a `DuplicateReceipt` (id, SHA-256, size, the links it added, `duplicate: true`) and nothing else about the item. Also the replay of an earlier 200 for the same Idempotency-Key, as this key may see it.',
    '`call_id_conflict`: this source already has a recording with a different file for this `callId`. Nothing is stored.',
  ),
} satisfies Operation;

export const searchEvidence = {
  method: 'get',
  path: '/v1/evidence',
  tags: ['evidence'],
  operationId: 'searchEvidence',
  summary: 'Search evidence',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `evidence.list`.\n\nFilters combine with AND. Newest capture first (by `capturedAt`, then id, descending), keyset-paginated: pass `nextCursor` as `cursor` for the next page. Unknown query parameters are refused (400 `validation_failed`). Deleted items (tombstones) are included, with `status` `deleted`.',
  request: { query: searchQuery },
  responses: {
    '200': {
      description: 'One page of results.',
      content: json(searchResultSchema),
    },
    '400': problem('`validation_failed`, `invalid_cursor` or `invalid_phone_number`.'),
    ...standardErrors,
  },
} satisfies Operation;

export const getEvidence = {
  method: 'get',
  path: '/v1/evidence/{id}',
  tags: ['evidence'],
  operationId: 'getEvidence',
  summary: "One item's metadata",
  description:
    'Roles: `support`, `admin`; `ingest` keys only for items they uploaded (their receipts), else 403 `forbidden`. Recorded in the audit trail as `evidence.view`. A deleted item is still answered (200), as its tombstone with `status` `deleted`.\n\n`media` carries the probe (duration, container, codecs, resolution, frame rate, sample rate, channels, bit rate, creation-time tags) once the media pipeline has run.',
  request: { params: itemIdParams },
  responses: {
    '200': {
      description:
        'The item. An `ingest` key that only delivered these bytes again after another key archived them gets its `DuplicateReceipt` instead.',
      content: json(z.union([evidenceItemDetailSchema, duplicateReceiptSchema])),
    },
    '404': ref('responses', 'NotFound'),
    ...standardErrors,
  },
} satisfies Operation;

export const deleteEvidence = {
  method: 'delete',
  path: '/v1/evidence/{id}',
  tags: ['evidence'],
  operationId: 'deleteEvidence',
  summary: 'Delete an item',
  description:
    'Roles: `admin`. Recorded in the audit trail as `evidence.delete`, with the reason, hash, size and kind.\n\nLeaves a tombstone: the item keeps its id, hash, size, times and links and its whole custody history, gains `status` `deleted`, `deletedAt` and `deletionReason`, and its bytes are removed once the tombstone has committed (a store that refuses, e.g. under S3 Object Lock retention, keeps them until a later retention run purges them). An item under legal hold, on itself or on a complaint it belongs to, is refused. Deletion is final: the same bytes uploaded again are refused with 410 `evidence_deleted`.',
  request: {
    params: itemIdParams,
    body: {
      required: true,
      description: 'Why the item is deleted; kept on the tombstone and in the audit trail.',
      content: json(reasonBody),
    },
  },
  responses: {
    '200': {
      description: "The item's tombstone (`status` is `deleted`).",
      content: json(evidenceItemSchema),
    },
    '400': reasonRefused,
    '404': ref('responses', 'NotFound'),
    '409': problem(
      '`legal_hold`: the item is under legal hold (on the item or on a complaint it belongs to); release the hold first. `evidence_busy`: another request is changing the item; try again.',
    ),
    '410': problem('`evidence_deleted`: the item was already deleted.'),
    '413': bodyTooLarge,
    ...standardErrors,
  },
} satisfies Operation;

export const addEvidenceLinks = {
  method: 'post',
  path: '/v1/evidence/{id}/links',
  tags: ['evidence'],
  operationId: 'addEvidenceLinks',
  summary: 'Link an item to more orders or complaints',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `evidence.link`.\n\nAdds links (existing ones are kept; remove one with `DELETE /v1/evidence/{id}/links/orders/{ref}` or `.../complaints/{ref}`) and returns the updated item.',
  request: {
    params: itemIdParams,
    body: { required: true, content: json(linksBody) },
  },
  responses: {
    '200': {
      description: 'The item with its links.',
      content: json(evidenceItemSchema),
    },
    '400': problem(
      '`invalid_json` or `validation_failed` (unknown property, empty body, over 100 ids, bad id).',
    ),
    '404': ref('responses', 'NotFound'),
    '413': bodyTooLarge,
    ...standardErrors,
  },
} satisfies Operation;

const removeLink = (type: 'order' | 'complaint') =>
  ({
    method: 'delete',
    path: `/v1/evidence/{id}/links/${type}s/{ref}`,
    tags: ['evidence'],
    operationId: type === 'order' ? 'removeEvidenceOrderLink' : 'removeEvidenceComplaintLink',
    summary: `Unlink an item from one ${type}`,
    description: `Roles: \`support\`, \`admin\`. Recorded in the audit trail as \`evidence.unlink\`.\n\nRemoves one ${type} link and returns the updated item. Refused while the item is under legal hold, since a link can be what holds it.`,
    request: { params: type === 'order' ? unlinkOrderParams : unlinkComplaintParams },
    responses: {
      '200': {
        description: 'The item with its remaining links.',
        content: json(evidenceItemSchema),
      },
      '400': problem(`\`validation_failed\`: the ${type} id is not a valid identifier.`),
      '404': problem(
        `\`not_found\`: no evidence item with this id, or the item is not linked to this ${type}.`,
      ),
      '409': problem(
        '`legal_hold`: the item is under legal hold; its links cannot be removed until the hold is released.',
      ),
      ...standardErrors,
    },
  }) satisfies Operation;

export const removeEvidenceOrderLink = removeLink('order');
export const removeEvidenceComplaintLink = removeLink('complaint');

/** The download headers of an item's bytes (the original's, or a derivative's). */
export const contentDescriptions = {
  whole: 'The whole file.',
  contentDisposition:
    '`attachment` (default) or `inline` (with `disposition=inline`), with `filename` (ASCII fallback) and `filename*` (UTF-8) from the original filename, or the item id when there was none.',
  contentLength: 'The item size in bytes.',
};

const disposition = (description: string) =>
  z.enum(['inline', 'attachment']).default('attachment').openapi({ param: { description } });

/** `?disposition` of a download a browser may play. */
export const playDisposition = disposition(
  '`inline` to play in the browser; any other value means `attachment`.',
);

/** 410 of an operation on a deleted item's bytes. */
export const evidenceDeleted = problem(
  '`evidence_deleted`: the item was deleted; its tombstone and custody history remain (`GET /v1/evidence/{id}`).',
);

const segmentQueryProblem = problem(
  '`validation_failed` (`field` `segment`): `segment` given more than once, or empty.',
);

export const downloadEvidence = {
  method: 'get',
  path: '/v1/evidence/{id}/content',
  tags: ['evidence'],
  operationId: 'downloadEvidence',
  summary: 'The original bytes',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `evidence.download` before a byte is sent (also for a 304).\n\nServes the stored bytes unaltered, with the sniffed content type. A single `bytes` range (including `bytes=-N`) gives 206; a malformed or multi-range `Range` gets the full body. If the stored blob is missing or its size differs from the archived size, nothing is served: 500 `evidence_unavailable`. Once the stored bytes were found not to hash to the archived SHA-256 (by `POST /v1/evidence/{id}/verify`, the scrub, or a full download whose bytes hashed wrong as they streamed: that download is cut before its last bytes), nothing is served: 500 `evidence_damaged`, recorded as a failed `evidence.download`; uploading the genuine bytes again repairs it. A deleted item has no bytes: 410 `evidence_deleted`.',
  request: {
    params: itemIdParams,
    query: z.object({
      disposition: playDisposition,
      segment: z
        .string()
        .optional()
        .openapi({
          format: 'uuid',
          param: {
            description:
              "A segment id: serves the cut of just that part (stream copy, recording its parent's hash and offsets), audited as `derivative.download`. 404 `derivative_not_ready` until the media pipeline has cut it, 404 `not_found` for a segment of another item.",
          },
        }),
    }),
    headers: downloadRequestHeaders(),
  },
  responses: {
    ...downloadResponses(contentDescriptions),
    '400': segmentQueryProblem,
    '404': ref('responses', 'NotFound'),
    '410': evidenceDeleted,
    ...standardErrors,
    '500': problem(
      '`evidence_damaged`: the stored bytes were found not to match the archived SHA-256 (`integrity: damaged`); nothing of them is served, a range neither. `evidence_unavailable`: the blob is missing or has the wrong size.',
    ),
  },
} satisfies Operation;

export const headEvidence = {
  method: 'head',
  path: '/v1/evidence/{id}/content',
  tags: ['evidence'],
  operationId: 'headEvidence',
  summary: 'Headers of the original bytes',
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `evidence.download`.\n\nThe same status and headers as GET, without a body. `Range` and `If-Range` are for GET only (RFC 9110 §14.2): a HEAD with them gets the whole's headers (200, its full `Content-Length`), never 206 or 416.",
  request: {
    params: itemIdParams,
    query: z.object({
      disposition: disposition(
        '`inline` or `attachment` (default); any other value means `attachment`.',
      ),
    }),
    headers: downloadRequestHeaders(),
  },
  responses: {
    ...downloadResponses({
      ...contentDescriptions,
      head: true,
      whole: 'The whole file would be sent.',
    }),
    '400': segmentQueryProblem,
    '404': ref('responses', 'NotFound'),
    '410': problem('The item was deleted (no body).'),
    ...standardErrors,
  },
} satisfies Operation;

/** How the items linked to an order or a complaint are listed. */
const LINKED_ITEMS =
  'Roles: `support`, `admin`. Recorded in the audit trail as `evidence.list`.\n\nOldest capture first; at most 1000 items.';

export const listOrderEvidence = {
  method: 'get',
  path: '/v1/orders/{orderId}/evidence',
  tags: ['evidence'],
  operationId: 'listOrderEvidence',
  summary: 'Everything linked to an order',
  description: LINKED_ITEMS,
  request: { params: orderEvidenceParams },
  responses: {
    '200': {
      description: 'The items linked to the order (empty when none).',
      content: json(
        z.object({
          orderId: z.string(),
          items: z.array(
            evidenceItemSchema.extend({
              segments: z.array(segmentSchema).optional().openapi({
                description:
                  "This order's segments of the item (empty for an item linked to the order as a whole).",
              }),
            }),
          ),
        }),
      ),
    },
    '400': problem('`validation_failed`: the order id is not a valid identifier.'),
    ...standardErrors,
  },
} satisfies Operation;

export const listComplaintEvidence = {
  method: 'get',
  path: '/v1/complaints/{complaintId}/evidence',
  tags: ['evidence'],
  operationId: 'listComplaintEvidence',
  summary: 'Everything linked to a complaint',
  description: LINKED_ITEMS,
  request: { params: complaintEvidenceParams },
  responses: {
    '200': {
      description: 'The items linked to the complaint (empty when none).',
      content: json(z.object({ complaintId: z.string(), items: itemListSchema })),
    },
    '400': complaintIdRefused,
    ...standardErrors,
  },
} satisfies Operation;

const callQuery = (description: string) =>
  z.string().optional().openapi({ param: { description } });
const callList = (description: string) =>
  z
    .array(z.string())
    .optional()
    .openapi({ param: { description, style: 'form', explode: true } });

export const pushCallRecording = {
  method: 'put',
  path: '/v1/calls/{callId}/recording',
  tags: ['evidence'],
  operationId: 'pushCallRecording',
  summary: 'A phone system pushes a call recording',
  description:
    'Roles: `ingest`, `admin`. Recorded as `evidence.create` (or `evidence.duplicate`).\n\nThe recording is the raw request body with an `audio/*` Content-Type; the type that counts is sniffed from the bytes (a video is refused with 415 whatever the header says). The body is hashed, size-limited and sniffed in one pass while it streams to storage, exactly like a multipart upload, and nothing partial is ever kept. Metadata comes as query parameters or the headers below; a field given both ways must agree, and an unknown query parameter is refused. Idempotent on the call id (per `source`): a retry with the same bytes answers 200 with the same item; different bytes for the same call answer 409.',
  request: {
    params: callRecordingParams,
    query: z.object({
      source: callQuery('The phone system (e.g. `asterisk-1`); call ids are unique per source.'),
      fromNumber: callQuery("Caller's number, any common format; stored as given and in E.164."),
      toNumber: callQuery('Called number.'),
      direction: z
        .enum(['inbound', 'outbound'])
        .optional()
        .openapi({ param: { description: '`inbound` or `outbound`.' } }),
      agentId: callQuery('The agent on the call.'),
      capturedAt: callQuery('ISO 8601 with a time zone; when the call started. Default: now.'),
      orderId: callList('Order to link; repeat for several.'),
      complaintId: callList('Complaint to link; repeat for several.'),
      sha256: callQuery(
        "The client's SHA-256 of the body (hex); the upload is refused (422) if the bytes differ.",
      ),
    }),
    headers: z.object({
      'X-Call-Source': callQuery('Instead of the `source` query parameter.'),
      'X-Call-From': callQuery('Instead of `fromNumber`.'),
      'X-Call-To': callQuery('Instead of `toNumber`.'),
      'X-Call-Direction': callQuery('Instead of `direction`.'),
      'X-Call-Agent': callQuery('Instead of `agentId`.'),
      'X-Captured-At': callQuery('Instead of `capturedAt`.'),
      'X-Order-Id': callQuery('Instead of `orderId`: comma-separated.'),
      'X-Complaint-Id': callQuery('Instead of `complaintId`: comma-separated.'),
      'Repr-Digest': callQuery(
        'RFC 9530 `sha-256=:<base64>:` (or `Content-Digest`), instead of `sha256`.',
      ),
      'Content-Disposition': callQuery(
        '`attachment; filename="..."`: the file name to keep (optional).',
      ),
      'Idempotency-Key': callQuery('Optional; the call id already makes retries safe.'),
    }),
    body: {
      required: true,
      content: {
        'audio/*': {
          schema: OCTETS,
        },
      },
    },
  },
  responses: archiveResponses(
    'The call already has this recording (a retry): the same item. As for `POST /v1/evidence`, a key that did not archive it gets a `DuplicateReceipt` only.',
    "`call_id_conflict`: this key already archived a recording with different bytes for the call (per `source`); `recording_of_another_call`: these exact bytes are already another call's recording. Nothing was stored.",
  ),
} satisfies Operation;

export const addSegments = {
  method: 'post',
  path: '/v1/evidence/{id}/segments',
  tags: ['evidence'],
  operationId: 'addSegments',
  summary: 'Add per-order segments to a recording',
  description:
    'Roles: `ingest` (for its own uploads), `support`, `admin`. Recorded as `evidence.link`.\n\nAdds scan events to a packing video or call recording: each order is linked to the item, and its part is cut by the media pipeline. A segment already there (same order and offsets) is kept as it is.',
  request: {
    params: itemIdParams,
    body: { required: true, content: json(addSegmentsBody) },
  },
  responses: {
    '201': {
      description: "All the item's segments.",
      content: json(z.object({ itemId: z.string(), segments: z.array(segmentSchema) }).partial()),
    },
    '400': problem(
      '`validation_failed`: a segment is malformed (end before start, unknown field), or the item is a photo.',
    ),
    '404': ref('responses', 'NotFound'),
    '410': problem('`evidence_deleted`.'),
    ...standardErrors,
    '413': ref('responses', 'BodyTooLarge'),
  },
} satisfies Operation;

export const evidenceContract: ContractModule = {
  operations: [
    uploadEvidence,
    searchEvidence,
    getEvidence,
    deleteEvidence,
    addEvidenceLinks,
    removeEvidenceOrderLink,
    removeEvidenceComplaintLink,
    downloadEvidence,
    headEvidence,
    listOrderEvidence,
    listComplaintEvidence,
    pushCallRecording,
    addSegments,
  ],
};
