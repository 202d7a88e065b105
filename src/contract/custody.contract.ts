import { isoTimestamp } from '../base/fields';
import { verifyStatusSchema } from './evidence.contract';
import { dateTime, itemIdParams, pageLimit, sha256Hex, uuid } from './fields';
import type { ContractModule, Operation } from './operation';
import { jobQueueUnavailable, json, problem, ref, serverErrors, standardErrors } from './operation';
import { z } from './zod';

const count = z.number().int().min(0);

const hashAndSize = z.object({ sha256: sha256Hex, size: z.number().int() });

export const verificationResultSchema = z
  .object({
    itemId: uuid,
    status: verifyStatusSchema,
    checkedAt: dateTime,
    expected: hashAndSize.openapi({ description: "The item's recorded hash and size." }),
    computed: hashAndSize.nullable().openapi({
      description: 'What the stored bytes hash to now; null when there are no bytes to read.',
    }),
    recordedAtCreation: hashAndSize.nullable().openapi({
      description:
        "What the audit trail recorded when the item arrived; null when there is no creation event (an item archived before custody auditing began: noted in `notes`, and its bytes are still checked against the item's hash).",
    }),
    problems: z
      .array(z.string())
      .openapi({ description: 'What disagrees, in words; empty when `status` is `ok`.' }),
    notes: z.array(z.string()).openapi({
      description:
        'Remarks that are not problems, e.g. no creation event for an item archived before custody auditing began.',
    }),
    bytesRead: count,
  })
  .openapi('VerificationResult');
export type VerificationResult = z.infer<typeof verificationResultSchema>;

export const auditEventSchema = z
  .object({
    seq: z.number().int().min(1).openapi({ description: 'Position in the chain, without gaps.' }),
    occurredAt: dateTime,
    action: z.string().openapi({
      description:
        'E.g. `evidence.create`, `evidence.duplicate`, `evidence.view`, `evidence.list`, `evidence.download`, `evidence.link`, `evidence.unlink`, `evidence.verify`, `evidence.delete`, `evidence.expire`, `evidence.purge`, `evidence.reconcile`, `hold.place`, `hold.release`, `complaint.write`, `complaint.view`, `key.create`, `key.revoke`, `key.list`, `session.open` (a web app sign-in), `session.close` (sign-out), `session.end` (`details.reason`: `ended_by_holder`, `key_revoked`, `idle`, `lifetime`), `audit.read`, `audit.verify`, `custody.read`, `custody.run`, `bundle.create`, `bundle.download`, `access.refusals` (the refusals of one client address in one minute, counted: `details.count`, `recordedIndividually`, `rateLimited`, `byRefusal`, `window`).',
    }),
    outcome: z.enum(['success', 'denied', 'failed']),
    actor: z
      .object({
        keyId: z.string().nullable(),
        role: z.string().nullable(),
        name: z.string().nullable(),
      })
      .openapi({
        description:
          "The API key that acted, or the service's own job (`keyId` null, `role` `system`); `role` `anonymous` for a request without a valid key.",
      }),
    itemIds: z.array(uuid).openapi({ description: 'The evidence items concerned.' }),
    complaintId: z.string().nullable(),
    requestId: z.string().nullable().openapi({ description: 'The `X-Request-Id` of the request.' }),
    clientIp: z.string().nullable(),
    details: z.record(z.unknown()).openapi({
      description:
        "Action-specific, e.g. the hash and size at creation, a deletion or hold reason, a refused request's method, path, status and code.",
    }),
    prevHash: sha256Hex.openapi({
      description: "The previous event's `hash` (64 zeros before the first).",
    }),
    hash: sha256Hex.openapi({
      description:
        "SHA-256 (hex) of `prevHash` followed by this event's canonical JSON (every member above but the hashes, keys sorted).",
    }),
  })
  .openapi('AuditEvent', { description: 'One event of the hash-chained audit trail.' });
