import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuditLog } from '../base/audit.service';
import type { Db, Role } from '../db/database';
import type { ApiKeyRepository } from './api-key.repository';
import { systemActor, type Actor, type Principal } from '../base/actor';
import type { Seen, SessionPrincipal, SessionService, TokenVia } from './session.service';

const TOKEN_PATTERN = /^eak_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export interface MintedKey {
  id: string;
  key: string;
  role: Role;
  name: string;
}

export interface ApiKeyServiceDeps {
  db: Db;
  repo: ApiKeyRepository;
  audit: AuditLog;
  cacheTtlMs: number;
  /** Web app sessions: revoking a key ends them; without it, no session is accepted. */
  sessions?: SessionService;
  now?: () => number;
}

/**
 * API keys: `eak_<id>_<secret>`. Only SHA-256 of the secret is stored; keys are 256-bit random,
 * so a slow password hash would add latency to every request without adding safety.
 */
export class ApiKeyService {
  private readonly cache = new Map<string, { principal: Principal; expires: number }>();
  /** When this instance last wrote each key's `last_used_at` (ms). */
  private readonly lastTouched = new Map<string, number>();

  private readonly db: Db;
  private readonly repo: ApiKeyRepository;
  private readonly audit: AuditLog;
  private readonly cacheTtlMs: number;
  private readonly now: () => number;
  private readonly sessions: SessionService | undefined;

  constructor(deps: ApiKeyServiceDeps) {
    this.sessions = deps.sessions;
    this.db = deps.db;
    this.repo = deps.repo;
    this.audit = deps.audit;
    this.cacheTtlMs = deps.cacheTtlMs;
    this.now = deps.now ?? Date.now;
  }

  async create(role: Role, name: string, actor: Actor = systemActor('keys')): Promise<MintedKey> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    await this.db.transaction().execute(async (tx) => {
      await this.repo.insert(tx, { id, name, role, secretHash: sha256(secret).toString('hex') });
      await this.audit.append(tx, [
        { action: 'key.create', actor, details: { keyId: id, role, name } },
      ]);
    });
    return { id, key: `eak_${id}_${secret}`, role, name };
  }

  async revoke(id: string, actor: Actor = systemActor('keys')): Promise<boolean> {
    const revoked = await this.db.transaction().execute(async (tx) => {
      const at = new Date(this.now());
      const revoked = await this.repo.revoke(tx, id, at);
      if (revoked) {
        // Its sessions end in the same transaction: no instance accepts them after the commit.
        const ended = (await this.sessions?.endAllOfKey(tx, id, at, actor)) ?? [];
        await this.audit.append(tx, [
          { action: 'key.revoke', actor, details: { keyId: id, sessionsEnded: ended.length } },
          ...ended,
        ]);
      }
      return revoked;
    });
    // After the commit: a request verifying the key meanwhile cannot re-cache it as active.
    this.cache.clear();
    return revoked;
  }

  /** Every key (never a secret); the listing is audited as `key.list`, whoever asks. */
  async list(actor: Actor) {
    const rows = await this.repo.list(this.db);
    await this.audit.record({ action: 'key.list', actor, details: { keys: rows.length } });
    return rows;
  }

  /**
   * The person a web app session token stands for (see SessionService): read from the database
   * on every use, never cached, so a sign-out or a revocation holds at once on every instance.
   */
  authenticateSession(
    token: string,
    via: TokenVia,
    seen?: Seen,
  ): Promise<SessionPrincipal | undefined> {
    return this.sessions?.authenticate(token, via, seen) ?? Promise.resolve(undefined);
  }

  /**
   * Marks the key used, at most once a minute per key on this instance (the repository skips a
   * row another instance marked within the minute): one small write a minute, not one a request.
   * Never fails authentication: a lost mark only makes "last used" a little older.
   */
  private async touch(keyId: string): Promise<void> {
    const now = this.now();
    const last = this.lastTouched.get(keyId);
    if (last !== undefined && now - last < 60_000) return;
    if (this.lastTouched.size > 10_000) this.lastTouched.clear();
    this.lastTouched.set(keyId, now);
    await this.repo.touch(this.db, keyId, new Date(now)).catch(() => undefined);
  }

  /** The key's principal, or undefined for a malformed, unknown or revoked key. */
  async authenticate(token: string): Promise<Principal | undefined> {
    const match = TOKEN_PATTERN.exec(token);
    if (!match) return undefined;
    const [, id, secret] = match as unknown as [string, string, string];
    const cacheKey = sha256(token).toString('base64');
    const cached = this.cache.get(cacheKey);
    if (cached && cached.expires > this.now()) {
      await this.touch(cached.principal.keyId);
      return cached.principal;
    }

    const row = await this.repo.findActive(this.db, id);
    if (!row || !timingSafeEqual(Buffer.from(row.secret_hash, 'hex'), sha256(secret))) {
      return undefined;
    }
    await this.touch(row.id);
    const principal: Principal = { keyId: row.id, role: row.role, name: row.name };
    if (this.cacheTtlMs > 0) {
      // Revocation takes effect within the TTL on every instance (immediately on this one).
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(cacheKey, { principal, expires: this.now() + this.cacheTtlMs });
    }
    return principal;
  }
}
