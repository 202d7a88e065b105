import { sql } from 'kysely';
import { createDb, type Db } from '../../src/db/database';
import { outageError } from '../../src/base/errors';
import { createTestDatabase } from '../support/test-db';

/**
 * A query that outlives DATABASE_QUERY_TIMEOUT_MS (a frozen or overloaded server: here a statement
 * that sleeps, on a real PostgreSQL) is an outage for its request, and must leave nothing behind on
 * the connection that the next borrower would inherit: an open transaction above all, where the
 * next request's writes would run unseen, then be committed by a stranger or lost.
 */
describe('a query that times out', () => {
  const TIMEOUT_MS = 400;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;

  beforeAll(async () => {
    database = await createTestDatabase();
    const setup = createDb(database.url, 1);
    await sql`create table notes (id int primary key)`.execute(setup);
    await setup.destroy();
  });
  afterAll(async () => {
    await database?.drop();
  });
  beforeEach(() => {
    // One connection, so that the next query surely gets the one the timed-out query used.
    db = createDb(database.url, 1, () => undefined, undefined, TIMEOUT_MS);
  });
  afterEach(async () => {
    await db.destroy();
  });

  const slowStatementSeconds = (TIMEOUT_MS * 4) / 1000;
  const afterTheSlowStatement = () => new Promise((r) => setTimeout(r, TIMEOUT_MS * 5));

  it('inside a transaction whose rollback times out too: no open transaction is handed on, its write is rolled back', async () => {
    const err = await db
      .transaction()
      .execute(async (tx) => {
        await sql`insert into notes values (1)`.execute(tx);
        await sql`select pg_sleep(${slowStatementSeconds})`.execute(tx);
      })
      .catch((e: unknown) => e);
    // An outage (503 dependency_unavailable), not a bug (500).
    expect(outageError(err)?.code).toBe('dependency_unavailable');
    await afterTheSlowStatement();

    // The next statement runs in a transaction of its own (an inherited one started earlier),
    // and a write made now is committed and stays.
    const { rows } = await sql<{
      fresh: boolean;
    }>`select now() = statement_timestamp() as fresh`.execute(db);
    expect(rows[0]!.fresh).toBe(true);
    await sql`insert into notes values (2)`.execute(db);
    const other = createDb(database.url, 1);
    try {
      const { rows: notes } = await sql<{
        id: number;
      }>`select id from notes order by id`.execute(other);
      // 1 was never committed; 2 is, and is seen from another connection.
      expect(notes.map((n) => n.id)).toEqual([2]);
    } finally {
      await other.destroy();
    }
  });

  it('outside a transaction: the request gets an outage and the connection is replaced', async () => {
    const before = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
    const err = await sql`select pg_sleep(${slowStatementSeconds})`.execute(db).catch((e) => e);
    expect(outageError(err)?.code).toBe('dependency_unavailable');
    const after = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
    expect(after.rows[0]!.pid).not.toBe(before.rows[0]!.pid);
  });

  it('does not leave the statement running on the server after its client gave up', async () => {
    const err = await sql`select pg_sleep(5), 'left-behind'`.execute(db).catch((e) => e);
    expect(outageError(err)?.code).toBe('dependency_unavailable');
    // The server cancels it a second after the client gave up: well before its 5 s were over.
    await new Promise((r) => setTimeout(r, 1000 + TIMEOUT_MS));
    const observer = createDb(database.url, 1);
    try {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where query like '%left-behind%' and pid <> pg_backend_pid()`.execute(observer);
      // (Without the server-side statement_timeout the sleep went on for 5 s, holding a slot.)
      expect(rows[0]!.n).toBe(0);
    } finally {
      await observer.destroy();
    }
  });

  it('a query that answers in time keeps its connection', async () => {
    const before = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
    await sql`select pg_sleep(${TIMEOUT_MS / 4000})`.execute(db);
    const after = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
    expect(after.rows[0]!.pid).toBe(before.rows[0]!.pid);
  });
});
