import type { Request, RequestHandler } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import { can, type Permission, type Principal } from '../access/roles';
import type { AuditAction, RequestActor } from '../custody/audit.service';
import { AppError } from '../errors';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
    id: string;
  }
}

export function authenticate(keys: ApiKeyService): RequestHandler {
  return async (req, _res, next) => {
    const header = req.get('authorization');
    const match = header && /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) {
      throw new AppError('unauthorized', 'Send an API key as "Authorization: Bearer <key>".');
    }
    const principal = await keys.authenticate(match[1]!);
    if (!principal) throw new AppError('unauthorized', 'The API key is invalid or revoked.');
    req.principal = principal;
    next();
  };
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
