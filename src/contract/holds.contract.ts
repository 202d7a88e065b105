import { isItemId } from '../base/item-id';
import { identifier } from '../base/fields';
import { dateTime, itemIdParams, pageLimit, uuid } from './fields';
import type { ContractModule, Operation } from './operation';
import { bodyTooLarge, json, problem, ref, standardErrors } from './operation';
import { z } from './zod';

export const holdSchema = z
  .object({
    id: uuid,
    itemId: uuid.nullable(),
    complaintId: z.string().nullable(),
    reason: z.string(),
    placedBy: z.string().openapi({ description: 'Id of the API key that placed it.' }),
    placedAt: dateTime,
    active: z.boolean(),
    releasedBy: z
      .string()
      .nullable()
      .openapi({ description: 'Id of the API key that released it.' }),
    releasedAt: dateTime.nullable(),
    releaseReason: z.string().nullable(),
  })
  .openapi('Hold', {
    description: 'A legal hold on one item (`itemId`) or on a complaint (`complaintId`).',
  });
export type HoldView = z.infer<typeof holdSchema>;

export const holdResultSchema = z
  .object({
    hold: holdSchema,
    itemIds: z
      .array(uuid)
      .openapi({ description: 'The items the hold covers (covered) at this moment.' }),
    objectLegalHold: z.enum(['mirrored', 'not_supported', 'failed']).openapi({
      description:
        "How the items' object legal-hold flags (S3 Object Lock) were set to match: `not_supported` by this store; `failed` is logged and retried by the next scrub.",
    }),
  })
  .openapi('HoldResult');
export type FlagMirror = z.infer<typeof holdResultSchema>['objectLegalHold'];

export const reasonBody = z
  .object({
    reason: z
      .string()
      .trim()
      .min(1, 'is required')
      .max(1000)
      .openapi({ description: 'Trimmed; must not be empty.' }),
  })
  .strict()
  .openapi('ReasonRequest');

/** 400 of an operation whose body is a `ReasonRequest`. */
export const reasonRefused = problem(
  '`invalid_json` or `validation_failed` (missing or empty `reason`, over 1000 characters, unknown property).',
);

export const listHoldsQuery = z
  .object({
    itemId: z
      .string()
      .refine(isItemId, 'must be an evidence item id')
      .optional()
      .openapi({
        format: 'uuid',
        param: {
          description: 'Holds placed on this item (not those reaching it through a complaint).',
        },
      }),
    complaintId: identifier()
      .optional()
      .openapi({ param: { description: 'Holds placed on this complaint.' } }),
    active: z
      .enum(['true', 'false'])
      .default('true')
      .openapi({
        param: { description: '`true`: only active holds; `false`: released holds too.' },
      }),
    limit: pageLimit(1000, 100, 'Most holds returned.'),
  })
  .strict();
export type ListHoldsQuery = z.infer<typeof listHoldsQuery>;

export const listHolds = {
  method: 'get',
  path: '/v1/holds',
  tags: ['custody'],
  operationId: 'listHolds',
  summary: 'List legal holds',
  description:
    'Roles: `admin`.\n\nNewest placed first; at most `limit` holds, no pagination. Filters combine with AND. Unknown query parameters are refused (400 `validation_failed`).',
  request: { query: listHoldsQuery },
  responses: {
    '200': {
      description: 'The holds.',
      content: json(z.object({ holds: z.array(holdSchema) })),
    },
    '400': problem('`validation_failed`: a bad filter or an unknown parameter.'),
    ...standardErrors,
  },
} satisfies Operation;

export const releaseHold = {
  method: 'post',
  path: '/v1/holds/{holdId}/release',
  tags: ['custody'],
  operationId: 'releaseHold',
  summary: 'Release a legal hold',
  description:
    'Roles: `admin`. Recorded in the audit trail as `hold.release`.\n\nEnds an active hold. Items it covered stay protected while another active hold covers them; object legal-hold flags are updated to match (`objectLegalHold`).',
  request: {
    params: z.object({
      holdId: z.string().openapi({
        format: 'uuid',
        param: { description: 'The hold id (a UUID). Any other value gets 404 `hold_not_found`.' },
      }),
    }),
    body: {
      required: true,
      description: 'Why the hold is released.',
      content: json(reasonBody),
    },
  },
  responses: {
    '200': {
      description: 'The released hold and the items it covered.',
      content: json(holdResultSchema),
    },
    '400': reasonRefused,
    '404': problem(
      '`hold_not_found`: no active hold with this id (never placed, or already released).',
    ),
    '413': bodyTooLarge,
    ...standardErrors,
  },
} satisfies Operation;

/** The `{complaintId}` of a complaint hold. */
export const complaintHoldParams = z.object({ complaintId: identifier() });

const placed = {
  description: 'The hold placed.',
  content: json(holdResultSchema),
};

export const placeItemHold = {
  method: 'post',
  path: '/v1/evidence/{id}/holds',
  tags: ['custody'],
  operationId: 'placeItemHold',
  summary: 'Put an item under legal hold',
  description:
    "Roles: `admin`. Recorded in the audit trail as `hold.place`.\n\nWhile any active hold covers it, the item cannot be deleted (by an admin or by retention) and its links cannot be removed; the database itself refuses. The hold is mirrored to the object's legal-hold flag where the store has one (S3 Object Lock): `objectLegalHold` tells how that went, and a failure there is retried by the next scrub, never a reason to undo the hold.",
  request: {
    params: itemIdParams,
    body: {
      required: true,
      description: 'Why the item is held.',
      content: json(reasonBody),
    },
  },
  responses: {
    '201': placed,
    '400': reasonRefused,
    '404': ref('responses', 'NotFound'),
    '410': problem('`evidence_deleted`: the item was deleted; there is nothing to hold.'),
    '413': bodyTooLarge,
    ...standardErrors,
  },
} satisfies Operation;

export const placeComplaintHold = {
  method: 'post',
  path: '/v1/complaints/{complaintId}/holds',
  tags: ['custody'],
  operationId: 'placeComplaintHold',
  summary: "Put a complaint's evidence under legal hold",
  description:
    "Roles: `admin`. Recorded in the audit trail as `hold.place`.\n\nHolds every item linked to the complaint or to one of its orders, for as long as the hold is active (items linked later are covered too); while it is, the complaint's orders cannot be removed (`PUT /v1/complaints/{complaintId}`). `itemIds` lists the items covered now. The complaint must exist (`PUT /v1/complaints/{complaintId}`) or have evidence linked to it. Object legal-hold flags are mirrored as for an item hold.",
  request: {
    params: complaintHoldParams,
    body: {
      required: true,
      description: "Why the complaint's evidence is held.",
      content: json(reasonBody),
    },
  },
  responses: {
    '201': placed,
    '400': problem(
      '`invalid_json` or `validation_failed` (missing or empty `reason`, over 1000 characters, unknown property, or the complaint id is not a valid identifier).',
    ),
    '404': problem('`not_found`: no complaint with this id and no evidence linked to it.'),
    '413': bodyTooLarge,
    ...standardErrors,
  },
} satisfies Operation;

export const holdsContract: ContractModule = {
  operations: [placeItemHold, placeComplaintHold, listHolds, releaseHold],
};
