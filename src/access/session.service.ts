import { createHash, randomBytes } from 'node:crypto';
import type { AuditEntry, AuditLog } from '../base/audit.service';
import type { Actor, Principal } from '../base/actor';
import { systemActor } from '../base/actor';
import type { Db, Tx } from '../db/database';
import type { SessionRepository, TokenColumn } from './session.repository';

/** The token the web app sends as `Authorization: Bearer eas_...` (256 random bits). */
const HEADER_TOKEN = /^eas_[A-Za-z0-9_-]{43}$/;
/** The `eak_session` cookie's token (256 random bits): media elements, GET and HEAD only. */
const COOKIE_TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** How stale a session's `last_used_at` may get before a use writes it again (at most idle/10). */
const TOUCH_MS = 30_000;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const token = () => randomBytes(32).toString('base64url');

/** How a session token arrived: the app's header, or the media elements' cookie. */
export type TokenVia = 'header' | 'cookie';
const COLUMN: Record<TokenVia, TokenColumn> = { header: 'token_hash', cookie: 'cookie_hash' };

/** What the request that uses a session shows of its client (kept with the session, audited). */
export interface Seen {
  userAgent?: string;
  clientIp?: string;
  requestId?: string;
}

/** A signed-in person: the key's holder, through one session. */
export type SessionPrincipal = Principal & { sessionId: string };

export interface OpenedSession {
  id: string;
  /** For `Authorization: Bearer`: the app keeps it instead of the key. */
  token: string;
  /** For the `eak_session` cookie only. */
  cookie: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface SessionView {
  id: string;
  createdAt: string;
  lastUsedAt: string;
  /** When it ends unless used: the idle end or the absolute end, whichever is first. */
  expiresAt: string;
  /** The absolute end, however busy. */
  endsAt: string;
  userAgent: string | null;
  clientIp: string | null;
  current: boolean;
}

/** Why a session ended, as the audit trail and the table say. */
export type EndReason = 'signed_out' | 'ended_by_holder' | 'key_revoked' | 'idle' | 'lifetime';

export interface SessionServiceDeps {
  db: Db;
  repo: SessionRepository;
  audit: AuditLog;
  /** Ends a session this long after its last use. */
  idleMs: number;
  /** Ends a session this long after sign-in, however busy. */
  maxMs: number;
  now?: () => number;
}

const clip = (s: string | undefined, max: number) => (s ? s.slice(0, max) : null);

/**
 * Web app sessions. Signing in trades a support or admin key for two random tokens, one for the
 * app's Authorization header and one for the media elements' cookie; only their SHA-256 is
 * stored. Every use reads the database (one UPDATE that also checks the key is not revoked), so
 * a sign-out, an ending from `GET /v1/me`'s list or the key's revocation holds at once on every
 * instance: there is no session cache. An idle or worn-out session is ended (and audited) when a
 * request with it, or its holder's list of sessions, notices it.
 */
export class SessionService {
  private readonly db: Db;
  private readonly repo: SessionRepository;
  private readonly audit: AuditLog;
  private readonly idleMs: number;
  private readonly maxMs: number;
  private readonly now: () => number;

  constructor(deps: SessionServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.audit = deps.audit;
    this.idleMs = deps.idleMs;
    this.maxMs = deps.maxMs;
    this.now = deps.now ?? Date.now;
  }

  get idleMinutes(): number {
    return Math.round(this.idleMs / 60_000);
  }

  /**
   * Opens a session for a person's key (the caller checked the key and its role); undefined if
   * the key was revoked meanwhile.
   */
  async open(principal: Principal, seen: Seen): Promise<OpenedSession | undefined> {
    const id = randomBytes(8).toString('hex');
    const header = `eas_${token()}`;
    const cookie = token();
    const createdAt = new Date(this.now());
    const expiresAt = new Date(createdAt.getTime() + this.maxMs);
    const opened = await this.db.transaction().execute(async (tx) => {
      // The key is checked again here, not in the key cache: one revoked a moment ago opens nothing.
      const inserted = await this.repo.insert(tx, {
        id,
        keyId: principal.keyId,
        tokenHash: sha256(header),
        cookieHash: sha256(cookie),
        createdAt,
        expiresAt,
        userAgent: clip(seen.userAgent, 300),
        clientIp: clip(seen.clientIp, 64),
      });
      if (!inserted) return false;
      await this.audit.append(tx, [
        {
          action: 'session.open',
          actor: actorFor(principal, seen),
          details: {
            sessionId: id,
            expiresAt: expiresAt.toISOString(),
            idleMinutes: this.idleMs / 60_000,
            userAgent: clip(seen.userAgent, 300),
          },
        },
      ]);
      return true;
    });
    return opened ? { id, token: header, cookie, createdAt, expiresAt } : undefined;
  }

