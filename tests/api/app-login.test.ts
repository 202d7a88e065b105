import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import request from 'supertest';
import { loadConfig } from '../../src/base/config';
import type { Logger } from '../../src/base/logger';
import { AppContext } from '../../src/context';
import type { Db } from '../../src/db/database';
import {
  APP_PASSWORD_FILE,
  EMBEDDED_APP_LOGIN,
  OWNER_PASSWORD_FILE,
} from '../../src/db/embedded-postgres';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { archive, MediaFiles } from '../support/media-files';
import {
  freePort,
  ownPostgresUnavailable,
  startOwnPostgres,
  type OwnPostgres,
} from '../support/own-postgres';
import { startServiceProcess, waitFor, type ServiceProcess } from '../support/service-process';

jest.setTimeout(120_000);

const run = promisify(execFile);

/**
 * The issue's "two logins": the service connects with a login that owns nothing, so SQL that
 * reaches its connection cannot become the owner (SET ROLE NONE, RESET ROLE) and then drop the
 * append-only triggers, rewrite the trail or an item's hash. Each escape is tried on the
 * service's own pool: refused (42501) under the two logins, and done under the old single-URL
 * setup (`-c role=evidence_app` on the owner's login), which is what makes the test able to fail.
 */

/** A logger that keeps what it logs, to read the start-up warnings. */
function recordingLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream) as unknown as Logger, lines: () => lines };
}

const ESCAPE_WARNING =
  /the app connects to PostgreSQL as the owner.*SET ROLE NONE.*APP_DATABASE_URL/;

interface Outcome {
  attempt: string;
  /** 'done' when every statement ran; else the SQLSTATE and message of the one refused. */
  result: string;
  currentUser?: string;
}

/**
 * What an injected statement would try, each in a transaction that is rolled back (the owner's
 * escapes would otherwise really drop the triggers of the test database). `owner` is the role
 * owning the tables.
 */
function escapes(owner: string, trigger: string): { attempt: string; statements: string[] }[] {
  const first = `(select min(seq) from audit_events)`;
  return [
    { attempt: `SET ROLE ${owner}`, statements: [`set role ${owner}`] },
    {
      attempt: `SET SESSION AUTHORIZATION ${owner}`,
      statements: [`set session authorization ${owner}`],
    },
    {
      attempt: 'SET ROLE NONE; DROP TRIGGER on audit_events',
      statements: ['set role none', `drop trigger ${trigger} on audit_events`],
    },
    {
      attempt: 'SET ROLE NONE; DISABLE TRIGGER; UPDATE an audit event',
      statements: [
        'set role none',
        'alter table audit_events disable trigger user',
        `update audit_events set action = 'rewritten' where seq = ${first}`,
      ],
    },
    {
      attempt: 'SET ROLE NONE; DISABLE TRIGGER; DELETE audit events',
      statements: [
        'set role none',
        'alter table audit_events disable trigger user',
        'delete from audit_events',
      ],
    },
    {
      attempt: "SET ROLE NONE; DISABLE TRIGGER; rewrite an item's sha256",
      statements: [
        'set role none',
        'alter table evidence_items disable trigger user',
        `update evidence_items set sha256 = repeat('0', 64)`,
      ],
    },
    {
      attempt: 'SET ROLE NONE; ALTER TABLE audit_events',
      statements: ['set role none', 'alter table audit_events add column note text'],
    },
    {
      attempt: 'SET ROLE NONE; DROP TABLE audit_events',
      statements: ['set role none', 'drop table audit_events cascade'],
    },
    {
      attempt: 'SET ROLE NONE; CREATE TABLE in public',
      statements: ['set role none', 'create table public.intruder (x int)'],
    },
    {
      attempt: 'SET ROLE NONE; CREATE FUNCTION in public',
      statements: [
        'set role none',
        'create function public.intruder() returns int language sql as $$ select 1 $$',
      ],
    },
    {
      attempt: 'SET ROLE NONE; CREATE TABLE in pgboss',
      statements: ['set role none', 'create table pgboss.intruder (x int)'],
    },
    {
      // (RESET ROLE returns to the session's default: the old setup's -c role=evidence_app.)
      attempt: 'RESET ROLE; SET ROLE NONE; DISABLE TRIGGER',
      statements: ['reset role', 'set role none', 'alter table audit_events disable trigger user'],
    },
    {
      attempt: 'SET ROLE pg_write_server_files',
      statements: ['set role pg_write_server_files'],
    },
  ];
}

