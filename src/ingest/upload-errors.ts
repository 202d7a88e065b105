import { MulterError } from 'multer';
import { AppError } from '../base/errors';

const BUSBOY_PARSE_ERROR =
  /^(Unexpected end of (form|file)|Malformed part header|Multipart: Boundary not found|Malformed content type|Unsupported content type)/;

/** Translates multer's and busboy's errors into our domain errors; storage failures pass through. */
export function translateUploadError(err: unknown, requestComplete: boolean): unknown {
  if (err instanceof AppError) return err;
  if (err instanceof MulterError) {
    switch (err.code) {
      case 'LIMIT_FILE_COUNT':
        return new AppError('too_many_files', 'Send exactly one file part, named "file".');
      case 'LIMIT_UNEXPECTED_FILE':
        return new AppError(
          'too_many_files',
          `Unexpected file part ${JSON.stringify(String(err.field ?? '').slice(0, 100))}; send exactly one file part, named "file".`,
        );
      case 'MISSING_FIELD_NAME':
        return new AppError('unknown_field', 'A multipart part has no field name.');
      case 'LIMIT_FIELD_KEY':
        return new AppError('field_name_too_long', 'A field name is too long.');
      case 'LIMIT_FIELD_VALUE':
        return new AppError(
          'field_value_too_long',
          `Field ${JSON.stringify(err.field)} is too long.`,
        );
      case 'LIMIT_FIELD_COUNT':
      case 'LIMIT_PART_COUNT':
        return new AppError('too_many_fields', 'The upload has too many fields.');
      default:
        return new AppError('invalid_multipart', `The multipart body is invalid (${err.code}).`);
    }
  }
  const message = err instanceof Error ? err.message : '';
  if (
    /^Request (aborted|closed)$/.test(message) ||
    (!requestComplete && BUSBOY_PARSE_ERROR.test(message))
  ) {
    return new AppError(
      'upload_aborted',
      'The upload was interrupted before the end of the body; nothing was stored.',
    );
  }
  if (BUSBOY_PARSE_ERROR.test(message)) {
    return new AppError('invalid_multipart', `The multipart body is malformed: ${message}.`);
  }
  return err;
}
