import { COMPLAINT_CHANNELS, COMPLAINT_TOPICS } from '../db/database';
import { identifier, isoTimestamp, phoneField } from '../base/fields';
import { evidenceItemSchema, segmentSchema } from './evidence.contract';
import { dateTime } from './fields';
import { holdSchema } from './holds.contract';
import type { ContractModule, Operation } from './operation';
import { bodyTooLarge, complaintIdRefused, json, problem, ref, standardErrors } from './operation';
import { z } from './zod';

/** The `{complaintId}` of a complaint path. */
export const complaintIdParam = identifier();
export const complaintParams = z.object({ complaintId: complaintIdParam });

// JSON Schema: a nullable enum lists null among its values too.
const channel = z.enum(COMPLAINT_CHANNELS);
const topic = z.enum(COMPLAINT_TOPICS);
const nullableChannel = { enum: [...COMPLAINT_CHANNELS, null] } as { enum: string[] };
const nullableTopic = { enum: [...COMPLAINT_TOPICS, null] } as { enum: string[] };

export const complaintSchema = z
  .object({
    id: z.string(),
    status: z.enum(['open', 'closed']),
    customerPhone: z.string().nullable().openapi({ description: 'As given.' }),
    customerPhoneE164: z
      .string()
      .nullable()
      .openapi({ description: 'E.164 form of `customerPhone`.' }),
    orderIds: z.array(z.string()).openapi({ description: 'Sorted, without duplicates.' }),
    openedAt: dateTime.openapi({
      description: 'When the customer raised it: as given, else when it was first written.',
    }),
    closedAt: dateTime
      .nullable()
      .openapi({ description: 'When it was first closed; null while open.' }),
    updatedAt: dateTime,
    trackingNumbers: z.array(z.string()).openapi({
      description: 'Sorted, without duplicates. Suggestions match clips and segments by them.',
    }),
    channel: channel
      .nullable()
      .openapi({ ...nullableChannel, description: 'Where the customer raised it.' }),
    topic: topic.nullable().openapi({
      ...nullableTopic,
      description:
        'What it is about; the coverage report looks for a call recording when it is `call`.',
    }),
    claimUrl: z.string().nullable().openapi({
      format: 'uri',
      description: 'The review or claim, as the customer or marketplace shows it.',
    }),
    description: z.string().max(10_000).nullable(),
  })
  .openapi('Complaint');
export type ComplaintView = z.infer<typeof complaintSchema>;

/** A web address a person can open: http(s) only, no credentials in it. */
const claimUrl = z
  .string()
  .trim()
  .max(2048, 'must be at most 2048 characters')
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password;
    } catch {
      return false;
    }
  }, 'must be an http or https URL without credentials');

export const complaintBody = z
  .object({
    status: z.enum(['open', 'closed']),
    customerPhone: phoneField().nullable().optional().openapi({
      description:
        'Must be normalisable to E.164 (else 400 `invalid_phone_number`); omitted or null clears it.',
    }),
    orderIds: z.array(identifier()).max(100).default([]).openapi({
      description:
        "The complaint's orders (duplicates are merged); their evidence is covered by the complaint's retention and holds. Replaces the previous list.",
    }),
    trackingNumbers: z.array(identifier()).max(100).default([]),
    channel: channel.nullable().optional().openapi(nullableChannel),
    topic: topic.nullable().optional().openapi(nullableTopic),
    claimUrl: claimUrl
      .nullable()
      .optional()
      .openapi({ description: 'An http or https URL without credentials.' }),
    description: z.string().max(10_000, 'must be at most 10000 characters').nullable().optional(),
    /** When the customer raised it (the marketplace's date); the first write's time otherwise. */
    openedAt: isoTimestamp().optional().openapi({
      format: 'date-time',
      description:
        'When the customer raised it (ISO 8601 with a time zone). Omitted: kept from before, or now for a new complaint.',
    }),
  })
  .strict()
  .openapi('ComplaintRequest');