/** Straight statements, no escape first: what the role's grants refuse. */
const DIRECT = [
  { attempt: 'UPDATE audit_events', statements: [`update audit_events set action = 'rewritten'`] },
  { attempt: 'DELETE FROM audit_events', statements: ['delete from audit_events'] },
  {
    attempt: "UPDATE evidence_items SET sha256 (an item's hash)",
    statements: [`update evidence_items set sha256 = repeat('0', 64)`],
  },
  { attempt: 'TRUNCATE audit_events', statements: ['truncate audit_events'] },
  {
    attempt: 'UPDATE audit_pending (an event waiting to be linked)',
    statements: [`update audit_pending set action = 'rewritten'`],
  },
  { attempt: 'TRUNCATE audit_pending', statements: ['truncate audit_pending'] },
  {
    attempt: 'DELETE FROM audit_pending (an event not yet linked)',
    statements: ['delete from audit_pending'],
  },
];

/** Runs each attempt on one connection of the service's pool, in a transaction rolled back. */
async function attempt(
  db: Db,
  list: { attempt: string; statements: string[] }[],
): Promise<Outcome[]> {
  return db.connection().execute(async (conn) => {
    const out: Outcome[] = [];
    for (const a of list) {
      await sql`begin`.execute(conn);
      let result = 'done';
      let currentUser: string | undefined;
      try {
        for (const s of a.statements) await sql.raw(s).execute(conn);
        currentUser = (await sql<{ u: string }>`select current_user as u`.execute(conn)).rows[0]!.u;
      } catch (err) {
        const e = err as { code?: string; message: string };
        result = `${e.code} ${e.message}`;
      } finally {
        await sql`rollback`.execute(conn);
      }
      out.push({ attempt: a.attempt, result, ...(currentUser ? { currentUser } : {}) });
    }
    return out;
  });
}

/** The roles the connection can SET ROLE to, of every role the cluster has. */
async function settableRoles(db: Db): Promise<string[]> {
  return db.connection().execute(async (conn) => {
    const { rows } = await sql<{ rolname: string }>`select rolname from pg_roles`.execute(conn);
    const ok: string[] = [];
    for (const { rolname } of rows) {
      await sql`begin`.execute(conn);
      try {
        await sql.raw(`set role ${pg.escapeIdentifier(rolname)}`).execute(conn);
        ok.push(rolname);
      } catch {
        // Refused.
      } finally {
        await sql`rollback`.execute(conn);
      }
    }
    return ok.sort();
  });
}

