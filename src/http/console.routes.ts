import { Router, type Request, type Response } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import { permissionsOf } from '../access/roles';
import type { Principal } from '../base/actor';
import {
  createKeyBody,
  lookupQuery,
  sessionBody,
  type KeyRow,
  type Me,
} from '../contract/console.contract';
import type { HoldService } from '../custody/hold.service';
import { AppError } from '../base/errors';
import { parseWith } from '../base/fields';
import { complaintIdParam } from '../contract/complaints.contract';
import { LookupService } from '../lookup/lookup.service';
import {
  actorOf,
  audited,
  authenticate,
  canHoldSession,
  principalOf,
  requirePermission,
  SESSION_COOKIE,
} from './auth.middleware';

export interface ConsoleRoutesDeps {
  keys: ApiKeyService;
  holds: HoldService;
  lookup: LookupService;
  /** An https PUBLIC_URL marks the session cookie Secure even when a proxy spoke plain http. */
  publicUrl?: string;
}

const KEY_ID = /^[0-9a-f]{16}$/;

const me = (p: Principal): Me => ({
  keyId: p.keyId,
  name: p.name,
  role: p.role,
  permissions: [...permissionsOf(p.role)],
});

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

/**
 * What the support web app needs beyond the evidence API: who is signed in, the browser
 * session its media elements use, one search box, the keys admin, a complaint's hold status.
 */
export function consoleRoutes(deps: ConsoleRoutesDeps): Router {
  const router = Router();
  const auth = authenticate(deps.keys);
  const noStore = (_req: Request, res: Response, next: () => void) => {
    res.set('Cache-Control', 'no-store');
    next();
  };

  router.route('/v1/me').get(noStore, auth, (req, res) => {
    res.json(me(principalOf(req)));
  });

  // A media element (<video>, <img>) cannot send an Authorization header. The web app trades its
  // key for a cookie that only GET and HEAD requests may use (see authenticate), that JavaScript
  // cannot read (HttpOnly), that no other site's page can send (SameSite=Strict), and that ends
  // with the browser session (no Max-Age). Every state-changing request still needs the header.
  router
    .route('/v1/session')
    .post(noStore, async (req, res) => {
      const { key } = parseWith(sessionBody, req.body ?? {});
      const principal = await deps.keys.authenticate(key);
      if (!principal) throw new AppError('unauthorized', 'The API key is invalid or revoked.');
      if (!canHoldSession(principal)) {
        throw new AppError(
          'session_not_allowed',
          `A "${principal.role}" key belongs to a device, not a person: sign in with a support or admin key.`,
        );
      }
      req.principal = principal; // for the request log's keyId
      res.cookie(SESSION_COOKIE, key, {
        httpOnly: true,
        sameSite: 'strict',
        path: '/v1',
        secure: req.secure || deps.publicUrl?.startsWith('https:') === true,
      });
      res.json(me(principal));
    })
    .delete(noStore, (req, res) => {
      res.clearCookie(SESSION_COOKIE, {
        httpOnly: true,
        sameSite: 'strict',
        path: '/v1',
        secure: req.secure || deps.publicUrl?.startsWith('https:') === true,
      });
      res.status(204).end();
    });

  router
    .route('/v1/lookup')
    .get(audited('evidence.list'), auth, requirePermission('evidence:search'), async (req, res) => {
      res.json(await deps.lookup.lookup(actorOf(req), parseWith(lookupQuery, req.query)));
    });

  router
    .route('/v1/keys')
    .get(noStore, auth, requirePermission('key:manage'), async (_req, res) => {
      const rows = await deps.keys.list();
      res.json({
        keys: rows.map((r): KeyRow => ({
          id: r.id,
          name: r.name,
          role: r.role,
          createdAt: new Date(r.created_at).toISOString(),
          revokedAt: iso(r.revoked_at),
          lastUsedAt: iso(r.last_used_at),
        })),
      });
    })
    .post(
      noStore,
      audited('key.create'),
      auth,
      requirePermission('key:manage'),
      async (req, res) => {
        const { role, name } = parseWith(createKeyBody, req.body ?? {});
        const minted = await deps.keys.create(role, name, actorOf(req));
        res.location(`/v1/keys/${minted.id}`).status(201).json(minted);
      },
    );

  router
    .route('/v1/keys/:keyId')
    .delete(audited('key.revoke'), auth, requirePermission('key:manage'), async (req, res) => {
      const id = String(req.params.keyId);
      const actor = actorOf(req);
      if (id === actor.keyId) {
        throw new AppError(
          'own_key_revocation',
          'An admin cannot revoke the key it is signed in with; use another admin key.',
        );
      }
      if (!KEY_ID.test(id) || !(await deps.keys.revoke(id, actor))) {
        throw new AppError('not_found', `No active key ${JSON.stringify(id)}.`);
      }
      res.json({ id, revoked: true });
    });

  router
    .route('/v1/complaints/:complaintId/hold-status')
    .get(auth, requirePermission('complaint:read'), async (req, res) => {
      const complaintId = parseWith(complaintIdParam, req.params.complaintId);
      const { holds } = await deps.holds.list({ complaintId, active: 'true', limit: 100 });
      res.json({ complaintId, onHold: holds.length > 0, holds });
    });

  return router;
}