export type ComplaintBody = z.infer<typeof complaintBody>;

export const timelineEntrySchema = z
  .object({
    at: dateTime.openapi({
      description: "Capture time; for a segment the clip's capture time plus the segment's start.",
    }),
    type: z.enum(['packing_video', 'call_recording', 'photo', 'segment']),
    item: evidenceItemSchema,
    segment: segmentSchema.optional(),
    linkedToComplaint: z.boolean().openapi({
      description: 'Linked to the complaint itself, not only to one of its orders.',
    }),
    orderIds: z
      .array(z.string())
      .openapi({ description: "The complaint's orders this entry belongs to." }),
    via: z.array(z.enum(['complaint', 'order', 'customer_phone'])).openapi({
      description:
        "How it belongs to the complaint: linked to it, linked to one of its orders, or a call from or to the customer's number within `SUGGESTION_WINDOW_DAYS` (not linked until accepted).",
    }),
  })
  .openapi('TimelineEntry');
export type TimelineEntry = z.infer<typeof timelineEntrySchema>;

export const complaintWorkspaceSchema = complaintSchema
  .extend({
    evidence: z
      .array(evidenceItemSchema)
      .openapi({ description: 'Items linked to the complaint itself.' }),
    timeline: z.array(timelineEntrySchema).openapi({
      description:
        'Items linked to the complaint or to its orders (a long clip by the segments of those orders), by time.',
    }),
  })
  .openapi('ComplaintWorkspace');
export type ComplaintWorkspace = z.infer<typeof complaintWorkspaceSchema>;

export const suggestionReasonSchema = z.object({
  code: z.enum(['order', 'order_segment', 'tracking_number', 'customer_phone']),
  detail: z.string().openapi({ description: 'The reason in words.' }),
  orderId: z.string().optional(),
  segmentId: z.string().optional(),
  trackingNumber: z.string().optional(),
  direction: z.enum(['from_customer', 'to_customer']).optional(),
  phone: z.string().optional(),
});
export type SuggestionReason = z.infer<typeof suggestionReasonSchema>;

export const suggestionSchema = z
  .object({
    item: evidenceItemSchema,
    segments: z.array(segmentSchema),
    reasons: z.array(suggestionReasonSchema),
  })
  .openapi('Suggestion');
export type Suggestion = z.infer<typeof suggestionSchema>;

export const suggestionsSchema = z.object({
  complaintId: z.string(),
  callWindow: z.object({ from: dateTime.optional(), to: dateTime.optional() }).nullable().openapi({
    description: 'The window calls were looked for in; null without a customer phone.',
  }),
  suggestions: z.array(suggestionSchema),
});

export const linkBody = z
  .object({
    itemIds: z
      .array(z.string().max(64))
      .min(1, 'must name at least one item')
      .max(100, 'must name at most 100 items'),
  })
  .strict();
export type LinkBody = z.infer<typeof linkBody>;

export const linkResultSchema = z.object({
  complaintId: z.string(),
  linked: z.array(z.string()),
  alreadyLinked: z.array(z.string()),
});

const finding = { complaintId: z.string(), openedAt: dateTime, status: z.string() };

export const coverageReportSchema = z
  .object({
    from: dateTime,
    to: dateTime,
    generatedAt: dateTime,
    complaintsWithoutPackingVideo: z.array(
      z.object({ ...finding, ordersWithoutVideo: z.array(z.string()) }).partial(),
    ),
    callComplaintsWithoutRecording: z.array(
      z.object({ ...finding, customerPhone: z.string().nullable() }).partial(),
    ),
    ordersWithFailedVerification: z.array(
      z
        .object({
          orderId: z.string(),
          itemId: z.string(),
          verifyStatus: z.string(),
          verifiedAt: dateTime,
          complaintIds: z.array(z.string()),
        })
        .partial(),
    ),
    truncated: z
      .boolean()
      .openapi({ description: 'A section had more than 10,000 findings and was cut there.' }),
  })
  .openapi('CoverageReport');
