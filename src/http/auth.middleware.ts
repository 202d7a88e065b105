import type { Request, RequestHandler } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import { can, type Permission } from '../access/roles';
import type { AuditAction } from '../base/audit.service';
import { AppError } from '../base/errors';
import type { RequestActor, Principal } from '../base/actor';
import type { Seen } from '../access/session.service';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
    id: string;
  }
}

export function authenticate(keys: ApiKeyService): RequestHandler {
  return async (req, _res, next) => {
    const header = req.get('authorization');
    // The web app's media elements cannot send a header: for reads only (GET, HEAD) and only
    // without an Authorization header, the session cookie set by POST /v1/session stands in.
    const cookie =
      header === undefined && (req.method === 'GET' || req.method === 'HEAD')
        ? sessionCookieOf(req)
        : undefined;
    const match = header && /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match && cookie === undefined) {
      throw new AppError('unauthorized', 'Send an API key as "Authorization: Bearer <key>".');
    }
    if (!match && !fromOwnPage(req)) {
      // SameSite=Strict does not stop a sibling site (another subdomain, another port of this
      // host): its <img>/<video> would download evidence, audited, in the support user's name.
      throw new AppError(
        'unauthorized',
        'The session cookie is only accepted from this service\'s own pages; send an API key as "Authorization: Bearer <key>".',
      );
    }
    const bearer = match ? match[1]! : undefined;
    // A session (the app's `eas_` header token, or the cookie) is looked up in the database on
    // every use; a key may come from the short key cache (AUTH_CACHE_TTL_MS).
    const principal =
      bearer === undefined || bearer.startsWith('eas_')
        ? await keys.authenticateSession(
            bearer ?? cookie!,
            bearer ? 'header' : 'cookie',
            seenBy(req),
          )
        : await keys.authenticate(bearer);
    if (!principal) {
      throw new AppError(
        'unauthorized',
        bearer === undefined || bearer.startsWith('eas_')
          ? 'The session has ended (signed out, timed out, or its key revoked): sign in again.'
          : 'The API key is invalid or revoked.',
      );
    }
    req.principal = principal;
    next();
  };
}

/** What a session keeps and audits of the request's client. */
export function seenBy(req: Request): Seen {
  return { userAgent: req.get('user-agent'), clientIp: req.ip, requestId: req.id };
}

export const SESSION_COOKIE = 'eak_session';

/**
 * Whether a cookie-authenticated request comes from this service's own pages: `Sec-Fetch-Site`
 * absent (not a browser, or an old one) or `same-origin`, and `Origin`, when sent, this service's
 * host as the request names it (the Host header, or X-Forwarded-Host under TRUST_PROXY).
 */
export function fromOwnPage(req: Request): boolean {
  const site = req.get('sec-fetch-site');
  if (site !== undefined && site.trim().toLowerCase() !== 'same-origin') return false;
  const origin = req.get('origin');
  if (origin === undefined) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false; // `null` (a sandboxed or opaque origin) and anything malformed
  }
  const own = [req.get('host'), req.host].filter(Boolean).map((h) => h!.toLowerCase());
  return own.includes(host.toLowerCase());
}

/** Only people (support, admin) sign in to the web app; a device's ingest key never does. */
export const canHoldSession = (p: Principal) => p.role === 'support' || p.role === 'admin';

/** The session cookie's token, if the request carries exactly one well-formed one. */
export function sessionCookieOf(req: Request): string | undefined {
  const values = (req.get('cookie') ?? '')
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c.startsWith(`${SESSION_COOKIE}=`))
    .map((c) => c.slice(SESSION_COOKIE.length + 1));
  return values.length === 1 && /^[A-Za-z0-9_-]{1,200}$/.test(values[0]!) ? values[0] : undefined;
}

export function requirePermission(permission: Permission): RequestHandler {
  return (req, _res, next) => {
    if (!req.principal || !can(req.principal.role, permission)) {
      throw new AppError('forbidden', `The "${req.principal?.role}" role may not do this.`, {
        requires: permission,
      });
    }
    next();
  };
}

/** The principal set by `authenticate`; routes are only reachable after it. */
export function principalOf(req: { principal?: Principal }): Principal {
  if (!req.principal) throw new AppError('unauthorized', 'Not authenticated.');
  return req.principal;
}

/** The principal with what the audit trail records of the request: its id and client address. */
export function actorOf(req: Request): RequestActor {
  return { ...principalOf(req), requestId: req.id, clientIp: req.ip };
}

/**
 * Names the audited action of a route, so that a refused or failed attempt at it (no key, wrong
 * role, unknown item, bad input) is recorded by the error middleware too. Goes before `authenticate`.
 */
export function audited(action: AuditAction): RequestHandler {
  return (req, res, next) => {
    res.locals.auditAttempt = {
      action,
      itemId: firstParam(req.params.id),
      complaintId: firstParam(req.params.complaintId),
    } satisfies AuditAttempt;
    next();
  };
}

export interface AuditAttempt {
  action: AuditAction;
  itemId?: string;
  complaintId?: string;
  /** What else a refusal's record should say (e.g. which share link was tried). */
  details?: Record<string, unknown>;
}

const firstParam = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
