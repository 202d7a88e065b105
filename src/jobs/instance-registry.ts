import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Executor } from '../db/database';
import type { Logger } from '../logger';
import { INSTANCE_LOCK_SPACE, type ServiceInstanceRepository } from './service-instance.repository';

const HEARTBEAT_MS = 15_000;
/** Longest a statement on the registry session may take before the session is given up. */
const QUERY_TIMEOUT_MS = 10_000;

export interface InstanceRegistryDeps {
  connectionString: string;
  repo: ServiceInstanceRepository;
  logger: Logger;
  opts?: { role?: string; heartbeatMs?: number; queryTimeoutMs?: number };
}

/**
 * This process as one of the instances sharing the database and the store. It registers a row
 * and holds a session-level advisory lock on a dedicated connection for as long as it runs: the
 * lock, not a timestamp, says it is alive, so an instance killed by SIGKILL is known to be gone
 * the moment PostgreSQL sees its socket close (no timeout to wait out after a restart). What an
 * instance leaves in the store (staging objects named after its id, claims on blobs it was
 * promoting) may be removed once it is gone, never while it lives.
 *
 * A lost session (database restart, network) loses the lock: the instance re-registers on its
 * next heartbeat under a new id (a generation), since others may already have judged the old id
 * gone and cached that: a gone id never comes back, and the staging keys and claims made under the
 * new one are never mistaken for the old one's. Meanwhile the instance looks gone, and another may
 * remove the staging and claims of the old id: the requests using them then fail (their item's
 * commit is fenced by the claim), and no acknowledged upload is lost; new uploads are refused with
 * 503 until it is registered again (BlobClaims.claim).
 *
 * The session is kept honest: TCP keepalive, and a timeout on each of its statements (client and
 * server side). A heartbeat that does not answer in time (a half-open connection, a hung server)
 * destroys the session, so the instance registers again rather than hang believing it is live.
 */
export class InstanceRegistry {
  private generation: string = randomUUID();
  private client?: pg.Client;
  private connecting?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private closed = false;

  private readonly connectionString: string;
  private readonly repo: ServiceInstanceRepository;
  private readonly logger: Logger;
  private readonly opts: { role?: string; heartbeatMs?: number; queryTimeoutMs?: number };

  constructor(deps: InstanceRegistryDeps) {
    this.connectionString = deps.connectionString;
    this.repo = deps.repo;
    this.logger = deps.logger;
    this.opts = deps.opts ?? {};
  }

  /** This instance's id for its current registration (a new one after a lost session). */
  get id(): string {
    return this.generation;
  }

  /** Whether this instance holds its registration now (its session and lock are up). */
  get registered(): boolean {
    return this.client !== undefined && !this.closed;
  }

  /** Registers this instance and keeps it registered until close(). */
  async start(): Promise<void> {
    await this.ensure();
    this.timer = setInterval(
      () =>
        void this.heartbeat().catch((err: unknown) =>
          this.logger.warn({ err }, 'instance registration lost; retrying'),
        ),
      this.opts.heartbeatMs ?? HEARTBEAT_MS,
    ).unref();
  }

  /** Marks this instance seen, and registers it again if its session (and lock) was lost. */
  heartbeat(): Promise<void> {
    return this.ensure();
  }

  /** The session holding this instance's lock: opened (and the lock taken) when missing. */
  private ensure(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const current = this.client;
    if (current) {
      return current
        .query('update service_instances set seen_at = now() where id = $1', [this.id])
        .then(
          (res) => {
            // Our row is gone although the session looked up (it was judged gone meanwhile):
            // give this session up; the next heartbeat registers under a new id.
            if (res.rowCount === 0) this.abandon(current, new Error('registration removed'));
          },
          (err: unknown) => {
            // A statement that timed out or failed: the session cannot be trusted to hold the lock.
            this.abandon(current, err);
            throw err;
          },
        );
    }
    this.connecting ??= (async () => {
      const timeout = this.opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS;
      const client = new pg.Client({
        connectionString: this.connectionString,
        application_name: 'evidence-archive-instance',
        keepAlive: true,
        keepAliveInitialDelayMillis: 10_000,
        connectionTimeoutMillis: timeout,
        query_timeout: timeout,
        statement_timeout: timeout,
        ...(this.opts.role ? { options: `-c role=${this.opts.role}` } : {}),
      });
      const lost = (err?: Error) => {
        if (this.client !== client) return;
        this.client = undefined;
        if (!this.closed) this.logger.warn({ err }, 'instance session lost');
      };
      // An 'error' without a listener would end the process: a lost database is an outage here.
      client.on('error', lost);
      client.on('end', () => lost());
      try {
        await client.connect();
        await this.register(client);
      } catch (err) {
        client.removeAllListeners('end');
        await client.end().catch(() => undefined);
        throw err;
      }
      if (this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Gives a session up: destroyed (a half-open socket would never close), its id retired. */
  private abandon(client: pg.Client, err: unknown): void {
    if (this.client === client) {
      this.client = undefined;
      if (!this.closed) this.logger.warn({ err }, 'instance session given up');
    }
    client.removeAllListeners('end');
    (
      client as unknown as { connection?: { stream?: { destroy(): void } } }
    ).connection?.stream?.destroy();
    void client.end().catch(() => undefined);
  }

  private async register(client: pg.Client): Promise<void> {
    // Every registration is a new generation: an id another instance found gone stays gone. It is
    // used (staging keys, claims) only once registered: an instance registers before it writes.
    const id = randomUUID();
    // The row becomes visible with its lock already held: nobody sees this instance as gone.
    await client.query('begin');
    try {
      const { rows } = await client.query<{ lock_key: number }>(
        `insert into service_instances (id, host, pid) values ($1, $2, $3)
         returning lock_key`,
        [id, hostname(), process.pid],
      );
      await client.query('select pg_advisory_lock($1::int, $2::int)', [
        INSTANCE_LOCK_SPACE,
        rows[0]!.lock_key,
      ]);
      await client.query('commit');
      this.generation = id;
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    }
  }

  /**
   * Whether an instance is alive now: its session still holds its lock in this database. Ask after
   * seeing what it left (a staging key, a claim): an instance registers before it writes anything,
   * and a gone id never comes back (a lost session registers under a new one), so the answer
   * holds for everything seen before the question.
   */
  async isLive(db: Executor, id: string): Promise<boolean> {
    if (id === this.id) return this.registered;
    return this.repo.isHeld(db, id);
  }

  /** Forgets instances that are gone; returns how many. */
  async forgetGone(db: Executor): Promise<number> {
    return this.repo.deleteGone(db);
  }

  /** Ends the session: the lock goes with it, and the row too. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.connecting?.catch(() => undefined);
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    await client
      .query('delete from service_instances where id = $1', [this.id])
      .catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}
