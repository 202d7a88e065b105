import { uploadFieldsSchema, type UploadFields } from '../contract/evidence.contract';
import { AppError } from '../errors';
import { parseWith } from './upload-fields';

export type { UploadFields };

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

/**
 * Validates upload fields against the contract's schema (`POST /v1/evidence`'s form); unknown
 * names are refused so a typo never drops an order link.
 */
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
