import { pageCursor, pageLimit } from './fields';
import type { ContractModule, Operation } from './operation';
import { json, jobQueueUnavailable, problem, ref } from './operation';
import { z } from './zod';

export const RECORDING_STATUSES = ['queued', 'archived', 'failed', 'absent'] as const;
export const PROVIDERS = ['twilio'] as const;

const sid = (prefix: string) =>
  z.string().regex(new RegExp(`^${prefix}[0-9a-f]{32}$`), `must be a Twilio ${prefix} SID`);

/**
 * The fields of Twilio's recording status callback that we use; others are ignored. Parsed by the
 * Twilio service once the signature (over the raw fields) has been checked.
 */
export const twilioCallbackBody = z.object({
  AccountSid: sid('AC'),
  CallSid: sid('CA'),
  RecordingSid: sid('RE'),
  // Empty (or missing) only when RecordingStatus is `absent`: checked by the service.
  RecordingUrl: z
    .string()
    .max(2048)
    .refine((v) => v === '' || URL.canParse(v), 'must be a URL')
    .optional()
    .openapi({
      description:
        "The recording's media URL; empty (or missing) only when `RecordingStatus` is `absent`.",
    }),
  RecordingStatus: z.string().max(32).openapi({
    description:
      '`completed` is fetched, `absent` recorded as a gap, anything else (`in-progress`) ignored.',
  }),
  RecordingDuration: z.coerce
    .number()
    .int()
    .min(0)
    .max(86_400 * 7)
    .optional()
    .openapi({ type: 'integer' }),
  RecordingChannels: z.coerce.number().int().min(1).max(8).optional().openapi({ type: 'integer' }),
  RecordingSource: z.string().max(64).optional(),
  RecordingStartTime: z.string().max(64).optional(),
  ErrorCode: z.string().max(16).optional().openapi({
    description: "Twilio's error code, when it gives one (kept in the trail for `absent`).",
  }),
});
export type TwilioCallbackBody = z.infer<typeof twilioCallbackBody>;

export const twilioCallbackResultSchema = z
  .object({
    recordingSid: z.string(),
    status: z.enum(['queued', 'duplicate', 'ignored', 'absent']),
  })
  .openapi('TwilioCallbackResult');
export type CallbackResult = z.infer<typeof twilioCallbackResultSchema>;

export const providerRecordingSchema = z
  .object({
    provider: z.enum(PROVIDERS),
    recordingSid: z.string(),
    callSid: z.string().nullable(),
    status: z.enum(RECORDING_STATUSES).openapi({
      description:
        '`queued`: being fetched (or waiting for a retry); `archived`: stored as `itemId`; `failed`: the fetch gave up (`lastError` says why); `absent`: the provider recorded no audio (a known gap).',
    }),
    attempts: z.number().int().min(0).openapi({ description: 'Fetches tried.' }),
    lastError: z.string().nullable().openapi({
      description: 'Why the last fetch failed (the host refused, the status answered, ...).',
    }),
    itemId: z
      .string()
      .nullable()
      .openapi({ format: 'uuid', description: 'The archived evidence item.' }),
    durationSeconds: z.number().int().nullable(),
    receivedAt: z
      .string()
      .openapi({ format: 'date-time', description: 'When the callback was first received.' }),
    updatedAt: z
      .string()
      .openapi({ format: 'date-time', description: 'The last change (a fetch attempt).' }),
  })
  .openapi('ProviderRecording', {
    description:
      'A recording a provider announced and what became of it. Never its media URL or a credential.',
  });
export type ProviderRecordingView = z.infer<typeof providerRecordingSchema>;

export const listProviderRecordingsQuery = z
  .object({
    status: z.enum(RECORDING_STATUSES).openapi({ param: { description: 'Which recordings.' } }),
    provider: z
      .enum(PROVIDERS)
      .optional()
      .openapi({ param: { description: "Only this provider's." } }),
    limit: pageLimit(200, 50),
    cursor: pageCursor(40),
  })
  .strict();
export type ListProviderRecordingsQuery = z.infer<typeof listProviderRecordingsQuery>;

