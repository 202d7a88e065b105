import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { MIGRATIONS_DIR } from '../../src/db/migrator';
import { createTestDatabase } from '../support/test-db';
import request from 'supertest';
import { createDb, type Db } from '../../src/db/database';
import { bearer, startTestApp, tamperWithBlob, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';
import { readDoc } from '../support/readme';

jest.setTimeout(120_000);

type Counts = Record<
  | 'archived'
  | 'deleted'
  | 'awaitingPurge'
  | 'failingVerification'
  | 'neverVerified'
  | 'activeLegalHolds'
  | 'damaged',
  number
>;

/** What GET /v1/custody/status used to count on every request: the whole table, the truth. */
async function fullCount(db: Db) {
  const { rows } = await sql<Record<string, string>>`select
      count(*) filter (where deleted_at is null) as archived,
      count(*) filter (where deleted_at is not null) as deleted,
      count(*) filter (where deleted_at is not null and blob_purged_at is null) as "awaitingPurge",
      count(*) filter (where deleted_at is null and verify_status <> 'ok') as "failingVerification",
      count(*) filter (where deleted_at is null and verified_at is null) as "neverVerified",
      (select count(*) from legal_holds where released_at is null) as "activeLegalHolds",
      count(*) filter (where deleted_at is null and damaged_at is not null) as damaged
    from evidence_items`.execute(db);
  return Object.fromEntries(Object.entries(rows[0]!).map(([k, v]) => [k, Number(v)])) as Counts;
}

describe('custody status counts without counting the table', () => {
  let app: TestApp;
  let owner: Db;
  beforeAll(async () => {
    app = await startTestApp('fs');
    owner = createDb(app.databaseUrl, 2);
  });
  afterAll(async () => {
    await owner?.destroy();
    await app?.close();
  });

  const status = async () =>
    (await request(app.url).get('/v1/custody/status').set(bearer(app.keys.admin)).expect(200)).body
      .items as Record<string, number>;
  const gauges = async () => {
    const text = (await request(app.url).get('/metrics').set(bearer(app.keys.admin)).expect(200))
      .text;
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^evidence_items\{state="(\w+)"\} (\d+)$/gm)) {
      out[m[1]!] = Number(m[2]);
    }
    return out;
  };
  const archive = async (bytes: Buffer) => {
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'x.mp4',
      content: bytes,
    });
    expect([200, 201]).toContain(res.status);
    return res.json() as { id: string; sha256: string };
  };
  const expectTrue = async () => {
    const truth = await fullCount(owner);
    expect(await status()).toEqual(truth);
    // The gauges share one read per scrape (a second): the next scrape's.
    await new Promise((r) => setTimeout(r, 1100));
    const g = await gauges();
    expect(g).toEqual({
      archived: truth.archived,
      deleted: truth.deleted,
      awaiting_purge: truth.awaitingPurge,
      never_verified: truth.neverVerified,
      damaged: truth.damaged,
    });
    return truth;
  };

  it('stay exact through concurrent ingest, duplicates, deletion, a failed verification and holds', async () => {
    const clips = Array.from({ length: 12 }, () => fakeMedia('mp4', 4000));
    const items = await Promise.all(clips.map(archive));
    await archive(clips[0]!); // the same bytes again: no new item
    expect(await expectTrue()).toMatchObject({ archived: 12, deleted: 0, neverVerified: 12 });

    const damaged = items[1]!;
    await tamperWithBlob(
      app,
      `sha256/${damaged.sha256.slice(0, 2)}/${damaged.sha256.slice(2, 4)}/${damaged.sha256}`,
      fakeMedia('mp4', 4000),
    );
    await request(app.url).post(`/v1/evidence/${damaged.id}/verify`).set(bearer(app.keys.support));
    await request(app.url)
      .delete(`/v1/evidence/${items[2]!.id}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'recorded the wrong bench' })
      .expect(200);
    await request(app.url)
      .post(`/v1/evidence/${items[3]!.id}/holds`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'claim 7' })
      .expect(201);
    expect(await expectTrue()).toMatchObject({
      archived: 11,
      deleted: 1,
      failingVerification: 1,
      damaged: 1,
      activeLegalHolds: 1,
      neverVerified: 10,
    });
  });

  it('fold the rows many writes leave into one, totals unchanged, with writers at work', async () => {
    const before = await fullCount(owner);
    // One count row per archiving statement: 1,100 single-row inserts behind the service's back.
    const keyId = app.keys.ingest.id;
    const insertOne = (n: number) =>
      sql`insert into evidence_items (id, kind, sha256, size_bytes,
        content_type, blob_key, captured_at, received_at, created_by_key_id)
      select gen_random_uuid(), 'photo', encode(sha256(${`fold-${n}`}::bytea), 'hex'), 1,
        'image/jpeg', 'fold/' || ${n}, now(), now(), ${keyId}`.execute(owner);
    for (let n = 0; n < 1100; n++) await insertOne(n);
    const rows = async () =>
      Number(
        (await sql<{ n: string }>`select count(*) n from evidence_item_counts`.execute(owner))
          .rows[0]!.n,
      );
    expect(await rows()).toBeGreaterThan(1000);
    // Reads fold while inserts go on: none is lost or counted twice.
    const writing = Promise.all(Array.from({ length: 20 }, (_, i) => insertOne(2000 + i)));
    await Promise.all([status(), status(), writing]);
    expect(await rows()).toBeLessThan(30);
    const after = await expectTrue();
    expect(after.archived).toBe(before.archived + 1120);
  });

  it('recount as docs/operations.md says after a load that bypassed the triggers', async () => {
    const block = [...readDoc('docs/operations.md').matchAll(/```sql\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.includes('evidence_item_counts'))!;
    const client = new pg.Client({ connectionString: app.databaseUrl });
    await client.connect();
    try {
      await client.query(`set session_replication_role = replica;
        insert into evidence_items (id, kind, sha256, size_bytes, content_type, blob_key,
          captured_at, received_at, created_by_key_id, deleted_at)
        select gen_random_uuid(), 'photo', encode(sha256(('load-' || g)::bytea), 'hex'), 1,
          'image/jpeg', 'load/' || g, now(), now(), '${app.keys.ingest.id}',
          case when g % 10 = 0 then now() end
        from generate_series(1, 500) g;
        set session_replication_role = origin`);
      const truth = await fullCount(owner);
      expect((await status()).archived).not.toBe(truth.archived);
      await client.query(block);
    } finally {
      await client.end();
    }
    await expectTrue();
  });
});

