import type { RouteConfig } from '@asteasolutions/zod-to-openapi';
import type { ZodTypeAny } from 'zod';

/** One operation of the HTTP contract: what the route accepts and answers, declared once. */
export type Operation = RouteConfig;

/** A component the document carries by name (a shared response, header, parameter or scheme). */
export interface Component {
  type: 'responses' | 'headers' | 'parameters' | 'securitySchemes';
  name: string;
  value: object;
}

/** What one contract file contributes: its operations and any named components. */
export interface ContractModule {
  operations: Operation[];
  components?: Component[];
  /** Parameters declared once for a whole path (its path item's `parameters`), by path. */
  pathParameters?: Record<string, object[]>;
  /** Schemas the document carries by name even where no zod schema refers to them. */
  schemas?: Record<string, ZodTypeAny>;
}

export const ref = (type: Component['type'] | 'schemas', name: string) => ({
  $ref: `#/components/${type}/${name}`,
});

/** A JSON body of this schema, as a request's or an answer's `content`. */
export const json = (schema: ZodTypeAny) => ({ 'application/json': { schema } });

/** The body of every error answer: RFC 9457 problem details. */
export const problemContent = { 'application/problem+json': { schema: ref('schemas', 'Problem') } };

/** A problem+json answer (RFC 9457) whose codes the description names. */
export const problem = (description: string) => ({ description, content: problemContent });

/** What any operation may answer besides its own, one without a key too: a failure, an outage. */
export const serverErrors = {
  '500': ref('responses', 'InternalError'),
  '503': ref('responses', 'ServiceUnavailable'),
};

/** The answers every authenticated operation may give besides its own. */
export const standardErrors = {
  '401': ref('responses', 'Unauthorized'),
  '403': ref('responses', 'Forbidden'),
  '429': ref('responses', 'RateLimited'),
  ...serverErrors,
  '507': ref('responses', 'InsufficientStorage'),
};

/** 413 of an operation whose JSON body is over the limit. */
export const bodyTooLarge = problem('`body_too_large`: the JSON body exceeds 64 KiB.');

/** 400 of an operation whose `{complaintId}` is not an identifier. */
export const complaintIdRefused = problem(
  '`validation_failed`: the complaint id is not a valid identifier.',
);

/** `Retry-After` of a 503: how long to wait. */
export const retryAfter = {
  description: 'Seconds to wait before retrying.',
  schema: { type: 'integer' as const, minimum: 1 },
};

/** A 503's causes besides an operation's own: the database or the blob store, or a shutdown. */
export const UNAVAILABLE_CAUSES =
  '`dependency_unavailable`: the database or the blob store is unavailable (see components/responses/ServiceUnavailable); `not_ready` also when the service is shutting down and this request did not finish in time.';

/** The 503 of an operation that queues a background job. */
export const jobQueueUnavailable = {
  ...problem(`\`not_ready\`: the job queue is not running on this instance. ${UNAVAILABLE_CAUSES}`),
  headers: { 'Retry-After': retryAfter },
};
