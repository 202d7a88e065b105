/**
 * Domain errors. Services throw these with a stable code; the HTTP layer maps codes to
 * statuses in exactly one place (http/problem.ts).
 */
export type ErrorCode =
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'route_not_found'
  | 'method_not_allowed'
  | 'validation_failed'
  | 'unknown_field'
  | 'invalid_json'
  | 'invalid_multipart'
  | 'multipart_required'
  | 'missing_file'
  | 'invalid_filename'
  | 'too_many_files'
  | 'too_many_fields'
  | 'field_name_too_long'
  | 'field_value_too_long'
  | 'file_too_large'
  | 'body_too_large'
  | 'empty_file'
  | 'upload_aborted'
  | 'unsupported_media_type'
  | 'checksum_mismatch'
  | 'call_id_conflict'
  | 'recording_of_another_call'
  | 'idempotency_key_reused'
  | 'invalid_idempotency_key'
  | 'invalid_cursor'
  | 'range_not_satisfiable'
  | 'invalid_phone_number'
  | 'not_ready'
  | 'evidence_unavailable'
  | 'derivative_not_ready'
  | 'derivative_not_applicable'
  | 'evidence_deleted'
  | 'legal_hold'
  | 'evidence_busy'
  | 'hold_not_found'
  | 'share_link_expired'
  | 'share_link_revoked'
  | 'bundle_empty'
  | 'bundle_unknown_items'
  | 'bundle_item_deleted'
  | 'bundle_item_not_linked'
  | 'segment_cut_unavailable'
  | 'session_not_allowed'
  | 'own_key_revocation'
  | 'internal_error'
  | 'evidence_damaged';

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'AppError';
  }
}
