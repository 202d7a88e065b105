import { identifier } from '../ingest/upload-fields';
import { problem, ref, standardErrors, type ContractModule, type Operation } from './operation';
import { z } from './zod';

export const SHARE_LINK_DEFAULT_DAYS = 7;
export const SHARE_LINK_MAX_DAYS = 30;

const uuid = z.string().openapi({ format: 'uuid' });
const dateTime = z.string().openapi({ format: 'date-time' });

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
    body: { required: true, content: { 'application/json': { schema: createShareLinkBody } } },
  },
  responses: {
    '201': {
      description: 'The link, with its token and URL (the only time the token is shown).',
      content: { 'application/json': { schema: createdShareLinkSchema } },
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
      content: { 'application/json': { schema: z.object({ items: z.array(shareLinkSchema) }) } },
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
      content: { 'application/json': { schema: shareLinkSchema } },
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
      content: { 'application/json': { schema: shareLinkSchema } },
    },
    '404': problem('`not_found`: no such link.'),
    ...standardErrors,
  },
} satisfies Operation;

export const shareContract: ContractModule = {
  operations: [createShareLink, listShareLinks, getShareLink, revokeShareLink],
};
