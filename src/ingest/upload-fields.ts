import { z } from 'zod';
import { AppError } from '../base/errors';
import { EVIDENCE_KINDS } from '../base/kinds';
import { identifier, isoTimestamp, parseWith, phoneField, unknownField } from '../base/fields';

const MAX_CLOCK_SKEW_MS = 24 * 3600 * 1000;

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