/** What the service builds: every finding with all its members. */
export type CoverageReport = {
  [K in keyof z.infer<typeof coverageReportSchema>]: z.infer<
    typeof coverageReportSchema
  >[K] extends (infer F)[]
    ? Required<F>[]
    : z.infer<typeof coverageReportSchema>[K];
};

export const coverageQuery = z
  .object({
    from: isoTimestamp()
      .optional()
      .openapi({ format: 'date-time', param: { description: 'Default: 30 days before `to`.' } }),
    to: isoTimestamp()
      .optional()
      .openapi({ format: 'date-time', param: { description: 'Default: now.' } }),
    format: z.enum(['json', 'csv']).optional(),
  })
  .strict();
export type CoverageQuery = z.infer<typeof coverageQuery>;

export const getComplaint = {
  method: 'get',
  path: '/v1/complaints/{complaintId}',
  tags: ['complaints'],
  operationId: 'getComplaint',
  summary: 'A complaint, its evidence and its timeline',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `complaint.view`, with the items shown.\n\n`evidence` is what is linked to the complaint itself (what a bundle of "all linked" takes). `timeline` adds what is linked to its orders (packing clips, calls, photos), shows a long station recording by the segments of the complaint\'s orders, adds the calls from or to the customer\'s number within `SUGGESTION_WINDOW_DAYS` (linked or not), and orders it all by capture time.',
  request: { params: complaintParams },
  responses: {
    '200': {
      description: 'The complaint with its evidence and timeline.',
      content: json(complaintWorkspaceSchema),
    },
    '400': complaintIdRefused,
    '404': problem('`not_found`: no complaint with this id.'),
    ...standardErrors,
  },
} satisfies Operation;

export const putComplaint = {
  method: 'put',
  path: '/v1/complaints/{complaintId}',
  tags: ['complaints'],
  operationId: 'putComplaint',
  summary: 'Create or replace a complaint',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `complaint.write`.\n\nCreates the complaint or replaces its status, customer phone, orders, tracking numbers, channel, topic, claim URL and description (an omitted field becomes null or empty; an omitted `openedAt` keeps the earlier one). While a complaint is open its evidence (linked to it, or to one of its orders) never expires; once closed it is kept `RETENTION_AFTER_CLOSE_DAYS` more, counted from the first close (reopening clears `closedAt`). While the complaint is under legal hold its orders cannot be removed.',
  request: {
    params: complaintParams,
    body: { required: true, content: json(complaintBody) },
  },
  responses: {
    '200': { description: 'Replaced.', content: json(complaintSchema) },
    '201': {
      description: 'Created.',
      headers: {
        Location: {
          description: '`/v1/complaints/{complaintId}` of the new complaint (id URL-encoded).',
          schema: { type: 'string' },
        },
      },
      content: json(complaintSchema),
    },
    '400': problem(
      '`invalid_json`, `validation_failed` (bad id, status or order id, unknown property, over 100 orders) or `invalid_phone_number` (`customerPhone` cannot be put in E.164 form).',
    ),
    '409': problem(
      '`legal_hold`: the complaint is under legal hold and the new `orderIds` would drop some of its orders.',
    ),
    '413': bodyTooLarge,
    ...standardErrors,
  },
} satisfies Operation;

export const getComplaintSuggestions = {
  method: 'get',
  path: '/v1/complaints/{complaintId}/suggestions',
  tags: ['complaints'],
  operationId: 'getComplaintSuggestions',
  summary: 'Evidence the complaint probably needs',
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `complaint.view`, with the items suggested.\n\nItems not linked to the complaint itself, each with its reasons: linked to one of its orders (`order`), a segment of a long recording is one of its orders (`order_segment`), the item or a segment carries one of its tracking numbers (`tracking_number`), or a call from or to the customer's number, E.164-matched (`customer_phone`), captured within `SUGGESTION_WINDOW_DAYS` (14) before the earliest and after the latest of: the complaint's `openedAt` and the capture times of its orders' items. Deleted items are never suggested. Accept with `POST /v1/complaints/{complaintId}/suggestions/accept`.",
  request: { params: complaintParams },
  responses: {
    '200': {
      description: 'The suggestions, oldest capture first.',
      content: json(suggestionsSchema),
    },
    '400': complaintIdRefused,
    '404': problem('`not_found`: no complaint with this id.'),
    ...standardErrors,
  },
} satisfies Operation;

