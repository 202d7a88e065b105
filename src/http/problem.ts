import type { ErrorCode } from '../errors';

/** The one mapping from domain error codes to HTTP statuses and titles. */
export const PROBLEMS: Record<ErrorCode, { status: number; title: string }> = {
  unauthorized: { status: 401, title: 'Missing or invalid API key' },
  forbidden: { status: 403, title: "The key's role does not allow this action" },
  not_found: { status: 404, title: 'Not found' },
  route_not_found: { status: 404, title: 'No such route' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  validation_failed: { status: 400, title: 'Invalid input' },
  unknown_field: { status: 400, title: 'Unknown field' },
  invalid_json: { status: 400, title: 'Malformed JSON body' },
  invalid_multipart: { status: 400, title: 'Malformed multipart body' },
  multipart_required: { status: 415, title: 'multipart/form-data required' },
  missing_file: { status: 400, title: 'No file part' },
  invalid_filename: { status: 400, title: 'Unacceptable file name' },
  too_many_files: { status: 400, title: 'More than one file part' },
  too_many_fields: { status: 400, title: 'Too many fields' },
  field_name_too_long: { status: 400, title: 'Field name too long' },
  field_value_too_long: { status: 400, title: 'Field value too long' },
  file_too_large: { status: 413, title: 'File too large' },
  body_too_large: { status: 413, title: 'Request body too large' },
  empty_file: { status: 422, title: 'Empty file' },
  upload_aborted: { status: 400, title: 'Upload did not complete' },
  unsupported_media_type: { status: 415, title: 'Content type not accepted for this kind' },
  checksum_mismatch: { status: 422, title: 'SHA-256 mismatch' },
  call_id_conflict: { status: 409, title: 'Call already has a different recording' },
  recording_of_another_call: { status: 409, title: 'These bytes are another call’s recording' },
  idempotency_key_reused: { status: 422, title: 'Idempotency-Key reused with a different file' },
  invalid_idempotency_key: { status: 400, title: 'Invalid Idempotency-Key' },
  invalid_cursor: { status: 400, title: 'Invalid cursor' },
  range_not_satisfiable: { status: 416, title: 'Range not satisfiable' },
  invalid_phone_number: { status: 400, title: 'Invalid phone number' },
  not_ready: { status: 503, title: 'Not ready' },
  evidence_unavailable: { status: 500, title: 'Stored bytes missing or damaged' },
  derivative_not_ready: { status: 404, title: 'Derivative not ready' },
  derivative_not_applicable: { status: 404, title: 'No such derivative for this item' },
  evidence_deleted: { status: 410, title: 'Evidence deleted' },
  legal_hold: { status: 409, title: 'Under legal hold' },
  evidence_busy: { status: 409, title: 'Evidence is being changed by another request' },
  hold_not_found: { status: 404, title: 'No such active legal hold' },
  share_link_expired: { status: 410, title: 'Share link expired' },
  share_link_revoked: { status: 410, title: 'Share link revoked' },
  bundle_empty: { status: 422, title: 'Nothing to put in the bundle' },
  bundle_unknown_items: { status: 422, title: 'Unknown items or segments selected' },
  bundle_item_deleted: { status: 422, title: 'Deleted evidence selected' },
  bundle_item_not_linked: { status: 422, title: 'Evidence not linked to this complaint' },
  segment_cut_unavailable: { status: 409, title: 'Segment cut not available' },
  session_not_allowed: { status: 403, title: 'This key cannot open a browser session' },
  own_key_revocation: { status: 409, title: 'A key cannot revoke itself' },
  internal_error: { status: 500, title: 'Internal error' },
  evidence_damaged: { status: 500, title: 'Stored bytes damaged' },
};

export type ProblemCode = keyof typeof PROBLEMS;

export function problemBody(
  code: ProblemCode,
  detail: string,
  instance: string,
  extra: Record<string, unknown> = {},
) {
  const { status, title } = PROBLEMS[code];
  return {
    type: `urn:evidence-archive:problem:${code}`,
    title,
    status,
    detail,
    code,
    instance,
    ...extra,
  };
}
