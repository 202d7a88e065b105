import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { loggablePath } from './redact';
import { isItemId } from '../base/item-id';
import type { RefusalLimiter } from '../access/refusal-limiter';
import type { AuditLog } from '../base/audit.service';
import { AppError, OUTAGE_RETRY_AFTER_SECONDS, outageError } from '../base/errors';
import type { Logger } from '../base/logger';
import type { AuditAttempt } from './auth.middleware';
import { PROBLEMS, problemBody, type ProblemCode } from '../contract/problems';

/** Errors thrown by express's body parser carry a `type`; we only map the client's mistakes. */
function fromBodyParser(err: { type?: string; status?: number }): AppError | undefined {
  if (err.type === 'entity.parse.failed')
    return new AppError('invalid_json', 'The body is not valid JSON.');
  if (err.type === 'entity.too.large')
    return new AppError('body_too_large', 'The JSON body is too large.');
  if (err.type && err.status && err.status < 500) {
    return new AppError('validation_failed', 'The request body could not be read.');
  }
  return undefined;
}

/**
 * A path parameter that is not valid percent-encoding (`/v1/uploads/%E0`): express's router
 * reports it as a URIError with status 400. Such a path names nothing.
 */
function fromRouter(err: unknown): AppError | undefined {
  if (err instanceof URIError && (err as { status?: unknown }).status === 400) {
    return new AppError('not_found', 'The path is not valid percent-encoding: it names nothing.');
  }
  return undefined;
}

/** The single place where errors become application/problem+json responses (RFC 9457). */
export function errorMiddleware(
  logger: Logger,
  audit?: AuditLog,
  refusals?: RefusalLimiter,
): ErrorRequestHandler {
  return async (err, req, res, _next) => {
    let known =
      err instanceof AppError ? err : (fromBodyParser(err) ?? fromRouter(err) ?? outageError(err));
    if (refusals && known && isStrangerRefusal(req, res, known)) {
      known = limitStranger(refusals, req, res, known);
    }
    const code: ProblemCode = known?.code ?? 'internal_error';
    const { status } = PROBLEMS[code];
    if (code === 'dependency_unavailable' || code === 'insufficient_storage') {
      logger.warn({ err, reqId: req.id, code }, 'request failed: dependency outage');
    } else if (status >= 500) logger.error({ err, reqId: req.id }, 'request failed');
    else logger.debug({ code, reqId: req.id }, known?.message);
    const attempt = res.locals.auditAttempt as AuditAttempt | undefined;
    if (attempt && code === 'budget_exceeded') {
      // Which budget the key had spent: what an admin looks for in the trail.
      attempt.details = {
        ...attempt.details,
        budget: known!.extra.budget,
        limit: known!.extra.limit,
      };
    }
    if (audit) await recordFailedAttempt(audit, req, res, status, code);

    if (res.writableEnded) return; // already answered early (an upload refused mid-stream)
    if (res.headersSent) {
      // Mid-stream failure (a download whose store read failed): the only honest signal left.
      res.destroy();
      return;
    }
    const detail = known?.message ?? 'An unexpected error occurred; it has been logged.';
    // Headers a download set for bytes it then did not send describe those bytes, not this
    // problem: a browser would save the problem as `clip.mp4`, a cache would file it under the
    // item's ETag, a client would check it against the item's digest. (A 416 keeps its
    // `Content-Range: bytes */<size>`, RFC 9110 §15.5.17.)
    for (const name of REPRESENTATION_HEADERS) res.removeHeader(name);
    if (code !== 'range_not_satisfiable') res.removeHeader('Content-Range');
    if (status === 401) res.set('WWW-Authenticate', 'Bearer realm="evidence-archive"');
    const budgetRetry = known?.extra.retryAfterSeconds;
    const retryAfter =
      retryAfterFor(code) ?? (typeof budgetRetry === 'number' ? String(budgetRetry) : undefined);
    if (retryAfter) res.set('Retry-After', retryAfter);
    res
      .status(status)
      .type('application/problem+json')
      .send(
        JSON.stringify(problemBody(code, detail, req.originalUrl.split('?')[0]!, known?.extra)),
      );
  };
}

