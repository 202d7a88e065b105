import { z } from 'zod';
import { AppError } from '../errors';

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
