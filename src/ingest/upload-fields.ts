import { z } from 'zod';
import { AppError } from '../base/errors';
import { EVIDENCE_KINDS } from '../evidence/kinds';

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

// Order, complaint, tracking and station ids as real systems print them ("#1001",
// "123-4567890-1234567", "ORD/2026/11"). Quotes, semicolons, brackets and the like never occur
// in them; refusing them keeps injected text out of exports, logs and other systems.
const IDENTIFIER_CHARS = /^[\p{L}\p{N} #\-_./:+@]+$/u;
const PHONE_CHARS = /^[\p{L}\p{N} +()\-.#*]+$/u;

/** An identifier typed or scanned by a person or machine: trimmed, printable, bounded. */
export const identifier = (max = 128, chars = IDENTIFIER_CHARS) =>
  z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((v) => !CONTROL_CHARS.test(v), 'must not contain control characters')
    .refine(
      (v) => chars.test(v),
      chars === PHONE_CHARS
        ? 'may contain only digits, letters, spaces and + ( ) - . # *'
        : 'may contain only letters, digits, spaces and # - _ . / : + @',
    );

export const phoneField = () => identifier(64, PHONE_CHARS);

const ISO_8601_WITH_OFFSET =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const MAX_CLOCK_SKEW_MS = 24 * 3600 * 1000;

/** An ISO 8601 instant with an explicit offset; with maxFutureMs, not later than now + that. */
export const isoTimestamp = (maxFutureMs = Infinity) =>
  z
    .string()
    .trim()
    .regex(
      ISO_8601_WITH_OFFSET,
      'must be an ISO 8601 timestamp with a time zone, e.g. 2026-11-02T14:03:00Z',
    )
    .transform((v, ctx) => {
      const date = new Date(v);
      if (Number.isNaN(date.getTime()) || date.getUTCFullYear() < 1990) {
        ctx.addIssue({ code: 'custom', message: 'is not a valid date' });
        return z.NEVER;
      }
      if (date.getTime() > Date.now() + maxFutureMs) {
        ctx.addIssue({ code: 'custom', message: 'lies more than a day in the future' });
        return z.NEVER;
      }
      return date;
    });

const one = <T extends z.ZodTypeAny>(schema: T) => schema.optional();
const many = z
  .union([identifier(), z.array(identifier())])
  .transform((v) => [...new Set(Array.isArray(v) ? v : [v])])
  .refine((v) => v.length <= 100, 'may be given at most 100 times')
  .optional();

const uploadFieldsSchema = z
  .object({
    kind: z.enum(EVIDENCE_KINDS, {
      errorMap: () => ({ message: `must be one of ${EVIDENCE_KINDS.join(', ')}` }),
    }),
    orderId: many,
    complaintId: many,
    capturedAt: one(isoTimestamp(MAX_CLOCK_SKEW_MS)),
    sha256: one(
      z
        .string()
        .trim()
        .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hexadecimal characters')
        .transform((v) => v.toLowerCase()),
    ),
    source: one(identifier()),
    callId: one(identifier(256)),
    fromNumber: one(phoneField()),
    toNumber: one(phoneField()),
    agentId: one(identifier()),
    direction: one(z.enum(['inbound', 'outbound'])),
    stationId: one(identifier()),
    operatorId: one(identifier()),
    trackingNumber: one(identifier()),
    /** Scan events, a JSON array (see evidence/segments.ts). */
    segments: one(z.string().max(64 * 1024, 'must be at most 64 KiB of JSON')),
  })
  .strict();

export type UploadFields = z.output<typeof uploadFieldsSchema>;

const REPEATABLE = new Set(['orderId', 'complaintId']);

/** The names of the upload fields, as a multipart form or tus metadata carries them. */
export const UPLOAD_FIELD_NAMES: readonly string[] = uploadFieldsSchema.keyof().options;

/** The refusal of a name that is none of `allowed`: a typo must never drop an order link. */
export function unknownField(name: string, allowed: readonly string[]): AppError {
  return new AppError('unknown_field', `Unknown field ${JSON.stringify(name.slice(0, 100))}.`, {
    field: name.slice(0, 100),
    allowed,
  });
}

/** Validates multipart fields; unknown names are refused so a typo never drops an order link. */
export function parseUploadFields(body: unknown): UploadFields {
  const fields = (body ?? {}) as Record<string, unknown>;
  for (const [name, value] of Object.entries(fields)) {
    if (!UPLOAD_FIELD_NAMES.includes(name)) throw unknownField(name, UPLOAD_FIELD_NAMES);
    if (Array.isArray(value) && !REPEATABLE.has(name)) {
      throw new AppError('validation_failed', `Field "${name}" may be given only once.`, {
        field: name,
      });
    }
  }
  return parseWith(uploadFieldsSchema, fields);
}

/** zod's first issue as a validation_failed error naming the field. */
export function parseWith<T extends z.ZodTypeAny>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.filter((p) => typeof p === 'string').join('.') || undefined;
  const message =
    issue.code === 'invalid_type' && issue.received === 'undefined' ? 'is required' : issue.message;
  throw new AppError(
    'validation_failed',
    field
      ? `Field "${field}" ${message.replace(/^[A-Z]/, (c) => c.toLowerCase())}.`
      : `${message}.`,
    { field, issues: result.error.issues.map((i) => ({ path: i.path, message: i.message })) },
  );
}
