import { randomBytes } from 'node:crypto';
import pg from 'pg';

function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set (jest globalSetup sets it)');
  return url;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>, url = adminUrl()): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A fresh, empty database on the test server; each suite gets its own. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `evidence_test_${randomBytes(6).toString('hex')}`;
  await withAdmin((c) => c.query(`create database ${name}`));
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () =>
      withAdmin((c) => c.query(`drop database if exists ${name} with (force)`)).then(
        () => undefined,
      ),
  };
}

/** The app's role (the migrations make it too; made here first, as the embedded server does). */
export const APP_ROLE = 'evidence_app';

export interface AppLogin {
  user: string;
  password: string;
  /** The database's URL with this login's user and password. */
  url(databaseUrl: string): string;
  drop(): Promise<void>;
}

/**
 * A login of the service's own, as an operator makes it for an external PostgreSQL
 * (docs/operations.md): it owns nothing and holds the app's role (on PostgreSQL 16+ without being
 * able to SET ROLE to it). Random name and password; `drop` removes it. On the test server, or
 * the server of `serverUrl` (a superuser's URL).
 */
export async function createAppLogin(serverUrl = adminUrl()): Promise<AppLogin> {
  const user = `evidence_login_${randomBytes(6).toString('hex')}`;
  const password = randomBytes(18).toString('hex');
  await withAdmin(async (c) => {
    await c.query(`do $$ begin
        create role ${APP_ROLE} nologin;
      exception when duplicate_object or unique_violation then null;
      end $$`);
    await c.query(`create role ${user} login password '${password}'`);
    const { rows } = await c.query<{ v: number }>(
      `select current_setting('server_version_num')::int as v`,
    );
    await c.query(
      `grant ${APP_ROLE} to ${user}${rows[0]!.v >= 160000 ? ' with inherit true, set false' : ''}`,
    );
  }, serverUrl);
  return {
    user,
    password,
    url(databaseUrl) {
      const url = new URL(databaseUrl);
      url.username = user;
      url.password = password;
      return url.toString();
    },
    drop: () =>
      withAdmin((c) => c.query(`drop role if exists ${user}`), serverUrl).then(() => undefined),
  };
}
