import type { Executor } from '../db/database';

export type TokenColumn = 'token_hash' | 'cookie_hash';

export interface NewSession {
  id: string;
  keyId: string;
  tokenHash: string;
  cookieHash: string;
  createdAt: Date;
  expiresAt: Date;
  userAgent: string | null;
  clientIp: string | null;
}

const VIEW = [
  'sessions.id',
  'sessions.key_id',
  'sessions.created_at',
  'sessions.last_used_at',
  'sessions.expires_at',
  'sessions.user_agent',
  'sessions.client_ip',
] as const;

export class SessionRepository {
  /** Inserts the session if its key is active (not revoked meanwhile); false if it is not. */
  async insert(db: Executor, s: NewSession): Promise<boolean> {
    const res = await db
      .insertInto('sessions')
      .columns([
        'id',
        'key_id',
        'token_hash',
        'cookie_hash',
        'created_at',
        'last_used_at',
        'expires_at',
        'user_agent',
        'client_ip',
      ])
      .expression(
        db
          .selectFrom('api_keys')
          .select((eb) => [
            eb.val(s.id).as('id'),
            'api_keys.id as key_id',
            eb.val(s.tokenHash).as('token_hash'),
            eb.val(s.cookieHash).as('cookie_hash'),
            eb.val(s.createdAt).as('created_at'),
            eb.val(s.createdAt).as('last_used_at'),
            eb.val(s.expiresAt).as('expires_at'),
            eb.val(s.userAgent).as('user_agent'),
            eb.val(s.clientIp).as('client_ip'),
          ])
          .where('api_keys.id', '=', s.keyId)
          .where('api_keys.revoked_at', 'is', null)
          // Locks the key's row against a revocation in flight: either the revocation waits and
          // then ends this session too, or this insert waits and finds the key revoked.
          .forShare(),
      )
      .executeTakeFirst();
    return Number(res.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  /**
   * Who holds a live session: not ended, before its absolute end, used since `idleSince`, and its
   * key not revoked (read here, on every use: no cache can outlive a revocation).
   */
  async findLive(db: Executor, column: TokenColumn, hash: string, at: Date, idleSince: Date) {
    return db
      .selectFrom('sessions')
      .innerJoin('api_keys', 'api_keys.id', 'sessions.key_id')
      .select([
        'sessions.id',
        'sessions.key_id',
        'sessions.last_used_at',
        'api_keys.name',
        'api_keys.role',
      ])
      .where(`sessions.${column}`, '=', hash)
      .where('sessions.ended_at', 'is', null)
      .where('sessions.expires_at', '>', at)
      .where('sessions.last_used_at', '>', idleSince)
      .where('api_keys.revoked_at', 'is', null)
      .executeTakeFirst();
  }

  /** Marks a session used at `at`, unless a request (on any instance) did since `since`. */
  async touch(db: Executor, id: string, at: Date, since: Date): Promise<void> {
    await db
      .updateTable('sessions')
      .set({ last_used_at: at })
      .where('id', '=', id)
      .where('ended_at', 'is', null)
      .where('last_used_at', '<', since)
      .execute();
  }

  /** A session by its token, live or not, with whether its key is revoked (why a use failed). */
  async findByToken(db: Executor, column: TokenColumn, hash: string) {
    return db
      .selectFrom('sessions')
      .innerJoin('api_keys', 'api_keys.id', 'sessions.key_id')
      .select([
        ...VIEW,
        'sessions.ended_at',
        'api_keys.name',
        'api_keys.role',
        'api_keys.revoked_at as key_revoked_at',
      ])
      .where(`sessions.${column}`, '=', hash)
      .executeTakeFirst();
  }

  /** Ends one session if it is still open (and, given `keyId`, only if that key holds it). */
  async end(db: Executor, id: string, at: Date, reason: string, keyId?: string) {
    let q = db
      .updateTable('sessions')
      .set({ ended_at: at, end_reason: reason })
      .where('id', '=', id)
      .where('ended_at', 'is', null);
    if (keyId !== undefined) q = q.where('key_id', '=', keyId);
    return q.returning(['id', 'key_id']).executeTakeFirst();
  }

  /** Ends every open session of a key (its revocation); answers their ids. */
  async endAllOfKey(db: Executor, keyId: string, at: Date, reason: string) {
    const rows = await db
      .updateTable('sessions')
      .set({ ended_at: at, end_reason: reason })
      .where('key_id', '=', keyId)
      .where('ended_at', 'is', null)
      .returning(['id'])
      .execute();
    return rows.map((r) => r.id);
  }

  /** A key's sessions not yet marked ended, oldest first (some may have run out unnoticed). */
  async listOpen(db: Executor, keyId: string) {
    return db
      .selectFrom('sessions')
      .select(VIEW)
      .where('key_id', '=', keyId)
      .where('ended_at', 'is', null)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
  }
}
