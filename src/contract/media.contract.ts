import { downloadRequestHeaders, downloadResponses } from './download';
import {
  contentDescriptions,
  evidenceDeleted,
  mediaProbeSchema,
  playDisposition,
} from './evidence.contract';
import { dateTime, itemIdParams, sha256Hex, uuid } from './fields';
import type { ContractModule, Operation } from './operation';
import { json, problem, ref, standardErrors } from './operation';
import { z } from './zod';

export type MediaProbe = z.infer<typeof mediaProbeSchema>;

export const DERIVATIVE_KIND_NAMES = [
  'poster',
  'contact_sheet',
  'waveform',
  'preview',
  'thumbnail',
] as const;

export const derivativeSchema = z
  .object({
    kind: z.enum(DERIVATIVE_KIND_NAMES),
    status: z.enum(['pending', 'processing', 'ready', 'failed', 'not_applicable', 'unavailable']),
    detail: z
      .string()
      .nullable()
      .openapi({ description: 'Why it failed, is unavailable or not applicable.' }),
    url: z.string(),
    contentType: z.string().nullable(),
    size: z.number().int().nullable(),
    sha256: sha256Hex
      .nullable()
      .openapi({ description: "Hash of the derivative's own bytes (its ETag)." }),
    width: z.number().int().nullable(),
    height: z.number().int().nullable(),
    createdAt: dateTime.nullable(),
  })
  .openapi('Derivative');
export type DerivativeView = z.infer<typeof derivativeSchema>;
/** A derivative's state as the API shows it: stored rows, or what the item's processing implies. */
export type DerivativeState = DerivativeView['status'];

export const derivativeListSchema = z
  .object({
    itemId: uuid,
    sourceSha256: sha256Hex.openapi({
      description: 'The original every derivative was made from.',
    }),
    media: z
      .object({
        status: z
          .enum(['pending', 'processing', 'done', 'partial', 'failed', 'unavailable'])
          .optional(),
        detail: z.string().nullable().optional(),
        updatedAt: dateTime.optional(),
        // Not `mediaProbeSchema.nullable()`: that would make the MediaProbe component nullable.
        probe: z
          .custom<MediaProbe | null>()
          .optional()
          .openapi({ oneOf: [ref('schemas', 'MediaProbe'), { type: 'null' }] }),
      })
      .nullable(),
    derivatives: z.array(derivativeSchema).openapi({
      description:
        'Every derivative this kind of item gets: packing videos poster, contact_sheet, preview; calls waveform, preview; photos thumbnail.',
    }),
    playback: z
      .object({
        source: z.enum(['preview', 'original']),
        url: z.string(),
        contentType: z.string(),
      })
      .partial()
      .nullable()
      .openapi({
        description:
          'What a player should load: the preview, or the original where browsers play it as it is; null until known.',
      }),
  })
  .openapi('DerivativeList');
export type DerivativeList = z.infer<typeof derivativeListSchema>;

export const rebuildResultSchema = z.object({
  itemId: uuid,
  status: z.literal('queued'),
  repaired: z
    .array(z.string())
    .openapi({ description: 'Derivatives whose stored bytes were missing or damaged.' }),
});

export const listDerivatives = {
  method: 'get',
  path: '/v1/evidence/{id}/derivatives',
  tags: ['media'],
  operationId: 'listDerivatives',
  summary: 'Derivatives of an item and their status',
  description:
    "Roles: `support`, `admin`. Recorded as `evidence.view`.\n\nLists every derivative the item's kind gets, with its status: `pending` or `processing` until made, `ready` with its hash and size, `failed` or `unavailable` with the reason, `not_applicable` (a preview when the original already plays in browsers). Derivatives are made in background jobs from a copy of the original checked against its SHA-256; the original is never changed.",
  request: { params: itemIdParams },
  responses: {
    '200': {
      description: 'The derivatives.',
      content: json(derivativeListSchema),
    },
    '404': ref('responses', 'NotFound'),
    '410': evidenceDeleted,
    ...standardErrors,
  },
} satisfies Operation;