export type AuditEvent = z.infer<typeof auditEventSchema>;

export const auditPageSchema = z
  .object({
    events: z.array(auditEventSchema),
    nextCursor: z
      .string()
      .nullable()
      .openapi({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
  })
  .openapi('AuditPage');
export type AuditPage = z.infer<typeof auditPageSchema>;

export const publicKeySchema = z
  .object({
    algorithm: z.literal('Ed25519'),
    publicKeyPem: z.string().openapi({ description: 'SPKI, PEM.' }),
    fingerprint: sha256Hex.openapi({
      description: 'SHA-256 (hex) of the DER-encoded public key.',
    }),
  })
  .openapi('PublicKey');

export const checkpointSchema = z
  .object({
    version: z.literal(1).openapi({ type: 'integer' }),
    type: z.literal('evidence-archive.audit-checkpoint'),
    seq: z.number().int().openapi({ description: 'The audit event signed (the chain head).' }),
    hash: sha256Hex.openapi({ description: "That event's `hash`." }),
    signedAt: dateTime,
    keyFingerprint: sha256Hex.openapi({
      description: "The signing key's `fingerprint` (`GET /v1/custody/public-key`).",
    }),
    previous: z.object({ seq: z.number().int(), hash: sha256Hex }).nullable().openapi({
      description:
        'The checkpoint before this one, so a removed checkpoint is noticed; null for the first.',
    }),
  })
  .openapi('Checkpoint');
export type Checkpoint = z.infer<typeof checkpointSchema>;

export const signedCheckpointSchema = z.object({
  checkpoint: checkpointSchema,
  signature: z.string().openapi({
    description: 'Ed25519 over the canonical JSON of `checkpoint` (keys sorted), base64.',
  }),
});
export type SignedCheckpoint = z.infer<typeof signedCheckpointSchema>;

export const checkpointResultSchema = z
  .object({
    written: z.boolean(),
    checkpoint: signedCheckpointSchema.nullable().openapi({
      description:
        'The signed checkpoint as written to the blob store; null when nothing was written.',
    }),
  })
  .openapi('CheckpointResult');

export const custodyRunSchema = z
  .object({
    startedAt: dateTime,
    finishedAt: dateTime,
    outcome: z.enum(['ok', 'problems', 'error']),
    stats: z.record(z.unknown()).openapi({
      description:
        "The job's report (e.g. items verified and findings for a scrub, items expired and purged for retention, `error` when it failed).",
    }),
  })
  .nullable()
  .openapi('CustodyRun', { description: 'The newest finished run; null when there was none.' });

export const custodyStatusSchema = z
  .object({
    items: z.object({
      archived: count,
      deleted: count,
      awaitingPurge: count.openapi({
        description: 'Deleted items whose bytes are not removed yet.',
      }),
      failingVerification: count.openapi({
        description: 'Live items whose last verification was not `ok`.',
      }),
      neverVerified: count,
      activeLegalHolds: count,
      damaged: count.openapi({
        description:
          'Live items whose stored bytes were found damaged: not served until the genuine bytes are uploaded again.',
      }),
    }),
    failingItems: z
      .array(
        z.object({
          itemId: uuid,
          status: verifyStatusSchema,
          checkedAt: dateTime.nullable(),
          detail: z
            .custom<unknown>((v) => v !== undefined)
            .openapi({
              description: 'What the check found (`problems`, `computed`, `recordedAtCreation`).',
            }),
        }),
      )
      .max(100),
    auditChain: z.object({
      headSeq: count,
      headHash: sha256Hex,
      lastCheckpoint: z
        .object({ seq: z.number().int(), hash: sha256Hex, signedAt: dateTime })
        .nullable(),
      eventsSinceCheckpoint: count,
      trustedTime: z
        .object({
          configured: z.boolean().openapi({
            description:
              'Whether timestamp authorities are configured (`TIMESTAMP_AUTHORITY_URLS`).',
          }),
          lastStamped: z
            .object({
              seq: z.number().int(),
              genTime: dateTime.openapi({ description: "The timestamp authority's time." }),
              authority: z.string().openapi({ description: 'The TSA URL that answered.' }),
              ageSeconds: count.openapi({ description: 'Seconds since `genTime`.' }),
            })
            .nullable()
            .openapi({
              description:
                'The newest checkpoint with a verified RFC 3161 token (over the exact bytes its Ed25519 signature covers); null when none has one.',
            }),
          checkpointsAwaitingTimestamp: count.openapi({
            description:
              'Checkpoints without a token yet: queued and retried with backoff while the authorities are down or refuse.',
          }),
        })
        .openapi({ description: 'Third-party (RFC 3161) time for the checkpoints.' }),
    }),
    lastRuns: z.object({
      scrub: custodyRunSchema,
      retention: custodyRunSchema,
      checkpoint: custodyRunSchema,
    }),
    settings: z.object({
      checkpointIntervalMinutes: z.number(),
      scrubIntervalMinutes: z.number(),
      scrubFullPassDays: z.number(),
      stagingGraceHours: z.number(),
      retentionDays: z
        .object({
          packing_video: z.number().int(),
          call_recording: z.number().int(),
          photo: z.number().int(),
        })
        .openapi({ description: 'Days each kind is kept after receipt; 0 keeps it forever.' }),
      retentionAfterCloseDays: z.number(),
      retentionIntervalMinutes: z.number(),
    }),
  })
  .openapi('CustodyStatus');

export const jobQueuedSchema = z
  .object({
    job: z.enum(['scrub', 'retention']),
    jobId: z
      .string()
      .nullable()
      .openapi({ description: "The queue's job id; null if the queue declined the job." }),
    status: z.literal('queued'),
  })
  .openapi('JobQueued');

const limit = pageLimit(1000, 100);
const cursor = z
  .string()
  .regex(/^\d{1,18}$/, 'must be a cursor this service issued')
  .optional()
  .openapi({
    param: {
      description:
        'The `nextCursor` of the previous page (a sequence number); anything else is 400 `validation_failed`.',
    },
  });

export const itemAuditQuery = z.object({ limit, cursor }).strict();
export type ItemAuditQuery = z.infer<typeof itemAuditQuery>;

export const auditRangeQuery = z
  .object({
    from: isoTimestamp()
      .optional()
      .openapi({
        format: 'date-time',
        param: { description: 'Events at or after this instant (ISO 8601 with a time zone).' },
      }),
    to: isoTimestamp()
      .optional()
      .openapi({
        format: 'date-time',
        param: {
          description:
            'Events before this instant (exclusive; ISO 8601 with a time zone); must be later than `from`.',
        },
      }),
    limit,
    cursor,
  })
  .strict();
export type AuditRangeQuery = z.infer<typeof auditRangeQuery>;

export const getEvidenceAudit = {
  method: 'get',
  path: '/v1/evidence/{id}/audit',
  tags: ['custody'],
  operationId: 'getEvidenceAudit',
  summary: "One item's custody history",
  description:
    'Roles: `support`, `admin`. Recorded in the audit trail as `audit.read`.\n\nEvery audit event naming the item, oldest first (by `seq`), paginated: pass `nextCursor` as `cursor` for the next page. Deleted items keep their history. Unknown query parameters are refused (400 `validation_failed`).',
  request: { params: itemIdParams, query: itemAuditQuery },
  responses: {
    '200': { description: 'One page of events.', content: json(auditPageSchema) },
    '400': problem('`validation_failed`: bad `limit` or `cursor`, or an unknown parameter.'),
    '404': ref('responses', 'NotFound'),
    ...standardErrors,
    '429': ref('responses', 'BudgetExceeded'),
  },
} satisfies Operation;

export const verifyEvidence = {
  method: 'post',
  path: '/v1/evidence/{id}/verify',
  tags: ['custody'],
  operationId: 'verifyEvidence',
  summary: "Verify an item's stored bytes",
  description:
    "Roles: `support`, `admin`. Recorded in the audit trail as `evidence.verify` (outcome `failed` when the status is not `ok`).\n\nRe-reads the stored bytes and checks three records that must agree: the item's hash and size, the blob's content address, and the creation event in the audit trail. The result becomes the item's `lastVerification`. A problem found is reported in the 200 body (`status` other than `ok`, `problems` non-empty), not as an error. No body is needed.",
  request: { params: itemIdParams },
  responses: {
    '200': { description: 'The verification result.', content: json(verificationResultSchema) },
    '404': ref('responses', 'NotFound'),
    '410': problem('`evidence_deleted`: the item was deleted; there are no bytes to verify.'),
    ...standardErrors,
    '429': ref('responses', 'BudgetExceeded'),
  },
} satisfies Operation;

export const listAudit = {
  method: 'get',
  path: '/v1/audit',
  tags: ['custody'],
  operationId: 'listAudit',
  summary: 'The whole audit trail',
  description:
    "Roles: `admin`. Recorded in the audit trail as `audit.read`.\n\nEvents in chain order (by `seq`, oldest first), paginated: pass `nextCursor` as `cursor` for the next page. Each event's `hash` is SHA-256 of the previous event's hash followed by the event's canonical JSON (keys sorted, without the hashes); the first event links to 64 zeros. Unknown query parameters are refused (400 `validation_failed`).",
  request: { query: auditRangeQuery },
  responses: {
    '200': { description: 'One page of events.', content: json(auditPageSchema) },
    '400': problem(
      '`validation_failed`: bad `from`, `to` (or `from` not earlier than `to`), `limit` or `cursor`, or an unknown parameter.',
    ),
    ...standardErrors,
    '429': ref('responses', 'BudgetExceeded'),
  },
} satisfies Operation;

export const getCustodyPublicKey = {
  method: 'get',
  path: '/v1/custody/public-key',
  tags: ['custody'],
  operationId: 'getCustodyPublicKey',
  summary: "The service's signing public key",
  description:
    'No authentication: whoever checks a signed checkpoint needs it, with no account. Checkpoints name their signer by `fingerprint`.',
  security: [],
  responses: {
    '200': { description: 'The Ed25519 public key.', content: json(publicKeySchema) },
    ...serverErrors,
  },
} satisfies Operation;

export const writeCheckpoint = {
  method: 'post',
  path: '/v1/custody/checkpoints',
  tags: ['custody'],
  operationId: 'writeCheckpoint',
  summary: 'Sign the audit chain head now',
  description:
    'Roles: `admin`. Refused attempts are recorded in the audit trail (`custody.read`); a written checkpoint is not itself an audit event (that would move the head).\n\nSigns the current head of the audit chain (Ed25519) and writes it to the blob store under `custody/checkpoints/`, as the scheduled checkpoint job does. Nothing is written when the head is already checkpointed or the trail is empty. The events since the last checkpoint are re-hashed first: a chain that does not follow from it (an event altered, removed or inserted) is never signed, and the request fails with 500 `internal_error`. No body is needed.',
  responses: {
    '200': {
      description:
        'Nothing new since the last checkpoint: `written` is false and `checkpoint` null.',
      content: json(checkpointResultSchema),
    },
    '201': {
      description: 'A checkpoint was signed and written.',
      content: json(checkpointResultSchema),
    },
    ...standardErrors,
    '500': problem(
      '`internal_error`: the audit chain does not follow from the last signed checkpoint, so nothing was signed (or another unexpected failure).',
    ),
  },
} satisfies Operation;

export const getCustodyStatus = {
  method: 'get',
  path: '/v1/custody/status',
  tags: ['custody'],
  operationId: 'getCustodyStatus',
  summary: 'Custody status',
  description:
    'Roles: `admin`. Recorded in the audit trail as `custody.read`.\n\nItem counts, items whose last verification failed (at most 100, newest check first), the audit chain head and last checkpoint (and the newest checkpoint with a third-party RFC 3161 timestamp, its age, and how many wait for one), the last run of each custody job, and the custody and retention settings.',
  responses: {
    '200': { description: 'The custody status.', content: json(custodyStatusSchema) },
    ...standardErrors,
  },
} satisfies Operation;

export const startCustodyJob = {
  method: 'post',
  path: '/v1/custody/jobs/{job}',
  tags: ['custody'],
  operationId: 'startCustodyJob',
  summary: 'Run a custody job soon',
  description:
    "Roles: `admin`. Recorded in the audit trail as `custody.run`.\n\nQueues a run of `scrub` (re-verify stored bytes, reconcile rows and blobs, check the audit chain) or `retention` (expire and purge evidence past its retention) on the cluster's job queue; whichever instance runs workers picks it up, one run at a time. Its outcome appears in `GET /v1/custody/status` (`lastRuns`). No body is needed.",
  request: {
    params: z.object({
      job: z.enum(['scrub', 'retention']).openapi({
        param: { description: 'The job; any other value gets 404 `not_found`.' },
      }),
    }),
  },
  responses: {
    '202': { description: 'Queued.', content: json(jobQueuedSchema) },
    '404': problem('`not_found`: not a job that can be started on demand (`scrub`, `retention`).'),
    ...standardErrors,
    '503': jobQueueUnavailable,
  },
} satisfies Operation;

export const keyBudgetsQuery = z
  .object({
    hours: z.coerce
      .number()
      .int()
      .min(1)
      .max(48)
      .default(24)
      .openapi({ description: 'How far back to list refusals, in hours (1 to 48; default 24).' }),
  })
  .strict();

const keyBudgetsSchema = z.object({
  limits: z
    .object({
      verifyBytesPerHour: z.number().int(),
      auditPagesPerMinute: z.number().int(),
      bundleBuilds: z.number().int(),
    })
    .openapi({ description: 'The configured budgets, the same for every key.' }),
  hours: z.number().int(),
  limited: z
    .array(
      z.object({
        keyId: z.string(),
        name: z.string().nullable(),
        role: z.string().nullable(),
        budget: z.enum(['verify_bytes_per_hour', 'audit_pages_per_minute', 'bundle_builds']),
        windowStart: dateTime,
        used: count.openapi({
          description: 'Spent in that window (bytes or pages; 0 for bundle builds).',
        }),
        refused: count.openapi({ description: 'Requests refused in that window.' }),
      }),
    )
    .openapi({ description: 'Keys a budget refused, by window, newest first (at most 1000).' }),
});

export const listKeyBudgets = {
  method: 'get',
  path: '/v1/key-budgets',
  tags: ['custody'],
  operationId: 'listKeyBudgets',
  summary: 'Which keys hit a budget',
  description:
    'Roles: `admin`. The per-key budgets for expensive work and the keys they refused in the last `hours`: which key, which budget, when, how much it had spent and how often it was refused. `Cache-Control: no-store`.',
  request: { query: keyBudgetsQuery },
  responses: {
    '200': {
      description: 'The budgets and the keys they refused.',
      content: json(keyBudgetsSchema),
    },
    '400': problem('`validation_failed`: bad `hours`, or an unknown parameter.'),
    ...standardErrors,
  },
} satisfies Operation;

export const custodyContract: ContractModule = {
  operations: [
    getEvidenceAudit,
    verifyEvidence,
    listAudit,
    getCustodyPublicKey,
    writeCheckpoint,
    getCustodyStatus,
    startCustodyJob,
    listKeyBudgets,
  ],
};
