/**
 * Domain errors. Services throw these with a stable code; the HTTP layer maps codes to
 * statuses in exactly one place (http/problem.ts).
 */
export type ErrorCode =
  | 'unauthorized'
  | 'forbidden'
  | 'invalid_signature'
  | 'wrong_account'
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
  | 'precondition_failed'
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
  | 'rate_limited'
  | 'budget_exceeded'
  | 'key_confirmation_required'
  | 'dependency_unavailable'
  | 'insufficient_storage'
  | 'internal_error'
  | 'evidence_damaged'
  | 'tus_resumable_required'
  | 'tus_version_unsupported'
  | 'tus_extension_unsupported'
  | 'invalid_tus_header'
  | 'upload_length_required'
  | 'upload_offset_required'
  | 'upload_content_type_required'
  | 'upload_offset_conflict'
  | 'upload_length_exceeded'
  | 'upload_expired'
  | 'upload_complete'
  | 'upload_busy';

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

/** Seconds a client is asked to wait (Retry-After) before retrying after a dependency outage. */
export const OUTAGE_RETRY_AFTER_SECONDS = 5;

/** Socket-level failures: the peer (PostgreSQL, S3) is unreachable, went away or did not answer. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * node-postgres's own messages for a connection that could not be made or was lost (they carry
 * no code), and pg-pool's for a pool that could not connect in time.
 */
const PG_CONNECTION_MESSAGES =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Client was closed and is not queryable|Connection terminated due to connection timeout|terminating connection due to administrator command|the database system is (starting up|shutting down|in recovery mode)|Query read timeout$)/;

/** S3 error names (and the SDK's own) that mean "the store is unavailable or slow", not "you asked wrong". */
const S3_UNAVAILABLE_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'ThrottlingException',
  'Throttling',
  // (Not RequestTimeTooSkewed: a clock off by more than 15 minutes is this host's configuration,
  // which no retry fixes; it stays a 500 so that it is logged and seen, not retried forever.)
]);

/** The error and its causes (`cause`, AggregateError's `errors`), outermost first, bounded. */
function errorChain(err: unknown): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const queue: unknown[] = [err];
  while (queue.length && out.length < 16) {
    const e = queue.shift();
    if (!e || typeof e !== 'object' || out.includes(e as Record<string, unknown>)) continue;
    const rec = e as Record<string, unknown>;
    out.push(rec);
    if (rec.cause) queue.push(rec.cause);
    if (Array.isArray(rec.errors)) queue.push(...(rec.errors as unknown[]));
  }
  return out;
}

/**
 * What an unexpected error says about the service's dependencies: a PostgreSQL or S3 outage
 * (unreachable, shut down, timing out, overloaded: 503 `dependency_unavailable`, retry later), a
 * full disk (507 `insufficient_storage`), or undefined for anything else, a bug (500).
 */
export function outageError(err: unknown): AppError | undefined {
  if (err instanceof AppError) return undefined;
  for (const e of errorChain(err)) {
    const code = typeof e.code === 'string' ? e.code : '';
    const name = typeof e.name === 'string' ? e.name : '';
    const message = typeof e.message === 'string' ? e.message : '';
    // PostgreSQL 53100 disk_full: its disk is full, so nothing can be stored until space is freed.
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === '53100') {
      return new AppError(
        'insufficient_storage',
        'The archive has no space left to store this upload; nothing was stored. Try again once space has been freed.',
      );
    }
    // Node's own error for a client that hung up mid-request (ECONNRESET "aborted") is the
    // client's doing, not an outage.
    if (code === 'ECONNRESET' && message === 'aborted') return undefined;
    // PostgreSQL SQLSTATE classes 08 (connection exception), 57P01-57P03 (shutdown, cannot
    // connect now), 57014 (a statement cancelled: its statement_timeout, or an operator's
    // pg_cancel_backend), 53200 (out of memory) and 53300 (too many connections); S3 answers of 5xx.
    const pgState = /^[0-9A-Z]{5}$/.test(code) ? code : '';
    const s3Status = (e.$metadata as { httpStatusCode?: number } | undefined)?.httpStatusCode;
    if (
      NETWORK_CODES.has(code) ||
      pgState.startsWith('08') ||
      ['57P01', '57P02', '57P03', '57014', '53200', '53300'].includes(pgState) ||
      PG_CONNECTION_MESSAGES.test(message) ||
      S3_UNAVAILABLE_NAMES.has(name) ||
      (e.$metadata !== undefined && typeof s3Status === 'number' && s3Status >= 500)
    ) {
      return new AppError(
        'dependency_unavailable',
        'A service the archive depends on (its database or blob store) is unavailable or not answering; nothing was changed by this request unless it says otherwise. Retry later.',
        {},
      );
    }
  }
  return undefined;
}
