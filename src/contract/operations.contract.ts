import { dateTime } from './fields';
import type { ContractModule, Operation } from './operation';
import {
  json,
  ref,
  retryAfter,
  serverErrors,
  standardErrors,
  UNAVAILABLE_CAUSES,
} from './operation';
import { z } from './zod';

const up = z.enum(['ok', 'unavailable']);

export const readinessSchema = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.object({
      database: up,
      storage: z.object({ driver: z.enum(['fs', 's3']), status: up }),
      media: z
        .object({
          status: up,
          ffmpeg: z.string().optional().openapi({ description: "`ffmpeg -version`'s first line." }),
          detail: z
            .string()
            .optional()
            .openapi({ description: 'Why nothing can be derived, and how to fix it.' }),
        })
        .openapi({
          description:
            'Whether ffmpeg/ffprobe were found. Never makes the service not ready: archiving works without them; derivatives wait (see `detail`).',
        }),
      worm: z
        .object({
          status: z.enum(['in_force', 'not_in_force', 'not_configured', 'unchecked']),
          itemsNotInForce: z.number().int().nullable().openapi({
            description:
              'Archived items whose bytes the store holds without WORM protection; null when the database did not answer.',
          }),
          lastProblem: z
            .object({
              object: z.enum(['evidence', 'record', 'legal_hold']).optional(),
              key: z.string().optional(),
              at: dateTime.optional(),
            })
            .nullable()
            .openapi({
              description: 'The latest object this instance found without WORM protection.',
            }),
        })
        .optional()
        .openapi({
          description:
            "S3 Object Lock as read back from the store after each write of evidence, checkpoint records and legal holds. Not ready while this instance's latest check found WORM not applied (`not_in_force`): new evidence would go unprotected. While latched, each `/readyz` re-checks the failing object at most every 30 seconds (waiting at most 2 seconds for it): the latch clears when the object shows the configured retention (re-applied where missing) or the legal hold, and stays while the store still ignores it. `lastProblem` keeps the latest failure either way. `unchecked`: Object Lock is configured and nothing was written yet.",
        }),
      disk: z
        .object({
          status: z.enum(['ok', 'low']),
          freeBytes: z.number().int().optional(),
          freePercent: z.number().optional(),
        })
        .optional()
        .openapi({
          description:
            'Free space on the file systems of `DATA_DIR` and (with `STORAGE_DRIVER=fs`) the blob directory; the lowest is shown. `low` (below `READY_MIN_FREE_DISK_PERCENT` or `READY_MIN_FREE_DISK_BYTES`) makes the service not ready.',
        }),
    }),
  })
  .openapi('Readiness');
export type Readiness = z.infer<typeof readinessSchema>;

export const getHealth = {
  method: 'get',
  path: '/healthz',
  tags: ['operations'],
  operationId: 'getHealth',
  summary: 'Liveness',
  description: 'No authentication. Answers as long as the process serves HTTP.',
  security: [],
  responses: {
    '200': {
      description: 'The process is alive.',
      content: json(z.object({ status: z.literal('ok') }).strict()),
    },
    ...serverErrors,
  },
} satisfies Operation;

export const getReadiness = {
  method: 'get',
  path: '/readyz',
  tags: ['operations'],
  operationId: 'getReadiness',
  summary: 'Readiness',
  description:
    'No authentication. Checks that the database answers `select 1` and the blob store answers a ping, each within 3 seconds, and that the data disk is not nearly full (`checks.disk`). Not ready while any of these fails, while S3 Object Lock is configured and the latest write found it not applied (`checks.worm`), or while the service is shutting down.',
  security: [],
  responses: {
    '200': {
      description: 'Database and storage are reachable.',
      content: json(readinessSchema),
    },
    '503': {
      description: `A dependency is unavailable or the service is shutting down (\`status\` is \`not_ready\`). ${UNAVAILABLE_CAUSES}`,
      content: json(readinessSchema),
      headers: { 'Retry-After': retryAfter },
    },
    '500': ref('responses', 'InternalError'),
    '507': ref('responses', 'InsufficientStorage'),
  },
} satisfies Operation;

export const getOpenApi = {
  method: 'get',
  path: '/openapi.json',
  tags: ['operations'],
  operationId: 'getOpenApi',
  summary: 'This OpenAPI document',
  description:
    'No authentication. Served from memory, compressed once per coding (`br` or `gzip`, by Accept-Encoding; a HEAD answers as the GET would, Content-Encoding and Content-Length included), with a strong ETag per representation; If-None-Match answers 304.',
  security: [],
  request: {
    headers: z.object({
      'If-None-Match': z
        .string()
        .optional()
        .openapi({
          param: {
            description:
              'An ETag from an earlier answer (weak comparison), or `*`: 304 when it matches the representation that would be sent.',
          },
        }),
    }),
  },
  responses: {
    '200': {
      description: 'The OpenAPI 3.1 description of this service.',
      headers: { ETag: ref('headers', 'OpenApiETag') },
      content: json(z.object({}).catchall(z.unknown())),
    },
    '304': {
      description: 'If-None-Match matched (weak comparison); no body.',
      headers: { ETag: ref('headers', 'OpenApiETag') },
    },
    ...serverErrors,
  },
} satisfies Operation;

export const getMetrics = {
  method: 'get',
  path: '/metrics',
  tags: ['operations'],
  operationId: 'getMetrics',
  summary: 'Prometheus metrics',
  description:
    'An `admin` API key, or the `METRICS_TOKEN` configured on the service, as a bearer token. Prometheus text exposition format. Gauges describing the archive (items by state, failing verifications, active holds, audit chain head and last checkpoint, last custody job runs and scrub findings) are read from the database at scrape time, so every instance reports the same values; counters (`evidence_integrity_checks_total`, `provider_recording_fetches_total{provider,outcome}`: `archived`, `retry`, `failed`) count what this instance did. `provider_recordings{provider,status}` counts announced recordings by status (`failed`: fetches given up; `absent`: no audio).',
  security: [{ bearer: [] }, { metricsToken: [] }] as Record<string, string[]>[],
  responses: {
    '200': {
      description: 'The metrics.',
      content: { 'text/plain': { schema: z.string() } },
    },
    ...standardErrors,
  },
} satisfies Operation;

export const operationsContract: ContractModule = {
  operations: [getHealth, getReadiness, getOpenApi, getMetrics],
};