/** What a download sets about its bytes before it knows whether it will send them. */
const REPRESENTATION_HEADERS = [
  'ETag',
  'Last-Modified',
  'Repr-Digest',
  'Content-Disposition',
  'Accept-Ranges',
];

/** Retry-After (seconds) for answers that mean "try again later": a dependency outage. */
export function retryAfterFor(code: ProblemCode): string | undefined {
  return code === 'dependency_unavailable' || code === 'not_ready'
    ? String(OUTAGE_RETRY_AFTER_SECONDS)
    : undefined;
}

/**
 * Records a refused or failed attempt at an audited route (named by `audited()`), once per request:
 * written before the answer, so a client that saw its refusal finds it in the trail.
 */
export async function recordFailedAttempt(
  audit: AuditLog,
  req: Request,
  res: Response,
  status: number,
  code: ProblemCode,
): Promise<void> {
  const attempt = res.locals.auditAttempt as AuditAttempt | undefined;
  if (!attempt || res.locals.auditedFailure) return;
  res.locals.auditedFailure = true; // an upload answered early can pass here twice
  // A failing audit write never turns a refusal into a hang.
  await audit.recordAttempt({
    action: attempt.action,
    outcome: status === 401 || status === 403 || status === 429 ? 'denied' : 'failed',
    actor: {
      keyId: req.principal?.keyId ?? null,
      role: req.principal?.role ?? 'anonymous',
      name: req.principal?.name ?? 'unauthenticated',
      requestId: req.id,
      clientIp: req.ip,
    },
    itemIds: attempt.itemId && isItemId(attempt.itemId) ? [attempt.itemId] : [],
    complaintId: attempt.complaintId ?? null,
    details: {
      method: req.method,
      path: loggablePath(req.path).slice(0, 512),
      status,
      code,
      ...(attempt.itemId && !isItemId(attempt.itemId)
        ? { target: attempt.itemId.slice(0, 200) }
        : {}),
      ...attempt.details,
    },
  });
}

/**
 * No valid key (401 before any key was accepted), a share link that did not open (404, 410), or
 * a provider callback whose signature does not match (403 invalid_signature: a forged flood must
 * not chain an event per request either). Never a failure of the service's own (an outage while
 * checking a key or resolving a link, 503, 507, any 5xx): that is answered as it is, and not
 * counted against the client.
 */
function isStrangerRefusal(req: Request, res: Response, err: AppError): boolean {
  const { status } = PROBLEMS[err.code];
  if (status >= 500) return false;
  return (
    (!req.principal && (status === 401 || err.code === 'invalid_signature')) ||
    res.locals.shareLinkRefused === true
  );
}

/**
 * Counts a stranger's refusal against its client address (`req.ip`, through TRUST_PROXY); past
 * the limit it becomes 429 with Retry-After, counted in the address's tally rather than recorded
 * on its own (see RefusalLimiter).
 */
function limitStranger(
  refusals: RefusalLimiter,
  req: Request,
  res: Response,
  err: AppError,
): AppError {
  const attempt = res.locals.auditAttempt as AuditAttempt | undefined;
  const shareLinkId = attempt?.details?.shareLinkId;
  const verdict = refusals.refuse(req.ip, {
    action: attempt?.action,
    status: PROBLEMS[err.code].status,
    code: err.code,
    path: loggablePath(req.path),
    shareLinkId: typeof shareLinkId === 'string' ? shareLinkId : undefined,
  });
  if (!verdict.limited) {
    // Past the instance's budget of refusals recorded one by one: counted in the tally only.
    if (!verdict.record) res.locals.auditedFailure = true;
    return err;
  }
  res.locals.auditedFailure = true; // in the address's count, not an event of its own
  res.set('Retry-After', String(verdict.retryAfterSeconds));
  return new AppError(
    'rate_limited',
    `Too many refused requests from this address; try again in ${verdict.retryAfterSeconds} s. Requests with a valid key are not limited.`,
  );
}

export const notFoundHandler: RequestHandler = (req) => {
  throw new AppError('route_not_found', `No route for ${req.method} ${loggablePath(req.path)}.`);
};
