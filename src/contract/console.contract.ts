import { ROLES } from '../base/actor';
import { EVIDENCE_KINDS } from '../base/kinds';
import { identifier } from '../base/fields';
import { evidenceItemSchema, segmentSchema } from './evidence.contract';
import { dateTime, instantQuery } from './fields';
import type { ContractModule, Operation } from './operation';
import { json, problem, ref, serverErrors, standardErrors } from './operation';
import { z } from './zod';

const keyIdSchema = z.string().regex(/^[0-9a-f]{16}$/);
const roleSchema = z.enum(ROLES);

/** Who a key is: what `GET /v1/me` and `POST /v1/session` answer. */
export const meSchema = z.object({
  keyId: keyIdSchema,
  name: z.string(),
  role: roleSchema,
  permissions: z
    .array(z.string())
    .openapi({ description: 'What the role may do, e.g. `evidence:read`, `key:manage`.' }),
});
export type Me = z.infer<typeof meSchema>;

const sessionIdSchema = z.string().regex(/^[0-9a-f]{16}$/);

/** One of a person's open sessions, as `GET /v1/me` lists them: never a token. */
export const sessionViewSchema = z.object({
  id: sessionIdSchema.openapi({
    description: 'Not secret: names the session to end it (`DELETE /v1/me/sessions/{sessionId}`).',
  }),
  createdAt: dateTime.openapi({ description: 'When the person signed in.' }),
  lastUsedAt: dateTime,
  expiresAt: dateTime.openapi({
    description:
      'When it ends unless used again: `SESSION_IDLE_MINUTES` after its last use, or its `endsAt`, whichever is first.',
  }),
  endsAt: dateTime.openapi({ description: '`SESSION_MAX_HOURS` after sign-in, however busy.' }),
  userAgent: z.string().nullable().openapi({ description: 'As the browser sent it at sign-in.' }),
  clientIp: z
    .string()
    .nullable()
    .openapi({ description: 'The client address at sign-in (through `TRUST_PROXY`).' }),
  current: z.boolean().openapi({ description: 'The session this request came through.' }),
});
export type SessionView = z.infer<typeof sessionViewSchema>;

export const meWithSessionsSchema = meSchema.extend({
  sessions: z.array(sessionViewSchema).openapi({
    description:
      "The key's open web app sessions, oldest first (empty for a key that never signed in; ingest keys never do).",
  }),
});
export type MeWithSessions = z.infer<typeof meWithSessionsSchema>;

export const openedSessionSchema = meSchema.extend({
  session: z.object({
    id: sessionIdSchema,
    token: z
      .string()
      .regex(/^eas_[A-Za-z0-9_-]{43}$/)
      .openapi({
        description:
          "`eas_...` (256 random bits): send it as `Authorization: Bearer <token>` instead of the key until the session ends. Shown once; only its SHA-256 is stored. Not the cookie's token.",
      }),
    createdAt: dateTime,
    endsAt: dateTime.openapi({ description: 'The absolute end: `SESSION_MAX_HOURS` from now.' }),
    idleMinutes: z.number().int().openapi({
      description: '`SESSION_IDLE_MINUTES`: it ends after this long without a request.',
    }),
  }),
});
export type OpenedSessionView = z.infer<typeof openedSessionSchema>;

export const sessionBody = z
  .object({
    key: z.string().min(1).max(200).openapi({ description: 'A support or admin key `eak_...`.' }),
  })
  .strict();