export const twilioRecordingCallback = {
  method: 'post',
  path: '/v1/integrations/twilio/recording',
  tags: ['integrations'],
  operationId: 'twilioRecordingCallback',
  summary: 'Twilio recording status callback',
  description:
    "No API key: authenticated by `X-Twilio-Signature`, checked exactly as Twilio's helper library (`validateRequest`) checks it: an HMAC over the URL Twilio called (`PUBLIC_URL` when set, and then only it, whatever `Host` the request names; without it the request's scheme and `Host`, `X-Forwarded-Proto`/`-Host` counting only from a proxy trusted by `TRUST_PROXY`), tried with and without its default port (`:443`, `:80`), followed by the form fields sorted by name, a repeated field's distinct values sorted; base64. Without `X-Twilio-Webhooks-Signature-Settings` (or with it empty, as the library's `webhook()` reads it): HMAC-SHA1 with `TWILIO_AUTH_TOKEN`. With it (a Webhook Rule signing with a SharedKey): the algorithm it names (`HMAC_SHA256` or `HMAC_SHA1`; none named: SHA-1) with `TWILIO_WEBHOOK_SHARED_KEY_SECRET`. Only when `TWILIO_AUTH_TOKEN` is configured (else 404). Recorded as `integration.callback`.\n\nA `completed` recording is recorded once per `RecordingSid` and its media fetched in a background job from `RecordingUrl` (plus `.wav` or `.mp3`): only from `TWILIO_MEDIA_HOSTS`, over https, never from a loopback or private address, with Basic credentials sent to the first host only, retried with backoff while Twilio answers 404. It is archived as a call recording under the ingest key `TWILIO_INGEST_KEY_ID`, with the `RecordingSid` as call id and `source` `twilio`. The custody trail keeps its media URL without query or user info (a provider may sign it with a token there). An `absent` recording (Twilio recorded no audio; `RecordingUrl` empty or missing) is recorded once as a known gap: listed by `GET /v1/integrations/recordings?status=absent` and in the custody trail (`integration.callback`, `details.recordingStatus` `absent`); a `completed` callback for it later queues it after all (202 `queued`, in the trail with `details.previousStatus` `absent`). Other statuses are acknowledged and ignored.",
  security: [],
  request: {
    headers: z.object({
      'X-Twilio-Signature': z
        .string()
        .openapi({ param: { description: "Twilio's base64 HMAC of the request (see above)." } }),
      'X-Twilio-Webhooks-Signature-Settings': z
        .string()
        .max(512)
        .optional()
        .openapi({
          param: {
            required: false,
            description:
              "Set by Twilio when a Webhook Rule signs with a SharedKey: `key=<SharedKey id>,algorithm=HMAC_SHA256`. Empty counts as absent (auth token, HMAC-SHA1), as in Twilio's helper library. The signature is then checked with `TWILIO_WEBHOOK_SHARED_KEY_SECRET` and that algorithm; an algorithm other than `HMAC_SHA1`/`HMAC_SHA256`, or no secret configured, is 403 `invalid_signature`.",
          },
        }),
    }),
    body: {
      required: true,
      content: { 'application/x-www-form-urlencoded': { schema: twilioCallbackBody } },
    },
  },
  responses: {
    '200': {
      description:
        'Nothing to fetch: not a completed recording (`ignored`), or a known gap (`absent`: Twilio recorded no audio; the same answer when Twilio calls again, recorded once).',
      content: json(twilioCallbackResultSchema),
    },
    '202': {
      description:
        'Queued for fetching (`queued`, also for a recording announced `absent` before), or announced before (`duplicate`): one item per recording however often Twilio calls.',
      content: json(twilioCallbackResultSchema),
    },
    '400': problem(
      '`validation_failed`: a field is missing or not a Twilio SID/URL (`RecordingUrl` is required for a `completed` recording), or the body could not be read.',
    ),
    '403': problem(
      '`invalid_signature`: `X-Twilio-Signature` is missing or does not match (wrong secret, other parameters, another URL, an unknown algorithm in `X-Twilio-Webhooks-Signature-Settings`, or a SharedKey signature with no `TWILIO_WEBHOOK_SHARED_KEY_SECRET` configured). `wrong_account`: signed correctly, but for another account than `TWILIO_ACCOUNT_SID`.',
    ),
    '404': problem('`not_found`: the integration is not configured.'),
    '413': problem('`body_too_large`: the form body is above 16 KiB.'),
    '429': ref('responses', 'RateLimited'),
    '503': jobQueueUnavailable,
    '500': ref('responses', 'InternalError'),
    '507': ref('responses', 'InsufficientStorage'),
  },
} satisfies Operation;

export const listProviderRecordings = {
  method: 'get',
  path: '/v1/integrations/recordings',
  tags: ['integrations'],
  operationId: 'listProviderRecordings',
  summary: 'Recordings providers announced, by status',
  description:
    'Roles: `admin`.\n\nThe recordings in one `status`, newest announcement first: `failed` shows every recording whose fetch gave up, with its attempts and last error, so a failure is never only in the database; `absent`, the calls the provider recorded no audio for. Audited as `custody.read`. Unknown query parameters are refused (400 `validation_failed`). The same counts are in `/metrics` as `provider_recordings{provider,status}`.',
  request: { query: listProviderRecordingsQuery },
  responses: {
    '200': {
      description: 'A page of recordings.',
      content: json(
        z.object({
          items: z.array(providerRecordingSchema),
          nextCursor: z.string().nullable().openapi({
            description: 'Pass as `cursor` for the next page; null on the last one.',
          }),
        }),
      ),
    },
    '400': problem(
      '`validation_failed`: a missing or unknown `status`, a bad `limit`, or an unknown parameter; `invalid_cursor`: a cursor this service did not issue.',
    ),
    '401': ref('responses', 'Unauthorized'),
    '403': ref('responses', 'Forbidden'),
    '429': ref('responses', 'RateLimited'),
    '500': ref('responses', 'InternalError'),
    '503': ref('responses', 'ServiceUnavailable'),
  },
} satisfies Operation;

export const integrationsContract: ContractModule = {
  operations: [twilioRecordingCallback, listProviderRecordings],
};
