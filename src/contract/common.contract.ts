import type { ResponseConfig } from '@asteasolutions/zod-to-openapi';
import { PROBLEMS } from './problems';
import type { Component, ContractModule } from './operation';
import { problem, problemContent, ref, retryAfter } from './operation';
import { z } from './zod';

/** RFC 9457 problem details, as every error answer carries them. */
export const problemSchema = z
  .object({
    type: z.string().openapi({ description: '`urn:evidence-archive:problem:<code>`.' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(Object.keys(PROBLEMS) as [keyof typeof PROBLEMS, ...(keyof typeof PROBLEMS)[]]),
    instance: z.string().openapi({ description: 'The request path, without the query.' }),
  })
  .catchall(z.unknown())
  .openapi('Problem', {
    description:
      'RFC 9457 problem details. Some codes add members, e.g. `field` and `issues` (validation_failed), `allowed` (unknown_field), `requires` (forbidden), `declared` and `computed` (checksum_mismatch), `detectedType` and `kind` (unsupported_media_type), `callId` (call_id_conflict), `itemId` (evidence_deleted on upload), `header` (invalid_tus_header), `supported` (tus_version_unsupported).',
  });

// The standard answers other contract files build on (the tus endpoint adds `Tus-Resumable`).

export const unauthorizedResponse = {
  description: '`unauthorized`: missing, invalid or revoked API key.',
  headers: {
    'WWW-Authenticate': {
      description: '`Bearer realm="evidence-archive"`.',
      schema: { type: 'string' },
    },
  },
  content: problemContent,
} satisfies ResponseConfig;

export const forbiddenResponse = problem(
  "`forbidden`: the key's role does not allow this action (or, for `ingest` keys, the item is not one of its uploads). The problem's `requires` names the missing permission.",
);

export const rateLimitedResponse = {
  description:
    '`rate_limited`: this client address has had more than `REFUSAL_LIMIT_PER_MINUTE` (default 30) requests refused for want of a valid key, or share links that did not open, this minute. Requests with a valid key (or a valid link) are still served; others are refused with 429 until the minute ends.',
  headers: {
    'Retry-After': {
      description: 'Seconds until the minute ends and the address may be refused one by one again.',
      schema: { type: 'integer', minimum: 1, maximum: 60 },
    },
  },
  content: problemContent,
} satisfies ResponseConfig;

/** 429 of an operation that spends a per-key budget (src/access/key-budgets.ts). */
export const budgetExceededResponse = {
  description:
    "`budget_exceeded`: this key has spent a budget for expensive work (the problem's `budget`: `verify_bytes_per_hour` (`KEY_VERIFY_BYTES_PER_HOUR`), `audit_pages_per_minute` (`KEY_AUDIT_PAGES_PER_MINUTE`) or `bundle_builds` at once (`KEY_BUNDLE_BUILDS`), its `limit`, and `retryAfterSeconds`); one budget per key across every instance, whatever its role. The refusal is recorded in the audit trail (outcome `denied`, with the budget) and listed for admins at `GET /v1/key-budgets`. Or `rate_limited`, as for any operation.",
  headers: {
    'Retry-After': {
      description: 'Seconds until the budget has room again (the window ends, or a build ends).',
      schema: { type: 'integer', minimum: 1, maximum: 3600 },
    },
  },
  content: problemContent,
} satisfies ResponseConfig;

export const serviceUnavailableResponse = {
  description:
    '`dependency_unavailable`: the database or the blob store is unavailable or not answering (nothing of the request was kept); `not_ready`: the service is shutting down and this request did not finish within the grace period (it was not acknowledged: retry it).',
  headers: {
    'Retry-After': { ...retryAfter, required: true },
  },
  content: problemContent,
} satisfies ResponseConfig;

export const insufficientStorageResponse = problem(
  "`insufficient_storage`: the archive (its disk, or its database's) has no space left; nothing of the request was kept.",
);

export const internalErrorResponse = problem(
  '`internal_error`: an unexpected failure; it has been logged.',
);

/** `Allow` and the CORS grant of a preflight: what an OPTIONS answers (the tus endpoint's too). */
export const preflightHeaders = {
  Allow: ref('headers', 'Allow'),
  'Access-Control-Allow-Origin': ref('headers', 'AccessControlAllowOrigin'),
  'Access-Control-Allow-Methods': ref('headers', 'AccessControlAllowMethods'),
  'Access-Control-Allow-Headers': ref('headers', 'AccessControlAllowHeaders'),
  'Access-Control-Max-Age': ref('headers', 'AccessControlMaxAge'),
};

/** HTTP-level components shared by many operations: schemes, headers, standard answers. */
const components: Component[] = [
  {
    type: 'securitySchemes',
    name: 'bearer',
    value: {
      type: 'http',
      scheme: 'bearer',
      description:
        'API key `eak_<id>_<secret>`, sent as `Authorization: Bearer <key>`. Mint one with `npm run keys -- create --role ingest --name "PK-03" --json` (roles: `ingest`, `support`, `admin`). Or a web app session\'s token `eas_...` (from `POST /v1/session`), which acts as its key until the session ends.',
    },
  },
  {
    type: 'securitySchemes',
    name: 'sessionCookie',
    value: {
      type: 'apiKey',
      in: 'cookie',
      name: 'eak_session',
      description:
        "Set by `POST /v1/session` for the web app's media elements: a random session token (never the key), `HttpOnly; SameSite=Strict; Path=/v1`, looked up in the database on every use, so it stops working the moment the session ends (sign-out, `DELETE /v1/me/sessions/{sessionId}`, the key's revocation, `SESSION_IDLE_MINUTES` without use, `SESSION_MAX_HOURS` after sign-in). Accepted for `GET` and `HEAD` requests without an Authorization header, from the service's own pages, only; never for a request that changes anything.",
    },
  },
  {
    type: 'securitySchemes',
    name: 'metricsToken',
    value: {
      type: 'http',
      scheme: 'bearer',
      description:
        'For `GET /metrics` only: the `METRICS_TOKEN` value (at least 16 characters) configured on the service, sent as `Authorization: Bearer <token>`. Without it configured, only an `admin` key can read the metrics.',
    },
  },
  {
    type: 'parameters',
    name: 'TusResumable',
    value: {
      name: 'Tus-Resumable',
      in: 'header',
      required: true,
      description:
        'The tus protocol version, `1.0.0`. Missing or another value: 412 with `Tus-Version` (`tus_resumable_required`, `tus_version_unsupported`).',
      schema: { type: 'string', const: '1.0.0' },
    },
  },
  {
    type: 'headers',
    name: 'OpenApiETag',
    value: {
      description:
        'Strong entity tag of the representation sent: `"<sha256 hex of the identity bytes>"`, with `-br` or `-gzip` before the closing quote when compressed.',
      schema: { type: 'string', pattern: '^"[0-9a-f]{64}(-(br|gzip))?"$' },
    },
  },
  {
    type: 'headers',
    name: 'TusResumable',
    value: {
      description: '`1.0.0`, the tus version of the answer.',
      schema: { type: 'string', const: '1.0.0' },
    },
  },
  {
    type: 'headers',
    name: 'UploadOffset',
    value: {
      description:
        'The bytes of the upload the archive holds durably: where the next PATCH starts.',
      schema: { type: 'integer', minimum: 0 },
    },
  },
  {
    type: 'headers',
    name: 'UploadExpires',
    value: {
      description:
        'While the upload is unfinished: when it expires (HTTP date), `RESUMABLE_UPLOAD_EXPIRY_HOURS` after its creation.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'EvidenceItemId',
    value: {
      description: 'Once every byte is in: the evidence item the upload became.',
      schema: { type: 'string', format: 'uuid' },
    },
  },
  {
    type: 'headers',
    name: 'EvidenceItemUrl',
    value: {
      description: 'Once every byte is in: `/v1/evidence/{id}` of that item.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'EvidenceItemStatus',
    value: {
      description:
        "Once every byte is in: `created` for a new item; `duplicate` when these bytes were archived before (the existing item, with this upload's links merged into it).",
      schema: { type: 'string', enum: ['created', 'duplicate'] },
    },
  },
  {
    type: 'headers',
    name: 'UploadReprDigest',
    value: {
      description:
        'Once every byte is in: RFC 9530 `sha-256=:<base64>:` of the archived bytes, computed by the server as they arrived. Compare it with your own.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'TusVersion',
    value: {
      description: '`1.0.0`: the tus versions this server speaks, the preferred first.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'Allow',
    value: {
      description:
        'Every method the path serves, e.g. `GET, HEAD, POST, OPTIONS` (`GET` implies `HEAD`; `OPTIONS` on every known path).',
      schema: { type: 'string' },
      required: true,
    },
  },
  {
    type: 'headers',
    name: 'AccessControlAllowOrigin',
    value: {
      description:
        'Only for an origin listed in `CORS_ORIGINS`: that origin, exactly as sent in `Origin`. Never `*`, never another origin.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'AccessControlAllowMethods',
    value: {
      description:
        'CORS preflight from a listed origin only: the methods the path serves, as in `Allow`.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'AccessControlAllowHeaders',
    value: {
      description:
        'CORS preflight from a listed origin only: `Authorization`, `Content-Type`, `Content-Disposition`, `Idempotency-Key`, `If-Match`, `If-None-Match`, `If-Range`, `Range`, `Repr-Digest`, `X-Request-Id`, the `X-Call-*` headers of a pushed recording, and the tus request headers (`Tus-Resumable`, `Upload-Length`, `Upload-Metadata`, `Upload-Offset`, `Upload-Defer-Length`, `Upload-Concat`, `X-HTTP-Method-Override`, `X-Requested-With`).',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'AccessControlMaxAge',
    value: {
      description:
        'CORS preflight from a listed origin only: `7200` (seconds a browser may keep the answer).',
      schema: { type: 'integer' },
    },
  },
  {
    type: 'headers',
    name: 'AccessControlExposeHeaders',
    value: {
      description:
        'Listed origins only: the response headers a page may read beyond the safelisted ones: `Allow`, `Accept-Ranges`, `Content-Disposition`, `Content-Range`, `ETag`, `Idempotent-Replayed`, `Location`, `Repr-Digest`, `Retry-After`, `WWW-Authenticate`, `X-Request-Id`, `Evidence-Item-Id`, `Evidence-Item-Url`, `Evidence-Item-Status`, and the tus response headers.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'Vary',
    value: {
      description:
        '`Origin` when `CORS_ORIGINS` is set; `Accept-Encoding` on JSON and text answers, which may be compressed.',
      schema: { type: 'string' },
    },
  },
  {
    type: 'headers',
    name: 'ContentEncoding',
    value: {
      description:
        '`br` or `gzip` when the answer was compressed as `Accept-Encoding` asked; never on stored bytes or bundles.',
      schema: { type: 'string', enum: ['br', 'gzip'] },
    },
  },
  { type: 'responses', name: 'Unauthorized', value: unauthorizedResponse },
  { type: 'responses', name: 'Forbidden', value: forbiddenResponse },
  {
    type: 'responses',
    name: 'NotFound',
    value: problem('`not_found`: no evidence item with this id.'),
  },
  { type: 'responses', name: 'RateLimited', value: rateLimitedResponse },
  { type: 'responses', name: 'BudgetExceeded', value: budgetExceededResponse },
  {
    type: 'responses',
    name: 'TusVersionRefused',
    value: {
      description:
        'tus: `tus_resumable_required` (no `Tus-Resumable` header) or `tus_version_unsupported` (a version other than `1.0.0`; `supported` lists them). The request is not processed.',
      headers: {
        'Tus-Version': { $ref: '#/components/headers/TusVersion' },
        'Tus-Resumable': { $ref: '#/components/headers/TusResumable' },
      },
      content: problemContent,
    },
  },
  {
    type: 'responses',
    name: 'MethodNotAllowed',
    value: {
      description:
        '`method_not_allowed`: the path exists but does not serve this method. Sent for any method an operation of the path does not declare (a `HEAD` gets the headers only). `Allow` lists the methods it serves.',
      headers: { Allow: { $ref: '#/components/headers/Allow' } },
      content: problemContent,
    },
  },
  {
    type: 'responses',
    name: 'RouteNotFound',
    value: problem('`route_not_found`: no such path (any path the document does not list).'),
  },
  { type: 'responses', name: 'ServiceUnavailable', value: serviceUnavailableResponse },
  { type: 'responses', name: 'InsufficientStorage', value: insufficientStorageResponse },
  { type: 'responses', name: 'InternalError', value: internalErrorResponse },
  {
    type: 'responses',
    name: 'BodyTooLarge',
    value: problem('`body_too_large`: the JSON body is over 64 KiB.'),
  },
  {
    type: 'responses',
    name: 'Options',
    value: {
      description:
        'The methods the path serves. To a CORS preflight (`Access-Control-Request-Method`) from an origin listed in `CORS_ORIGINS`, also the CORS grant; to any other origin, no `Access-Control-*` header.',
      headers: {
        ...preflightHeaders,
        'Access-Control-Expose-Headers': {
          $ref: '#/components/headers/AccessControlExposeHeaders',
        },
        Vary: { $ref: '#/components/headers/Vary' },
      },
    },
  },
];

export const commonContract: ContractModule = {
  operations: [],
  components,
  schemas: { Problem: problemSchema },
};