// What support pastes: order, complaint and tracking ids, or a phone number as people write it.
const QUERY_CHARS = /^[\p{L}\p{N} #\-_./:+@()*]+$/u;

export const lookupQuery = z
  .object({
    q: identifier(128, QUERY_CHARS).openapi({
      param: {
        description:
          'Order, complaint or tracking id, or a phone number: letters, digits, spaces and `# - _ . / : + @ ( ) *`.',
      },
    }),
    kind: z.enum(EVIDENCE_KINDS).optional(),
    stationId: identifier().optional(),
    from: instantQuery('Captured at or after (ISO 8601 with a time zone).'),
    to: instantQuery('Captured before.'),
  })
  .strict();
export type LookupQuery = z.infer<typeof lookupQuery>;

export const lookupMatchSchema = z.object({
  type: z.enum(['complaint', 'order', 'tracking_number', 'phone']),
  value: z.string().openapi({ description: 'The id as stored, or the number in E.164.' }),
  items: z.array(
    evidenceItemSchema.extend({
      segments: z.array(segmentSchema).optional().openapi({
        description:
          'For `order` and `tracking_number` matches: the parts of a long recording that are that order or carry that number.',
      }),
    }),
  ),
});
export type LookupMatch = z.infer<typeof lookupMatchSchema>;
export type LookupMatchType = LookupMatch['type'];

export const lookupResultSchema = z.object({
  query: z.string(),
  matches: z.array(lookupMatchSchema),
});
export type LookupResult = z.infer<typeof lookupResultSchema>;

export const keyRowSchema = z.object({
  id: keyIdSchema,
  name: z.string(),
  role: roleSchema,
  createdAt: dateTime,
  revokedAt: dateTime.nullable(),
  lastUsedAt: dateTime.nullable().openapi({
    description:
      'Written by authentication at most once a minute per key and instance, so up to a minute old.',
  }),
});
export type KeyRow = z.infer<typeof keyRowSchema>;

export const createKeyBody = z
  .object({
    role: roleSchema,
    name: identifier(100),
    confirmKey: z.string().max(200).optional().openapi({
      description:
        'Required when the request comes through a web app session (not the key itself): the signed-in key, typed again, so that a stolen session cannot make itself a key that outlives it.',
    }),
  })
  .strict();

export const mintedKeySchema = z.object({
  id: z.string(),
  key: z.string().openapi({ description: '`eak_<id>_<secret>`: shown once.' }),
  role: z.string(),
  name: z.string(),
});

export const openRoot = {
  method: 'get',
  path: '/',
  tags: ['console'],
  operationId: 'openRoot',
  summary: 'Redirect to the web app',
  security: [],
  description:
    "No authentication. Redirects (302) to the support staff's web app at `/app/`, which is served from the same origin as static files (`index.html` and content-hashed `app-<hash>.js` / `app-<hash>.css`, immutable) with `Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`, `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`. The packing station's page is served the same way at `/station/` (`station-<hash>.js` / `station-<hash>.css`), with `Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'none'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`. `/app/` and `/station/` answer 503 `not_ready` when they were not built (`npm run build`).",
  responses: {
    '302': {
      description: '`Location: /app/`.',
      headers: {
        Location: {
          required: true,
          description: '`/app/`.',
          schema: { type: 'string', const: '/app/' },
        },
      },
      content: { 'text/plain': { schema: z.string() }, 'text/html': { schema: z.string() } },
    },
    ...serverErrors,
  },
} satisfies Operation;

export const getMe = {
  method: 'get',
  path: '/v1/me',
  tags: ['console'],
  operationId: 'getMe',
  summary: 'Who the key is',
  description:
    "Any valid key, session token or the session cookie. The key's id, name, role and permissions (what a client may offer), and the key's open web app sessions (`current: true` for the one this request came through); sessions found run out are ended (audited as `session.end`) on the way. `Cache-Control: no-store`.",
  responses: {
    '200': {
      description: "The key's holder and its sessions.",
      content: json(meWithSessionsSchema),
    },
    ...standardErrors,
  },
} satisfies Operation;

export const openSession = {
  method: 'post',
  path: '/v1/session',
  tags: ['console'],
  operationId: 'openSession',
  summary: 'Sign in: trade a key for a web app session',
  security: [],
  description:
    "For the web app. Checks the support or admin key in the body and opens a session bound to it: a random token for the app's Authorization header (`session.token`, `eas_...`; the app keeps it instead of the key) and a second random token in the cookie `eak_session` for `<video>`, `<audio>` and `<img>`, which cannot send a header (`HttpOnly; SameSite=Strict; Path=/v1`, `Secure` over https, no `Max-Age`: it also ends with the browser session). Neither is the key, and only their SHA-256 is stored. The session ends after `SESSION_IDLE_MINUTES` without a request, `SESSION_MAX_HOURS` after sign-in, at sign-out (`DELETE /v1/session`), when ended from `GET /v1/me`'s list, or when the key is revoked; every use reads the database, so an ended session is refused at once on every instance. The cookie authenticates `GET` and `HEAD` requests only, and only when they carry no Authorization header and come from the service's own pages (`Sec-Fetch-Site` absent or `same-origin`, and `Origin`, if sent, this service's host; otherwise 401 `unauthorized`). Requests through a session are audited as the key's holder, like any other. Ingest keys belong to devices and are refused (403 `session_not_allowed`). Audited as `session.open`, refusals (401, 403) as `denied`.",
  request: {
    body: { required: true, content: json(sessionBody) },
  },
  responses: {
    '200': {
      description:
        "Signed in: the key's holder and the session, with `Set-Cookie: eak_session=...`.",
      content: json(openedSessionSchema),
      headers: {
        'Set-Cookie': {
          required: true,
          description:
            "`eak_session=<cookie token>; Path=/v1; HttpOnly; SameSite=Strict` (and `Secure` behind https): the session the web app's media elements use for GET and HEAD. Never the key.",
          schema: { type: 'string' },
        },
      },
    },
    '400': problem('`validation_failed`, `invalid_json`: no key in the body.'),
    '401': ref('responses', 'Unauthorized'),
    '403': problem('`session_not_allowed`: an ingest key.'),
    '413': ref('responses', 'BodyTooLarge'),
    '429': ref('responses', 'RateLimited'),
    ...serverErrors,
    '507': ref('responses', 'InsufficientStorage'),
  },
} satisfies Operation;

export const closeSession = {
  method: 'delete',
  path: '/v1/session',
  tags: ['console'],
  operationId: 'closeSession',
  summary: 'Sign out',
  security: [],
  description:
    'Ends the session named by the `Authorization: Bearer eas_...` token, or else by the `eak_session` cookie, at once on every instance, and clears the cookie. Holding the token is enough (no key needed); an unknown or ended session is no error. Audited as `session.close`.',
  responses: {
    '204': {
      description: 'Signed out.',
      headers: {
        'Set-Cookie': {
          required: true,
          description: 'Clears `eak_session` (expired in the past).',
          schema: { type: 'string' },
        },
      },
    },
    ...serverErrors,
  },
} satisfies Operation;

export const endSession = {
  method: 'delete',
  path: '/v1/me/sessions/{sessionId}',
  tags: ['console'],
  operationId: 'endSession',
  summary: 'End one of my sessions',
  description:
    "Any support or admin key, or a session of it (its header token; the cookie is for reads only). Ends one of the key's own open sessions (from `GET /v1/me`), at once on every instance: e.g. a browser left signed in elsewhere. Another key's session is 404, as is one already ended. Audited as `session.end` (`reason: ended_by_holder`).",
  request: { params: z.object({ sessionId: z.string() }) },
  responses: {
    '204': { description: 'Ended.' },
    '404': problem('`not_found`: no open session of this key with that id.'),
    ...standardErrors,
  },
} satisfies Operation;

export const lookup = {
  method: 'get',
  path: '/v1/lookup',
  tags: ['console'],
  operationId: 'lookup',
  summary: 'One search box',
  description:
    "Roles: `support`, `admin`. Decides what `q` is and answers with every kind that matches, in this order: a complaint id (a complaint on record, or one evidence is linked to: its items and its orders' items), an order id (items linked to it, with that order's segments), a tracking number (items carrying it, and long recordings with a segment carrying it), a phone number in any common format (`+44 20 7946 0958`, `0044 20 7946 0958`, `(020) 7946-0958` with `DEFAULT_PHONE_REGION=GB`; normalised to E.164; calls from or to it). Ids are also tried in capitals. The filters apply to the items of every match. Each query is an index lookup; at most 200 items a match. Audited as `evidence.list`.",
  request: { query: lookupQuery },
  responses: {
    '200': {
      description: 'What matched (an empty `matches` when nothing did).',
      content: json(lookupResultSchema),
    },
    '400': problem(
      '`validation_failed`: no or a malformed `q`, a bad filter, an unknown parameter.',
    ),
    ...standardErrors,
  },
} satisfies Operation;

export const listKeys = {
  method: 'get',
  path: '/v1/keys',
  tags: ['console'],
  operationId: 'listKeys',
  summary: 'List API keys',
  description:
    'Roles: `admin`. Every key, oldest first, with when it was last used; never a secret. Audited as `key.list`. `Cache-Control: no-store`.',
  responses: {
    '200': {
      description: 'The keys.',
      content: json(z.object({ keys: z.array(keyRowSchema) })),
    },
    ...standardErrors,
  },
} satisfies Operation;

export const createKey = {
  method: 'post',
  path: '/v1/keys',
  tags: ['console'],
  operationId: 'createKey',
  summary: 'Mint an API key',
  description:
    'Roles: `admin`. The key is in this answer only (stored as a hash). Audited as `key.create`.',
  request: {
    body: { required: true, content: json(createKeyBody) },
  },
  responses: {
    '201': {
      description: 'The new key, with `Location: /v1/keys/{keyId}`.',
      content: json(mintedKeySchema),
      headers: {
        Location: { description: '`/v1/keys/{id}` of the new key.', schema: { type: 'string' } },
      },
    },
    '400': problem('`validation_failed`, `unknown_field`, `invalid_json`.'),
    '413': ref('responses', 'BodyTooLarge'),
    ...standardErrors,
    '403': problem(
      "`forbidden`: the key's role does not allow this action; `key_confirmation_required`: the request came through a web app session without `confirmKey`, or with another key than the session's.",
    ),
  },
} satisfies Operation;

export const revokeKey = {
  method: 'delete',
  path: '/v1/keys/{keyId}',
  tags: ['console'],
  operationId: 'revokeKey',
  summary: 'Revoke an API key',
  description:
    "Roles: `admin`. Ends the key's web app sessions at once on every instance (each audited as `session.end`, `reason: key_revoked`); the key itself is refused at once on this instance and within `AUTH_CACHE_TTL_MS` on others. Audited as `key.revoke`.",
  request: { params: z.object({ keyId: z.string() }) },
  responses: {
    '200': {
      description: 'Revoked.',
      content: json(z.object({ id: z.string(), revoked: z.literal(true) })),
    },
    '404': problem('`not_found`: no such key, or it is revoked already.'),
    '409': problem('`own_key_revocation`: the key making the request; use another admin key.'),
    ...standardErrors,
  },
} satisfies Operation;

export const consoleContract: ContractModule = {
  operations: [
    openRoot,
    getMe,
    endSession,
    openSession,
    closeSession,
    lookup,
    listKeys,
    createKey,
    revokeKey,
  ],
};
