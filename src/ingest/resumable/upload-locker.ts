import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import pg from 'pg';
import type { Logger } from '../../logger';

const CHANNEL = 'evidence_upload_release';
/** The first of the two int4 keys of our advisory locks: "tus" uploads, apart from other users. */
const LOCK_SPACE = 0x747573;

export interface UploadLockerDeps {
  connectionString: string;
  logger: Logger;
  opts?: { role?: string; acquireTimeoutMs?: number };
}

/**
 * One writer per upload across every instance sharing the database. Within a process a map
 * decides; across processes a session-level advisory lock on one dedicated connection does, so a
 * process that dies (even by SIGKILL) loses its locks the moment PostgreSQL sees the socket close.
 *
 * A request that wants an upload someone else holds asks the holder to let go (tus: the client
 * reconnected, the old request is stale): in-process through the holder's callback, across
 * processes with NOTIFY, which the holder's connection LISTENs for.
 */
export class UploadLocker implements Locker {
  private client?: pg.Client;
  private connecting?: Promise<pg.Client>;
  readonly held = new Map<string, RequestRelease>();
  /** The session each held lock was taken on: writes fenced by the lock go through it. */
  readonly lockedOn = new Map<string, pg.Client>();
  private closed = false;

  private readonly connectionString: string;
  private readonly logger: Logger;
  private readonly opts: { role?: string; acquireTimeoutMs?: number };

  constructor(deps: UploadLockerDeps) {
    this.connectionString = deps.connectionString;
    this.logger = deps.logger;
    this.opts = deps.opts ?? {};
  }

  newLock(id: string): Lock {
    return new UploadLock(id, this, this.opts.acquireTimeoutMs ?? 30_000);
  }

  /** The dedicated session; a lost one releases every lock this process held. */
  async session(): Promise<pg.Client> {
    if (this.closed) throw new Error('upload locker closed');
    if (this.client) return this.client;
    this.connecting ??= (async () => {
      const client = new pg.Client({
        connectionString: this.connectionString,
        application_name: 'evidence-archive-uploads',
        ...(this.opts.role ? { options: `-c role=${this.opts.role}` } : {}),
      });
      const lost = (err?: Error) => {
        if (this.client !== client) return;
        this.client = undefined;
        if (!this.closed) this.logger.warn({ err }, 'upload lock session lost; releasing uploads');
        // PostgreSQL dropped our advisory locks with the session: stop every writer now.
        for (const release of this.held.values()) void release();
      };
      client.on('error', lost);
      client.on('end', () => lost());
      client.on('notification', (msg) => {
        // Our own NOTIFY comes back to us too: it is meant for the other instances.
        if (msg.processId === (client as unknown as { processID: number }).processID) return;
        if (msg.channel === CHANNEL && msg.payload) void this.held.get(msg.payload)?.();
      });
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.client = client;
      return client;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /**
   * Runs a statement on the very session that holds the upload's lock. PostgreSQL drops an
   * advisory lock only when its session ends, and a statement on an ended session fails: so a
   * write that commits here committed while this instance still held the upload, and an instance
   * whose lock session was lost (and whose upload another instance may have taken since) can
   * record nothing more of it.
   */
  async fenced(id: string, sql: string, params: readonly unknown[]): Promise<pg.QueryResult> {
    const client = this.lockedOn.get(id);
    if (!client || client !== this.client) {
      throw new Error(`the lock on upload ${id} was lost; nothing of this write is recorded`);
    }
    return client.query(sql, params as unknown[]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}

class UploadLock implements Lock {
  constructor(
    private readonly id: string,
    private readonly locker: UploadLocker,
    private readonly timeoutMs: number,
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    for (let wait = 10; ; wait = Math.min(wait * 2, 250)) {
      if (signal.aborted) throw ERRORS.ABORTED;
      const holder = this.locker.held.get(this.id);
      if (holder) {
        await holder();
      } else {
        // Claimed here synchronously, so two requests in this process never both ask PostgreSQL.
        this.locker.held.set(this.id, requestRelease);
        let got = false;
        try {
          const session = await this.locker.session();
          const res = await session.query<{ ok: boolean }>(
            'select pg_try_advisory_lock($1::int, $2::int) as ok',
            [LOCK_SPACE, lockKey(this.id)],
          );
          got = res.rows[0]!.ok;
          if (got) this.locker.lockedOn.set(this.id, session);
          if (!got) await session.query('select pg_notify($1, $2)', [CHANNEL, this.id]);
        } finally {
          if (!got && this.locker.held.get(this.id) === requestRelease) {
            this.locker.held.delete(this.id);
          }
        }
        if (got) return;
      }
      if (Date.now() + wait > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      await sleep(wait);
    }
  }

  async unlock(): Promise<void> {
    if (!this.locker.held.has(this.id)) return;
    this.locker.held.delete(this.id);
    this.locker.lockedOn.delete(this.id);
    try {
      const session = await this.locker.session();
      await session.query('select pg_advisory_unlock($1::int, $2::int)', [
        LOCK_SPACE,
        lockKey(this.id),
      ]);
    } catch {
      // The session is gone, and its locks with it.
    }
  }
}

function lockKey(id: string): number {
  return createHash('sha256').update(id).digest().readInt32BE(0);
}
