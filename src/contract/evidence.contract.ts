import { downloadRequestHeaders, downloadResponses } from './download';
import { problem, ref, standardErrors, type ContractModule, type Operation } from './operation';
import { z } from './zod';

/** `{id}` of an evidence item. */
export const itemIdParams = z.object({
  id: z.string().openapi({
    format: 'uuid',
    param: { description: 'Evidence item id (a UUID). Any other value gets 404 `not_found`.' },
  }),
});

const disposition = (description: string) =>
  z.enum(['inline', 'attachment']).default('attachment').openapi({ param: { description } });

const contentDescriptions = {
  whole: 'The whole file.',
  contentDisposition:
    '`attachment` (default) or `inline` (with `disposition=inline`), with `filename` (ASCII fallback) and `filename*` (UTF-8) from the original filename, or the item id when there was none.',
  contentLength: 'The item size in bytes.',
};

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
      disposition: disposition(
        '`inline` to play in the browser; any other value means `attachment`.',
      ),
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
    '410': problem(
      '`evidence_deleted`: the item was deleted; its tombstone and custody history remain (`GET /v1/evidence/{id}`).',
    ),
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

export const evidenceContract: ContractModule = {
  operations: [downloadEvidence, headEvidence],
};
