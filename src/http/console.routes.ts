import { Router, type Request, type Response } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { SessionService } from '../access/session.service';
import { permissionsOf } from '../access/roles';
import type { Principal } from '../base/actor';
import {
  createKeyBody,
  lookupQuery,
  sessionBody,
  type KeyRow,
  type Me,
  type MeWithSessions,
  type OpenedSessionView,
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
  seenBy,
  SESSION_COOKIE,
  sessionCookieOf,
} from './auth.middleware';

export interface ConsoleRoutesDeps {
  keys: ApiKeyService;
  sessions: SessionService;
  holds: HoldService;
  lookup: LookupService;
  /** An https PUBLIC_URL marks the session cookie Secure even when a proxy spoke plain http. */
  publicUrl?: string;
}

const KEY_ID = /^[0-9a-f]{16}$/;
const SESSION_ID = /^[0-9a-f]{16}$/;

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

  router.route('/v1/me').get(noStore, auth, async (req, res) => {
    const principal = principalOf(req);
    const sessions = await deps.sessions.list(principal.keyId, principal.sessionId, seenBy(req));
    res.json({ ...me(principal), sessions } satisfies MeWithSessions);
  });

  router
    .route('/v1/me/sessions/:sessionId')
    .delete(noStore, audited('session.end'), auth, async (req, res) => {
      const id = String(req.params.sessionId);
      const actor = actorOf(req);
      if (!SESSION_ID.test(id) || !(await deps.sessions.endOwn(actor, id))) {
        throw new AppError('not_found', `No open session ${JSON.stringify(id)} of this key.`);
      }
      res.status(204).end();
    });

  const cookieOptions = (req: Request) => ({
    httpOnly: true,
    sameSite: 'strict' as const,
    path: '/v1',
    secure: req.secure || deps.publicUrl?.startsWith('https:') === true,
  });

  // Sign-in trades the key for a session: a token for the app's Authorization header, and another
  // for the cookie that media elements (<video>, <img>) send, since they cannot send a header.
  // The cookie is good for GET and HEAD only (see authenticate), JavaScript cannot read it
  // (HttpOnly), no other site's page can send it (SameSite=Strict), and it ends with the browser
  // session (no Max-Age) or the server-side session, whichever is first. Neither token is the key.
  router
    .route('/v1/session')
    .post(noStore, audited('session.open'), async (req, res) => {
      const { key } = parseWith(sessionBody, req.body ?? {});
      const principal = await deps.keys.authenticate(key);
      if (!principal) throw new AppError('unauthorized', 'The API key is invalid or revoked.');
      req.principal = principal; // for the request log, and the refusal's record
      if (!canHoldSession(principal)) {
        throw new AppError(
          'session_not_allowed',
          `A "${principal.role}" key belongs to a device, not a person: sign in with a support or admin key.`,
        );
      }
      const seen = seenBy(req);
      // This browser's previous session (a closed tab forgot its token; the cookie outlived it).
      const previous = sessionCookieOf(req);
      if (previous !== undefined) await deps.sessions.signOut(previous, 'cookie', seen);
      const opened = await deps.sessions.open(principal, seen);
      if (!opened) throw new AppError('unauthorized', 'The API key is invalid or revoked.');
      req.principal = { ...principal, sessionId: opened.id };
      res.cookie(SESSION_COOKIE, opened.cookie, cookieOptions(req));
      res.json({
        ...me(principal),
        session: {
          id: opened.id,
          token: opened.token,
          createdAt: opened.createdAt.toISOString(),
          endsAt: opened.expiresAt.toISOString(),
          idleMinutes: deps.sessions.idleMinutes,
        },
      } satisfies OpenedSessionView);
    })
    // Sign-out: the session the header token names, or else the cookie's; ended on every instance.
    .delete(noStore, async (req, res) => {
      const bearer = /^Bearer\s+(eas_\S+)\s*$/i.exec(req.get('authorization') ?? '')?.[1];
      const cookie = sessionCookieOf(req);
      const seen = seenBy(req);
      if (bearer !== undefined) await deps.sessions.signOut(bearer, 'header', seen);
      if (cookie !== undefined) await deps.sessions.signOut(cookie, 'cookie', seen);
      res.clearCookie(SESSION_COOKIE, cookieOptions(req));
      res.status(204).end();
    });

  router
    .route('/v1/lookup')
    .get(audited('evidence.list'), auth, requirePermission('evidence:search'), async (req, res) => {
      res.json(await deps.lookup.lookup(actorOf(req), parseWith(lookupQuery, req.query)));
    });

  router
    .route('/v1/keys')
    .get(noStore, audited('key.list'), auth, requirePermission('key:manage'), async (req, res) => {
      const rows = await deps.keys.list(actorOf(req));
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
        const { role, name, confirmKey } = parseWith(createKeyBody, req.body ?? {});
        const actor = actorOf(req);
        if (req.principal?.sessionId !== undefined) {
          // A session is stolen more easily than a key (a page's storage, a shared machine); a key
          // it minted would outlive it. The person types their key again: it must be the same.
          const confirmed = confirmKey ? await deps.keys.authenticate(confirmKey) : undefined;
          if (confirmed?.keyId !== actor.keyId) {
            throw new AppError(
              'key_confirmation_required',
              'Minting a key from a web app session needs the signed-in key itself as `confirmKey`.',
            );
          }
        }
        const minted = await deps.keys.create(role, name, actor);
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
