import type { RequestHandler } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import { can, type Permission, type Principal } from '../access/roles';
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
