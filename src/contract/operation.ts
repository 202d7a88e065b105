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

/** The answers every authenticated operation may give besides its own. */
export const standardErrors = {
  '401': ref('responses', 'Unauthorized'),
  '403': ref('responses', 'Forbidden'),
  '429': ref('responses', 'RateLimited'),
  '500': ref('responses', 'InternalError'),
  '503': ref('responses', 'ServiceUnavailable'),
  '507': ref('responses', 'InsufficientStorage'),
};
