import { identifier } from '../base/fields';
import { downloadRequestHeaders, downloadResponses, type DownloadOptions } from './download';
import { dateTime, uuid } from './fields';
import type { ContractModule, Operation } from './operation';
import { json, problem, ref, standardErrors } from './operation';
import { z } from './zod';

export const SHARE_LINK_DEFAULT_DAYS = 7;
export const SHARE_LINK_MAX_DAYS = 30;

export const shareLinkSchema = z
  .object({
    id: uuid,
    target: z.object({
      type: z.enum(['item', 'segment', 'bundle']),
      itemId: z.string().nullable(),
      segmentId: z.string().nullable(),
      bundleId: z.string().nullable(),
    }),
    complaintId: z.string().nullable(),
    note: z.string().nullable(),
    createdAt: dateTime,
    createdBy: z.string().openapi({ description: 'The id of the key that created it.' }),
    expiresAt: dateTime,
    revokedAt: dateTime.nullable(),
    status: z.enum(['active', 'expired', 'revoked']),
    useCount: z.number().int(),
    lastUsedAt: dateTime.nullable(),
  })
  .openapi('ShareLink');
export type ShareLinkView = z.infer<typeof shareLinkSchema>;

export const createdShareLinkSchema = shareLinkSchema
  .extend({
    token: z.string().openapi({ description: 'Shown this once: only its SHA-256 is stored.' }),
    url: z.string().openapi({ description: '`/s/{token}`, after `PUBLIC_URL` when it is set.' }),
  })
  .openapi('CreatedShareLink');
export type CreatedShareLink = z.infer<typeof createdShareLinkSchema>;

export const createShareLinkBody = z
  .object({
    itemId: z.string().max(64).optional(),
    segmentId: z.string().max(64).optional(),
    bundleId: z.string().max(64).optional(),
    complaintId: identifier()
      .optional()
      .openapi({ description: 'The complaint it is shared for, to list it there.' }),
    expiresInDays: z
      .number()
      .int('must be a whole number of days')
      .min(1, 'must be at least 1')
      .max(SHARE_LINK_MAX_DAYS, `must be at most ${SHARE_LINK_MAX_DAYS}`)
      .default(SHARE_LINK_DEFAULT_DAYS),
    note: z
      .string()
      .trim()
      .max(500, 'must be at most 500 characters')
      .optional()
      .openapi({ description: 'Who it is for, e.g. "Amazon A-to-z claim 123".' }),
  })
  .strict()
  .openapi({ description: 'Exactly one of `itemId`, `segmentId`, `bundleId`.' })
  .refine((b) => [b.itemId, b.segmentId, b.bundleId].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of itemId, segmentId, bundleId',
  });
export type CreateShareLinkBody = z.infer<typeof createShareLinkBody>;

export const listShareLinksQuery = z
  .object({ complaintId: identifier().optional(), itemId: z.string().max(64).optional() })
  .strict();
export type ListShareLinksQuery = z.infer<typeof listShareLinksQuery>;

const linkId = z.object({ id: uuid });

export const createShareLink = {
  method: 'post',
  path: '/v1/share-links',
  tags: ['share links'],
  operationId: 'createShareLink',
  summary: 'Share an item, a segment or a bundle with someone without a key',
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `share_link.create`.\n\nA read-only link to exactly one of: an item's original bytes, a segment's cut, a dispute bundle. It expires after `expiresInDays` (default 7, at most 30) and can be revoked at any time; after either, it answers 410. The token is 32 random bytes, shown in this answer only; the database keeps its SHA-256. A bundle link takes the bundle's complaint as its `complaintId`.",
  request: {
    body: { required: true, content: json(createShareLinkBody) },
  },
  responses: {
    '201': {
      description: 'The link, with its token and URL (the only time the token is shown).',
      content: json(createdShareLinkSchema),
      headers: {
        Location: {
          description: '`/v1/share-links/{id}` of the new link.',
          schema: { type: 'string' },
        },
      },
    },
    '400': problem(
      '`validation_failed`: not exactly one target, days out of range, unknown fields; `invalid_json`.',
    ),
    '404': problem('`not_found`: no such item, segment or bundle.'),
    '410': problem('`evidence_deleted`: the item was deleted.'),
    '413': ref('responses', 'BodyTooLarge'),
    ...standardErrors,
  },
} satisfies Operation;

export const listShareLinks = {
  method: 'get',
  path: '/v1/share-links',
  tags: ['share links'],
  operationId: 'listShareLinks',
  summary: 'Share links, newest first',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `custody.read`. At most 500; never their tokens.',
  request: { query: listShareLinksQuery },
  responses: {
    '200': {
      description: 'The links.',
      content: json(z.object({ items: z.array(shareLinkSchema) })),
    },
    '400': problem('`validation_failed`: an unknown parameter.'),
    ...standardErrors,
  },
} satisfies Operation;

export const getShareLink = {
  method: 'get',
  path: '/v1/share-links/{id}',
  tags: ['share links'],
  operationId: 'getShareLink',
  summary: 'One share link',
  description: 'Roles: `support`, `admin`.',
  request: { params: linkId },
  responses: {
    '200': {
      description: 'The link (never its token).',
      content: json(shareLinkSchema),
    },
    '404': problem('`not_found`: no such link.'),
    ...standardErrors,
  },
} satisfies Operation;