/** What the role owns in this database and in the cluster: nothing, for the app's roles. */
async function owned(db: Db, role: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select (select count(*) from pg_class where relowner = r.oid)
      + (select count(*) from pg_namespace where nspowner = r.oid)
      + (select count(*) from pg_proc where proowner = r.oid)
      + (select count(*) from pg_type where typowner = r.oid)
      + (select count(*) from pg_database where datdba = r.oid) as n
    from pg_roles r where r.rolname = ${role}`.execute(db);
  return Number(rows[0]!.n);
}

const show = (label: string, outcomes: Outcome[]) => {
  if (process.env.APP_LOGIN_REPORT) {
    console.log(
      `${label}\n${outcomes.map((o) => `  ${o.attempt}\n    -> ${o.result}${o.currentUser ? ` (current_user ${o.currentUser})` : ''}`).join('\n')}`,
    );
  }
};

describe('two logins: the service connects with a login that owns nothing', () => {
  let app: TestApp;
  let oldSetup: AppContext | undefined;
  let oldDataDir: string;
  let appLogin: string;
  let owner: string;
  let trigger: string;
  const files = new MediaFiles();
  const warnings = recordingLogger();
  const oldWarnings = recordingLogger();

  beforeAll(async () => {
    app = await startTestApp('fs', {}, { jobQueue: true, logger: warnings.logger });
    await app.ctx.jobs.start({ workers: true });
    await app.ctx.mediaJobs.start({ workers: true });
    appLogin = new URL(app.appDatabaseUrl).username;
    const { rows } = await sql<{ owner: string; trigger: string }>`
      select t.tableowner as owner, g.tgname as trigger
      from pg_tables t join pg_trigger g on g.tgrelid = 'audit_events'::regclass and not g.tgisinternal
      where t.tablename = 'audit_events' and t.schemaname = current_schema()
      order by g.tgname limit 1`.execute(app.ctx.db);
    ({ owner, trigger } = rows[0]!);
    oldDataDir = mkdtempSync(path.join(tmpdir(), 'evidence-old-login-'));
  });
  afterAll(async () => {
    await oldSetup?.close();
    await app?.close();
    rmSync(oldDataDir, { recursive: true, force: true });
  });

  /** The same database as single-URL deployments run it: the owner's login and -c role=. */
  async function old(): Promise<AppContext> {
    oldSetup ??= await AppContext.fromConfig(
      loadConfig({ DATABASE_URL: app.databaseUrl, DATA_DIR: oldDataDir, LOG_LEVEL: 'silent' }),
      { migrate: true, mediaTools: false },
      { logger: oldWarnings.logger },
    );
    return oldSetup;
  }

  // First, before the old setup's own (owner) sessions exist.
  it('connects every pool and session (requests, job queue, instance, upload locks) as the app login', async () => {
    await app.ctx.uploadLocker.session();
    const owner = new pg.Client({ connectionString: app.databaseUrl });
    await owner.connect();
    try {
      const { rows } = await owner.query<{ application_name: string; usename: string }>(
        `select distinct application_name, usename from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid()
         order by 1, 2`,
      );
      expect(rows.map((r) => r.application_name)).toEqual(
        expect.arrayContaining([
          'evidence-archive',
          'evidence-archive-jobs',
          'evidence-archive-instance',
        ]),
      );
      expect(rows.filter((r) => r.usename !== appLogin)).toEqual([]);
    } finally {
      await owner.end();
    }
  });

  it('uses a login of its own, apart from the owner, and warns only in the single-URL setup', async () => {
    expect(app.appDatabaseUrl).not.toBe(app.databaseUrl);
    expect(appLogin).toMatch(/^evidence_login_/);
    const oldSetup = await old();
    expect(oldSetup.appDatabaseUrl).toBe(oldSetup.databaseUrl);
    const warned = (lines: Record<string, unknown>[]) =>
      lines.some((l) => ESCAPE_WARNING.test(String(l.msg)));
    expect(warned(warnings.lines())).toBe(false);
    expect(warned(oldWarnings.lines())).toBe(true);
  });

  it('archives, serves and runs jobs (media, custody) end to end under the app login', async () => {
    const id = await archive(app, files.mulawWav(2, 1), 'call_recording', 'two-logins.wav');
    const item = await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support));
    expect(item.status).toBe(200);
    const download = await request(app.url)
      .get(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.support));
    expect(download.status).toBe(200);
    // Media work on the queue (pg-boss on the app login): the waveform is made.
    const media = await waitFor('media work', async () => {
      const res = await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support));
      return ['done', 'partial', 'failed'].includes(res.body.media?.status)
        ? res.body.media
        : undefined;
    });
    expect(media.status).toBe('done');
    // A custody run asked for on demand, and the checkpoint starting the workers scheduled.
    const queued = await request(app.url)
      .post('/v1/custody/jobs/scrub')
      .set(bearer(app.keys.admin));
    expect(queued.status).toBe(202);
    const status = await waitFor('the scrub and checkpoint runs', async () => {
      const res = await request(app.url).get('/v1/custody/status').set(bearer(app.keys.admin));
      return res.body.lastRuns?.scrub && res.body.lastRuns?.checkpoint ? res.body : undefined;
    });
    expect(status.lastRuns.scrub.outcome).toBe('ok');
    expect(status.lastRuns.checkpoint.outcome).toBe('ok');
    const verify = await request(app.url)
      .post(`/v1/evidence/${id}/verify`)
      .set(bearer(app.keys.support));
    expect(verify.status).toBe(200);
    // pg-boss's own upkeep (expire, archive, drop; state counts) with the app login's grants.
    const boss = (
      app.ctx.queue as unknown as {
        boss: { maintain(): Promise<void>; countStates(): Promise<Record<string, unknown>> };
      }
    ).boss;
    await boss.maintain();
    expect(await boss.countStates()).toHaveProperty('queues');
  });

  it('cannot SET ROLE to the owner or any role that owns something; SET ROLE NONE leaves it itself', async () => {
    const oldSetup = await old();
    const settable = await settableRoles(app.ctx.db);
    // PostgreSQL 16+: not even evidence_app (granted WITH SET FALSE); 15: evidence_app only.
    expect(settable.filter((r) => r !== appLogin && r !== 'evidence_app')).toEqual([]);
    for (const role of [appLogin, 'evidence_app']) expect(await owned(oldSetup.db, role)).toBe(0);
    const [none, reset] = await attempt(app.ctx.db, [
      { attempt: 'SET ROLE NONE', statements: ['set role none'] },
      { attempt: 'RESET ROLE', statements: ['reset role'] },
    ]);
    expect(none).toEqual({ attempt: 'SET ROLE NONE', result: 'done', currentUser: appLogin });
    expect(reset).toEqual({ attempt: 'RESET ROLE', result: 'done', currentUser: appLogin });
    // The old setup's connection can become every role there is (its login is a superuser here).
    const oldSettable = await settableRoles(oldSetup.db);
    expect(oldSettable).toContain(owner);
    const [oldNone] = await attempt(oldSetup.db, [
      { attempt: 'SET ROLE NONE', statements: ['set role none'] },
    ]);
    expect(oldNone!.currentUser).toBe(owner);
  });

  it('refuses every escape (42501) on the app login; the old setup lets each one through', async () => {
    const oldSetup = await old();
    const list = escapes(owner, trigger);
    const now = await attempt(app.ctx.db, list);
    const before = await attempt(oldSetup.db, list);
    show(`app login ${appLogin}:`, now);
    show(`old setup (owner ${owner} with -c role=evidence_app):`, before);
    expect(now.filter((o) => !o.result.startsWith('42501 '))).toEqual([]);
    expect(before.filter((o) => o.result !== 'done')).toEqual([]);
    // Nothing was changed: the trigger is there, on the trail and on each of its partitions.
    const { rows } = await sql<{ n: number; partitions: number }>`
      select count(*)::int as n,
             (select count(*)::int from pg_inherits where inhparent = 'audit_events'::regclass)
               as partitions
        from pg_trigger where tgname = ${trigger} and tgenabled = 'O'`.execute(app.ctx.db);
    expect(rows[0]!.partitions).toBeGreaterThan(1);
    expect(rows[0]!.n).toBe(1 + rows[0]!.partitions);
  });

  it('refuses to start on an app login that does not hold evidence_app, naming the GRANT', async () => {
    const owner = new pg.Client({ connectionString: app.databaseUrl });
    await owner.connect();
    const user = `evidence_bare_${Date.now().toString(36)}`;
    await owner.query(`create role ${user} login password 'bare-password'`);
    try {
      const appUrl = new URL(app.databaseUrl);
      appUrl.username = user;
      appUrl.password = 'bare-password';
      await expect(
        AppContext.fromConfig(
          loadConfig({
            DATABASE_URL: app.databaseUrl,
            APP_DATABASE_URL: appUrl.toString(),
            DATA_DIR: oldDataDir,
            LOG_LEVEL: 'silent',
          }),
          { migrate: true, mediaTools: false },
          { logger: recordingLogger().logger },
        ),
      ).rejects.toThrow(
        `does not hold the role evidence_app: as the owner, run GRANT evidence_app TO ${user}`,
      );
    } finally {
      await owner.query(`drop role ${user}`);
      await owner.end();
    }
  });

  it("refuses updating or deleting audit events and rewriting an item's hash outright", async () => {
    const now = await attempt(app.ctx.db, DIRECT);
    show(`app login ${appLogin}, no escape:`, now);
    expect(now.map((o) => o.result.split(' ')[0])).toEqual(DIRECT.map(() => '42501'));
  });
});

describe('the embedded default makes both logins itself', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-embedded-logins-'));
  let port: number;
  let service: ServiceProcess | undefined;
  const mode = (f: string) => statSync(path.join(dataDir, f)).mode & 0o777;
  const secret = (f: string) => readFileSync(path.join(dataDir, f), 'utf8').trim();
  const hba = path.join(dataDir, 'postgres', 'pg_hba.conf');
  const methods = () =>
    new Set(
      readFileSync(hba, 'utf8')
        .split('\n')
        .filter((l) => /^(local|host)/.test(l))
        .map((l) => l.trim().split(/\s+/).pop()),
    );
  const url = (user: string, password: string) =>
    `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/evidence`;
  const ownerUrl = () => url('postgres', secret(OWNER_PASSWORD_FILE));
  const appUrl = () => url(EMBEDDED_APP_LOGIN, secret(APP_PASSWORD_FILE));

  async function connectError(connectionString: string): Promise<string> {
    const c = new pg.Client({ connectionString });
    try {
      await c.connect();
      return 'connected';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async function asOwner<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: ownerUrl() });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  /** The service (src/main.ts) with no DATABASE_URL: the embedded default, as a fresh machine. */
  async function startService(): Promise<ServiceProcess> {
    const s = await startServiceProcess(
      { DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(port), LOG_LEVEL: 'info', WORKERS: '1' },
      await freePort(),
    );
    await s.ready(90_000);
    return s;
  }

  /** SIGTERM: the service stops its embedded PostgreSQL last. */
  async function stopService(): Promise<void> {
    const s = service;
    service = undefined;
    if (!s?.alive()) return;
    await new Promise<void>((resolve) => {
      s.proc.once('exit', () => resolve());
      s.proc.kill('SIGTERM');
    });
  }

  async function checkLogins(): Promise<void> {
    expect([mode(OWNER_PASSWORD_FILE), mode(APP_PASSWORD_FILE)]).toEqual([0o600, 0o600]);
    expect(methods()).toEqual(new Set(['scram-sha-256']));
    // The passwords are checked: a wrong one is refused (28P01), the right ones let in.
    expect(await connectError(url(EMBEDDED_APP_LOGIN, 'not-the-password'))).toBe('28P01');
    expect(await connectError(url('postgres', 'not-the-password'))).toBe('28P01');
    expect(await connectError(appUrl())).toBe('connected');
    // Every session of the service (requests, job queue, instance) is the app login.
    const rows = await waitFor('the job queue session', () =>
      asOwner(async (c) => {
        const { rows } = await c.query<{ usename: string; application_name: string }>(
          `select distinct usename, application_name from pg_stat_activity
           where application_name like 'evidence-archive%' order by 2`,
        );
        return rows.some((r) => r.application_name === 'evidence-archive-jobs') ? rows : undefined;
      }),
    );
    expect(rows.map((r) => r.application_name)).toEqual(
      expect.arrayContaining([
        'evidence-archive',
        'evidence-archive-jobs',
        'evidence-archive-instance',
      ]),
    );
    expect(new Set(rows.map((r) => r.usename))).toEqual(new Set([EMBEDDED_APP_LOGIN]));
    // The app login can become no one and change no definition.
    const app = new pg.Client({ connectionString: appUrl() });
    await app.connect();
    try {
      for (const statements of [
        ['set role postgres'],
        ['set session authorization postgres'],
        ['set role none', 'drop trigger audit_events_append_only on audit_events'],
        ['reset role', 'alter table audit_events disable trigger user'],
        ['set role none', `update evidence_items set sha256 = repeat('0', 64)`],
        ['set role none', 'create table pgboss.intruder (x int)'],
      ]) {
        await app.query('begin');
        const refused = await (async () => {
          try {
            for (const s of statements) await app.query(s);
            return 'done';
          } catch (err) {
            return (err as { code?: string }).code;
          }
        })();
        await app.query('rollback');
        expect([statements.join('; '), refused]).toEqual([statements.join('; '), '42501']);
      }
    } finally {
      await app.end();
    }
    expect(service!.output()).not.toMatch(ESCAPE_WARNING);
  }

  beforeAll(async () => {
    port = await freePort();
  });
  afterAll(async () => {
    await stopService();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a fresh start makes both logins (0600 password files), requires passwords over TCP and connects the service as evidence_service', async () => {
    service = await startService();
    await checkLogins();
  });

  it('a data directory from before the two logins (trust, no app login, a readable password file) upgrades on its next start', async () => {
    // The login goes (renamed away: the running service's sessions keep their rights till it stops).
    await asOwner((c) => c.query(`alter role ${EMBEDDED_APP_LOGIN} rename to evidence_gone`));
    await stopService();
    rmSync(path.join(dataDir, APP_PASSWORD_FILE));
    // embedded-postgres's initdb wrote `password` (clear text) lines; hand-edited ones say trust.
    writeFileSync(
      hba,
      readFileSync(hba, 'utf8')
        .replace(/^(host.*)scram-sha-256$/gm, '$1password')
        .replace(/scram-sha-256$/gm, 'trust'),
    );
    chmodSync(path.join(dataDir, OWNER_PASSWORD_FILE), 0o644);
    expect(methods()).toEqual(new Set(['password', 'trust']));
    service = await startService();
    await checkLogins();
  });
});

const ownPgUnavailable = ownPostgresUnavailable();
if (ownPgUnavailable && process.env.CI) {
  throw new Error(`the two-login docs test must run in CI: ${ownPgUnavailable}`);
}
const describeOwnPg = ownPgUnavailable ? describe.skip : describe;

/** The SQL block of docs/operations.md's "Two database logins", as an operator copies it. */
function operationsSql(): string {
  const page = readFileSync(path.resolve(__dirname, '../../docs/operations.md'), 'utf8');
  const section = page.slice(page.indexOf('## Two database logins'));
  const block = /```sql\n([\s\S]*?)\n```/.exec(section);
  if (!block) throw new Error('no sql block in "Two database logins" of docs/operations.md');
  return block[1]!;
}

describeOwnPg("docs/operations.md's two logins on an external PostgreSQL, as written", () => {
  let db: OwnPostgres;
  let service: ServiceProcess | undefined;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-two-logins-docs-'));

  beforeAll(async () => {
    db = await startOwnPostgres();
  });
  afterAll(async () => {
    await service?.kill();
    await db?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('npm run migrate with the owner, the SQL block, then the service on APP_DATABASE_URL', async () => {
    // npm run migrate (from its sources) with the owner's login: the schema, evidence_app, pgboss.
    const migrate = await run(
      process.execPath,
      [
        path.resolve(__dirname, '../support/run-ts.js'),
        path.resolve(__dirname, '../../src/cli/migrate.cli.ts'),
      ],
      { env: { ...process.env, DATABASE_URL: db.url, DATA_DIR: dataDir, LOG_LEVEL: 'warn' } },
    );
    expect(migrate.stdout).toContain('Database schema is up to date.');
    const owner = new pg.Client({ connectionString: db.url });
    await owner.connect();
    try {
      await owner.query(operationsSql());
      const appUrl = new URL(db.url);
      appUrl.username = 'evidence_service';
      appUrl.password = 'change-me';
      service = await startServiceProcess(
        {
          DATABASE_URL: db.url,
          APP_DATABASE_URL: appUrl.toString(),
          DATA_DIR: dataDir,
          LOG_LEVEL: 'info',
          WORKERS: '1',
        },
        await freePort(),
      );
      await service.ready();
      const rows = await waitFor('the job queue session', async () => {
        const { rows } = await owner.query<{ usename: string; application_name: string }>(
          `select distinct usename, application_name from pg_stat_activity
           where application_name like 'evidence-archive%'`,
        );
        return rows.some((r) => r.application_name === 'evidence-archive-jobs') ? rows : undefined;
      });
      expect(new Set(rows.map((r) => r.usename))).toEqual(new Set(['evidence_service']));
      expect(service.output()).not.toMatch(ESCAPE_WARNING);
      // The custody jobs ran on the queue as the app login (a checkpoint at the workers' start).
      const runs = await waitFor('a checkpoint run', async () => {
        const { rows } = await owner.query<{ outcome: string }>(
          `select outcome from custody_runs where job = 'checkpoint' and finished_at is not null`,
        );
        return rows.length ? rows : undefined;
      });
      expect(runs[0]!.outcome).toBe('ok');
    } finally {
      await owner.end();
    }
  });
});
