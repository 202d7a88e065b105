import { uploadFieldsSchema, type UploadFields } from '../contract/evidence.contract';
import { AppError } from '../base/errors';
import { parseWith, unknownField } from '../base/fields';

export type { UploadFields };

const REPEATABLE = new Set(['orderId', 'complaintId']);

/** The names of the upload fields, as a multipart form or tus metadata carries them. */
export const UPLOAD_FIELD_NAMES: readonly string[] = uploadFieldsSchema.keyof().options;

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