export const revokeShareLink = {
  method: 'delete',
  path: '/v1/share-links/{id}',
  tags: ['share links'],
  operationId: 'revokeShareLink',
  summary: 'Revoke a share link',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `share_link.revoke`.\n\nThe link answers 410 from now on. Revoking a revoked link answers with it unchanged.',
  request: { params: linkId },
  responses: {
    '200': {
      description: 'The revoked link.',
      content: json(shareLinkSchema),
    },
    '404': problem('`not_found`: no such link.'),
    ...standardErrors,
  },
} satisfies Operation;

/** 32 random bytes, base64url: 256 bits nobody guesses. */
export const SHARE_TOKEN = /^[A-Za-z0-9_-]{43}$/;

const openLinkRequest = {
  params: z.object({ token: z.string().regex(SHARE_TOKEN) }),
  query: z.object({
    download: z
      .string()
      .optional()
      .openapi({ param: { description: 'Present: save as a file instead of showing it.' } }),
  }),
  headers: downloadRequestHeaders({ lastModified: true }),
};

const linkDownload: DownloadOptions = {
  whole: "The bytes: an item, a segment's cut, or a bundle's ZIP.",
  notModified: 'Not modified (If-None-Match, or If-Modified-Since for a bundle); no body.',
  etag: 'Strong: `"<sha256 hex>"` of the item or cut, or `"<manifest SHA-256>"` of a bundle.',
  lastModified: "A bundle's: when it was made.",
  reprDigest:
    'RFC 9530 digest of the whole representation: `sha-256=:<base64>:`. (Items only; not sent for a bundle.)',
  cacheControl: 'Always `private, no-store`.',
  contentDisposition: '`inline` (an item, unless `?download`) or `attachment` with the file name.',
  contentLength: 'The size.',
  contentRange: '`bytes <first>-<last>/<size>`.',
  partialBodySchema: {
    type: 'string',
    format: 'binary',
    contentMediaType: 'application/octet-stream',
  },
  rangeNotSatisfiable: '`range_not_satisfiable`.',
  unsatisfiableContentRange: '`bytes */<size>`.',
};

const openLinkErrors = {
  '404': problem(
    "`not_found`: no such link; `derivative_not_ready`: the segment's cut is not made yet.",
  ),
  '410': problem(
    '`share_link_expired`, `share_link_revoked`, or `evidence_deleted`: the item was deleted since.',
  ),
  '429': ref('responses', 'RateLimited'),
  '500': problem(
    '`evidence_damaged`: the stored copy of the item (or of a bundled item) is damaged; nothing is served. A full read that finds the damage as it streams is cut before its last bytes.',
  ),
  '503': ref('responses', 'ServiceUnavailable'),
  '507': ref('responses', 'InsufficientStorage'),
};

export const openShareLink = {
  method: 'get',
  path: '/s/{token}',
  tags: ['share links'],
  operationId: 'openShareLink',
  summary: 'Open a share link (no key)',
  security: [],
  description:
    "No key: the token is the permission. Every use, and every refused one, is recorded in the audit trail as `share_link.use` with the client's address, whatever `AUDIT_READS` says. An item or a segment's cut is served as `GET /v1/evidence/{id}/content` serves it (Range, ETag, `Repr-Digest`), shown in the browser (`inline`) unless `?download` is given; a bundle is its ZIP, served as `GET /v1/bundles/{bundleId}/content` serves it (Range, If-Range, `Last-Modified`, the manifest's SHA-256 as ETag). If-Match (412), If-None-Match (304) and, for a bundle, the date conditions are evaluated as there (RFC 9110 §13.2.2), after the link and the item's state: a damaged item is never answered with a 304. Answers carry `Cache-Control: private, no-store`, `Referrer-Policy: no-referrer` and `X-Robots-Tag: noindex`. Logs and the audit trail never keep the token: the path is recorded as `/s/[token]`. `HEAD` is served too.",
  request: openLinkRequest,
  responses: { ...downloadResponses(linkDownload), ...openLinkErrors },
} satisfies Operation;

export const headShareLink = {
  method: 'head',
  path: '/s/{token}',
  tags: ['share links'],
  operationId: 'headShareLink',
  summary: 'Headers of what a share link opens (no key)',
  security: [],
  description:
    "No key. Recorded as a use of the link, like GET. The same status and headers as GET, without a body. `Range` and `If-Range` are for GET only (RFC 9110 §14.2): a HEAD with them gets the whole's headers (200, its full `Content-Length`), never 206 or 416.",
  request: openLinkRequest,
  responses: {
    ...downloadResponses({ ...linkDownload, head: true, preconditionFailedBody: false }),
    ...openLinkErrors,
  },
} satisfies Operation;

export const shareContract: ContractModule = {
  operations: [
    createShareLink,
    listShareLinks,
    getShareLink,
    revokeShareLink,
    openShareLink,
    headShareLink,
  ],
};
