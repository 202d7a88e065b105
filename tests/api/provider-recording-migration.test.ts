import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { MIGRATIONS_DIR } from '../../src/db/migrator';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(60_000);

const GAPS = '2026-12-04T02-00-00_provider-recording-gaps';

/**
 * The provider-recording-gaps migration over a database that already holds recordings, stored in
 * an order other than the order they were received in (as updates leave them): its `seq` must
 * follow received_at, and undoing it must never delete the record of an `absent` recording.
 */
describe(`migration ${GAPS}`, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let db: Kysely<any>;
  let migrator: Migrator;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = new Kysely({
      dialect: new PostgresDialect({
        pool: new pg.Pool({ connectionString: database.url, max: 2 }),
      }),
    });
    migrator = new Migrator({
      db,
      provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    });
  });
  afterAll(async () => {
    await db.destroy();
    await database.drop();
  });

  const migrated = async (step: Promise<{ error?: unknown }>) => {
    const { error } = await step;
    if (error) throw error;
  };
  const bySeq = async () =>
    (
      await sql<{
        recording_sid: string;
        seq: string;
      }>`select recording_sid, seq from provider_recordings order by seq`.execute(db)
    ).rows;
  const physicalOrder = async () =>
    (
      await sql<{
        recording_sid: string;
      }>`select recording_sid from provider_recordings order by ctid`.execute(db)
    ).rows.map((r) => r.recording_sid);

  it('numbers existing recordings in the order received, continues after them, and refuses to undo while an absent recording exists', async () => {
    const all = await migrator.getMigrations();
    const before = all[all.findIndex((m) => m.name === GAPS) - 1]!.name;
    await migrated(migrator.migrateTo(before));

    // Received in the order RE1, RE2, RE3, RE4; stored in another order.
    const at = (minute: number) => new Date(Date.UTC(2026, 11, 1, 10, minute));
    for (const [sidValue, minute] of [
      ['RE3', 3],
      ['RE1', 1],
      ['RE4', 4],
      ['RE2', 2],
    ] as const) {
      await db
        .insertInto('provider_recordings')
        .values({
          provider: 'twilio',
          recording_sid: sidValue,
          media_url: `https://api.twilio.com/Recordings/${sidValue}`,
          status: 'queued',
          received_at: at(minute),
        })
        .execute();
    }
    // A fetch's update rewrites RE1's row at the end of the table.
    await sql`update provider_recordings set status = 'failed' where recording_sid = 'RE1'`.execute(
      db,
    );
    expect(await physicalOrder()).toEqual(['RE3', 'RE4', 'RE2', 'RE1']);

    await migrated(migrator.migrateTo(GAPS));
    expect(await bySeq()).toEqual([
      { recording_sid: 'RE1', seq: '1' },
      { recording_sid: 'RE2', seq: '2' },
      { recording_sid: 'RE3', seq: '3' },
      { recording_sid: 'RE4', seq: '4' },
    ]);
    // New announcements continue after them, numbered by the database alone.
    await db
      .insertInto('provider_recordings')
      .values({ provider: 'twilio', recording_sid: 'RE5', media_url: null, status: 'absent' })
      .execute();
    expect((await bySeq()).at(-1)).toEqual({ recording_sid: 'RE5', seq: '5' });
    await expect(
      sql`insert into provider_recordings (provider, recording_sid, media_url, status, seq)
        values ('twilio', 'RE6', 'https://x.test/', 'queued', 99)`.execute(db),
    ).rejects.toThrow(/generated always|GENERATED ALWAYS|cannot insert/i);

    // Undoing it would drop the absent recording: refused, and nothing is changed.
    const { error } = await migrator.migrateTo(before);
    expect(String(error)).toMatch(/Refusing to undo .*1 recording\(s\) with status 'absent'/);
    expect((await bySeq()).map((r) => r.recording_sid)).toEqual([
      'RE1',
      'RE2',
      'RE3',
      'RE4',
      'RE5',
    ]);
    expect((await migrator.getMigrations()).find((m) => m.name === GAPS)!.executedAt).toBeDefined();

    // Once someone has deliberately removed it, the way back is open, and forward again.
    await sql`delete from provider_recordings where status = 'absent'`.execute(db);
    await migrated(migrator.migrateTo(before));
    const columns = await sql<{
      column_name: string;
    }>`select column_name from information_schema.columns where table_name = 'provider_recordings' and column_name = 'seq'`.execute(
      db,
    );
    expect(columns.rows).toEqual([]);
    await sql`update provider_recordings set attempts = attempts + 1 where recording_sid = 'RE2'`.execute(
      db,
    );
    await migrated(migrator.migrateTo(GAPS));
    expect(await bySeq()).toEqual([
      { recording_sid: 'RE1', seq: '1' },
      { recording_sid: 'RE2', seq: '2' },
      { recording_sid: 'RE3', seq: '3' },
      { recording_sid: 'RE4', seq: '4' },
    ]);
    await migrated(migrator.migrateToLatest());
  });
});