export const rebuildDerivatives = {
  method: 'post',
  path: '/v1/evidence/{id}/derivatives/rebuild',
  tags: ['media'],
  operationId: 'rebuildDerivatives',
  summary: "Process an item's media again",
  description:
    'Role: `admin`. Recorded as `media.derive` (`requested: rebuild`).\n\nReady derivatives whose stored bytes are missing or damaged are made anew, failed ones are tried again (after ffmpeg was installed, say), ready ones are kept. The job is queued for whichever instance runs workers.',
  request: { params: itemIdParams },
  responses: {
    '202': {
      description: 'Queued.',
      content: json(rebuildResultSchema),
    },
    '404': ref('responses', 'NotFound'),
    '410': problem('`evidence_deleted`.'),
    ...standardErrors,
  },
} satisfies Operation;

const DOWNLOAD_INTRO =
  "Roles: `support`, `admin`. Recorded in the audit trail as `derivative.download` (with the derivative's kind and hash and the original's hash) before a byte is sent.\n\n";
const DOWNLOAD_RULES =
  " While it is not made yet, or could not be: 404 `derivative_not_ready` (with `derivativeStatus`); when the item's kind has none: 404 `derivative_not_applicable`. A deleted item's derivatives are gone with it: 410 `evidence_deleted`. ETag and `Repr-Digest` are the derivative's own SHA-256.";

/** GET of one derivative's bytes: the same answers for each kind, as the route serves them. */
const derivativeDownload = (path: string, operationId: string, summary: string, what: string) =>
  ({
    method: 'get',
    path: `/v1/evidence/{id}/${path}`,
    tags: ['media'],
    operationId,
    summary,
    description: `${DOWNLOAD_INTRO}${what}${DOWNLOAD_RULES}`,
    request: {
      params: itemIdParams,
      query: z.object({
        disposition: playDisposition,
      }),
      headers: downloadRequestHeaders(),
    },
    responses: {
      ...downloadResponses(contentDescriptions),
      '404': ref('responses', 'NotFound'),
      '410': evidenceDeleted,
      ...standardErrors,
      '500': problem(
        "`evidence_damaged`: the original's stored bytes are known to be damaged; nothing made from them is served.",
      ),
    },
  }) satisfies Operation;

export const getThumbnail = derivativeDownload(
  'thumbnail',
  'getThumbnail',
  'Thumbnail',
  "A photo's thumbnail (JPEG, at most 480 px, EXIF stripped) or a packing video's poster frame.",
);
export const getPoster = derivativeDownload(
  'poster',
  'getPoster',
  'Poster frame',
  "A packing video's poster frame (JPEG, at most 720p).",
);
export const getContactSheet = derivativeDownload(
  'contact-sheet',
  'getContactSheet',
  'Contact sheet',
  "A packing video's 3×3 contact sheet: nine frames across the clip, each with its timestamp (JPEG).",
);
export const getWaveform = derivativeDownload(
  'waveform',
  'getWaveform',
  'Waveform',
  "A call recording's waveform (PNG, 1600 px wide): one lane per channel, so agent and customer on a stereo recording are told apart.",
);
export const getPreview = derivativeDownload(
  'preview',
  'getPreview',
  'Browser-playable preview',
  'H.264/AAC MP4 with faststart, at most 720p, for a packing video; AAC in MP4 (`audio/mp4`) for a call recording. Only made when the original does not play in common browsers: otherwise 404 `derivative_not_applicable` with `contentUrl`. Supports Range for seeking.',
);

export const mediaContract: ContractModule = {
  operations: [
    listDerivatives,
    getThumbnail,
    getPoster,
    getContactSheet,
    getWaveform,
    getPreview,
    rebuildDerivatives,
  ],
};