const COUNTS = '2026-12-06T02-00-00_custody-counts';

describe(`migration ${COUNTS}`, () => {
  it('counts what is archived already, and is undone without a trace', async () => {
    const database = await createTestDatabase();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration test: no app types
    const db = new Kysely<any>({
      dialect: new PostgresDialect({
        pool: new pg.Pool({ connectionString: database.url, max: 2 }),
      }),
    });
    const migrator = new Migrator({
      db,
      provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    });
    const migrated = async (step: Promise<{ error?: unknown }>) => {
      const { error } = await step;
      if (error) throw error;
    };
    try {
      const all = await migrator.getMigrations();
      const before = all[all.findIndex((m) => m.name === COUNTS) - 1]!.name;
      await migrated(migrator.migrateTo(before));
      await sql`insert into api_keys (id, name, role, secret_hash) values ('k1', 'PK', 'ingest', 'x')`.execute(
        db,
      );
      await sql`insert into evidence_items (id, kind, sha256, size_bytes, content_type, blob_key,
          captured_at, received_at, created_by_key_id, deleted_at)
        select gen_random_uuid(), 'photo', encode(sha256(('old-' || g)::bytea), 'hex'), 1,
          'image/jpeg', 'old/' || g, now(), now(), 'k1', case when g % 4 = 0 then now() end
        from generate_series(1, 40) g`.execute(db);
      await migrated(migrator.migrateToLatest());
      const totals = async () =>
        (
          await sql<{
            archived: string;
            deleted: string;
          }>`select sum(archived) archived, sum(deleted) deleted from evidence_item_counts`.execute(
            db,
          )
        ).rows[0];
      expect(await totals()).toEqual({ archived: '30', deleted: '10' });
      await migrated(migrator.migrateTo(before));
      const { rows } = await sql<{
        n: string;
      }>`select count(*) n from pg_trigger where tgname like 'evidence_items_count%'`.execute(db);
      expect(rows[0]!.n).toBe('0');
      await migrated(migrator.migrateToLatest());
      expect(await totals()).toEqual({ archived: '30', deleted: '10' });
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});