  /**
   * The person a session token stands for, or undefined (malformed, unknown, ended, run out, or
   * its key revoked). A session found run out is ended here, and that is audited.
   */
  async authenticate(
    value: string,
    via: TokenVia,
    seen: Seen = {},
  ): Promise<SessionPrincipal | undefined> {
    if (!(via === 'header' ? HEADER_TOKEN : COOKIE_TOKEN).test(value)) return undefined;
    const hash = sha256(value);
    const at = new Date(this.now());
    const live = await this.repo.findLive(
      this.db,
      COLUMN[via],
      hash,
      at,
      new Date(at.getTime() - this.idleMs),
    );
    if (live) {
      // One write per session and TOUCH_MS, not one a request (a video's Range requests come in
      // bursts): the idle timeout counts from a last use at most TOUCH_MS old.
      const touchMs = Math.min(TOUCH_MS, this.idleMs / 10);
      if (at.getTime() - new Date(live.last_used_at).getTime() >= touchMs) {
        await this.repo.touch(this.db, live.id, at, new Date(at.getTime() - touchMs));
      }
      return { keyId: live.key_id, name: live.name, role: live.role, sessionId: live.id };
    }
    const row = await this.repo.findByToken(this.db, COLUMN[via], hash);
    if (row && row.ended_at === null) {
      const reason: EndReason | undefined =
        row.key_revoked_at !== null
          ? 'key_revoked'
          : new Date(row.expires_at) <= at
            ? 'lifetime'
            : new Date(row.last_used_at).getTime() <= at.getTime() - this.idleMs
              ? 'idle'
              : undefined; // used meanwhile by another request: not this one's to end
      if (reason) {
        await this.end(row.id, reason, { ...systemActor('sessions'), ...seenOf(seen) }, row.key_id);
      }
    }
    return undefined;
  }

  /** Sign-out: ends the session a token names, whoever sends it (holding the token is enough). */
  async signOut(value: string, via: TokenVia, seen: Seen): Promise<boolean> {
    if (!(via === 'header' ? HEADER_TOKEN : COOKIE_TOKEN).test(value)) return false;
    const row = await this.repo.findByToken(this.db, COLUMN[via], sha256(value));
    if (!row || row.ended_at !== null) return false;
    const holder = { keyId: row.key_id, role: row.role, name: row.name };
    return this.end(row.id, 'signed_out', actorFor(holder, seen), row.key_id);
  }

  /** Ends one of the actor's own sessions (bound to the same key); false if there is none such. */
  async endOwn(actor: Actor & { keyId: string }, id: string): Promise<boolean> {
    return this.end(id, 'ended_by_holder', actor, actor.keyId);
  }

  /**
   * The key's open sessions, oldest first; those found run out are ended (and audited) on the way.
   */
  async list(keyId: string, currentId: string | undefined, seen: Seen): Promise<SessionView[]> {
    const at = this.now();
    const views: SessionView[] = [];
    for (const r of await this.repo.listOpen(this.db, keyId)) {
      const endsAt = new Date(r.expires_at).getTime();
      const idleAt = new Date(r.last_used_at).getTime() + this.idleMs;
      if (endsAt <= at || idleAt <= at) {
        const reason: EndReason = endsAt <= at ? 'lifetime' : 'idle';
        await this.end(r.id, reason, { ...systemActor('sessions'), ...seenOf(seen) }, keyId);
        continue;
      }
      views.push({
        id: r.id,
        createdAt: new Date(r.created_at).toISOString(),
        lastUsedAt: new Date(r.last_used_at).toISOString(),
        expiresAt: new Date(Math.min(endsAt, idleAt)).toISOString(),
        endsAt: new Date(endsAt).toISOString(),
        userAgent: r.user_agent,
        clientIp: r.client_ip,
        current: r.id === currentId,
      });
    }
    return views;
  }

  /**
   * Inside a key's revocation: ends all its sessions and answers the audit events to append with
   * the revocation's own (the caller appends them last, in the same transaction).
   */
  async endAllOfKey(tx: Tx, keyId: string, at: Date, actor: Actor): Promise<AuditEntry[]> {
    const ids = await this.repo.endAllOfKey(tx, keyId, at, 'key_revoked');
    return ids.map((sessionId) => ({
      action: 'session.end' as const,
      actor,
      details: { sessionId, keyId, reason: 'key_revoked' satisfies EndReason },
    }));
  }

  /** Ends one open session and audits it, in one transaction; false if it was ended already. */
  private async end(id: string, reason: EndReason, actor: Actor, keyId: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const ended = await this.repo.end(tx, id, new Date(this.now()), reason, keyId);
      if (!ended) return false;
      await this.audit.append(tx, [
        reason === 'signed_out'
          ? { action: 'session.close', actor, details: { sessionId: id } }
          : { action: 'session.end', actor, details: { sessionId: id, keyId, reason } },
      ]);
      return true;
    });
  }
}

const seenOf = (seen: Seen) => ({
  ...(seen.requestId ? { requestId: seen.requestId } : {}),
  ...(seen.clientIp ? { clientIp: seen.clientIp } : {}),
});

const actorFor = (p: Principal, seen: Seen): Actor => ({
  keyId: p.keyId,
  role: p.role,
  name: p.name,
  ...seenOf(seen),
});