export const acceptComplaintSuggestions = {
  method: 'post',
  path: '/v1/complaints/{complaintId}/suggestions/accept',
  tags: ['complaints'],
  operationId: 'acceptComplaintSuggestions',
  summary: 'Link items to the complaint',
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as one `evidence.link` event, whose details say why each item was suggested (`suggested`: item id to reason codes), if it was.\n\nLinks the items to the complaint (accepted suggestions, or any items support chose). Items already linked are reported in `alreadyLinked`. Deleted items are refused.',
  request: {
    params: complaintParams,
    body: { required: true, content: json(linkBody) },
  },
  responses: {
    '200': {
      description: 'What was linked now, and what was linked before.',
      content: json(linkResultSchema),
    },
    '400': problem(
      '`validation_failed` (no items, more than 100, unknown fields), `invalid_json`.',
    ),
    '404': problem('`not_found`: no complaint with this id, or no item with one of the ids.'),
    '410': problem('`evidence_deleted`: one of the items was deleted.'),
    '413': ref('responses', 'BodyTooLarge'),
    ...standardErrors,
  },
} satisfies Operation;

export const getCoverageReport = {
  method: 'get',
  path: '/v1/reports/coverage',
  tags: ['complaints'],
  operationId: 'getCoverageReport',
  summary: 'Where the archive would lose a dispute',
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `report.view`.\n\nFor complaints opened in [`from`, `to`): those with an order that has no packing video (no clip linked to it, no segment of it); those about a call (`topic` `call`) with no call recording linked to them or their orders and none from or to the customer's number within `SUGGESTION_WINDOW_DAYS` of `openedAt`. And the orders whose packing clip, captured in the range, failed its last verification. JSON by default; CSV (one row per finding: `finding,complaint_id,order_id,item_id,opened_at,status,detail`) with `format=csv` or `Accept: text/csv`. Values a spreadsheet would run as a formula are prefixed with `'`.",
  request: { query: coverageQuery },
  responses: {
    '200': {
      description: 'The report.',
      content: {
        ...json(coverageReportSchema),
        'text/csv': { schema: z.string() },
      },
      headers: {
        'Content-Disposition': {
          description:
            'With `text/csv` only: `attachment; filename="coverage-<from>-<to>.csv"` (dates as `YYYY-MM-DD`).',
          schema: { type: 'string' },
        },
      },
    },
    '400': problem(
      '`validation_failed`: a bad date, `from` not before `to`, a range over ten years, an unknown parameter.',
    ),
    ...standardErrors,
  },
} satisfies Operation;

export const getComplaintHoldStatus = {
  method: 'get',
  path: '/v1/complaints/{complaintId}/hold-status',
  tags: ['complaints'],
  operationId: 'getComplaintHoldStatus',
  summary: 'Whether a complaint is on legal hold',
  description:
    "Roles: `support`, `admin`. The complaint's active holds (placing and releasing them stays with admins).",
  request: { params: complaintParams },
  responses: {
    '200': {
      description: 'Its active holds.',
      content: json(
        z.object({ complaintId: z.string(), onHold: z.boolean(), holds: z.array(holdSchema) }),
      ),
    },
    '400': problem('`validation_failed`: a malformed id.'),
    ...standardErrors,
  },
} satisfies Operation;

export const complaintsContract: ContractModule = {
  operations: [
    getComplaint,
    putComplaint,
    getComplaintSuggestions,
    acceptComplaintSuggestions,
    getCoverageReport,
    getComplaintHoldStatus,
  ],
};
