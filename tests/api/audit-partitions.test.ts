import { createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import request from 'supertest';
import { chainHash, GENESIS_HASH, type ChainedEvent } from '../../src/base/audit-chain';
import { loadConfig } from '../../src/base/config';
import { createLogger } from '../../src/base/logger';
import { AppContext } from '../../src/context';
import type { ChainReport } from '../../src/custody/audit-verifier';
import { createDb, type Db } from '../../src/db/database';
import { MIGRATIONS_DIR } from '../../src/db/migrator';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(120_000);

const PARTITIONS = '2026-12-06T01-00-00_audit-partitions';
const monthStart = (d: Date, add = 0) =>
  new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + add, 1));
const partitionOf = (d: Date) =>
  `audit_events_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}`;

/** Which table each event sits in, by seq. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function homes(db: Kysely<any>): Promise<Map<number, string>> {
  const { rows } = await sql<{ seq: string; home: string }>`
    select seq, tableoid::regclass::text as home from audit_events order by seq`.execute(db);
  return new Map(rows.map((r) => [Number(r.seq), r.home]));
}

/**
 * The migration that partitions an existing trail by month: the same events, the same hashes,
 * every month in its own partition, the item index filled from `item_ids`; the chain verifies
 * after it and goes on from its head.
 */
describe(`migration ${PARTITIONS}`, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let db: Kysely<any>;
  let dataDir: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-partitions-'));
    db = new Kysely({
      dialect: new PostgresDialect({
        pool: new pg.Pool({ connectionString: database.url, max: 2 }),
      }),
    });
  });
  afterAll(async () => {
    await db.destroy();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('converts a chained trail over three months: verify-audit passes, histories come from the item index, appends continue the chain', async () => {
    const migrator = new Migrator({
      db,
      provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    });
    const all = await migrator.getMigrations();
    const before = all[all.findIndex((m) => m.name === PARTITIONS) - 1]!.name;
    const { error } = await migrator.migrateTo(before);
    if (error) throw error;

    // 30 events over August, September and October 2026, chained as the service chains them.
    const item = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;
    let prev = GENESIS_HASH;
    for (let seq = 1; seq <= 30; seq++) {
      const event: ChainedEvent = {
        seq,
        occurredAt: new Date(Date.UTC(2026, 7 + Math.floor((seq - 1) / 10), 1 + seq)).toISOString(),
        action: seq % 10 === 1 ? 'evidence.create' : 'evidence.view',
        outcome: 'success',
        actor: { keyId: null, role: 'support', name: 'Ana' },
        itemIds: seq % 3 === 0 ? [item(1), item(2)] : [item(seq % 3)],
        complaintId: null,
        requestId: `r${seq}`,
        clientIp: '10.0.0.9',
        details: { n: seq, nested: { b: 1, a: [true, null] } },
      };
      const hash = chainHash(prev, event);
      await db
        .insertInto('audit_events')
        .values({
          seq,
          occurred_at: event.occurredAt,
          action: event.action,
          outcome: event.outcome,
          actor_key_id: null,
          actor_role: event.actor.role,
          actor_name: event.actor.name,
          item_ids: event.itemIds,
          request_id: event.requestId,
          client_ip: event.clientIp,
          details: JSON.stringify(event.details),
          prev_hash: prev,
          hash,
        })
        .execute();
      prev = hash;
    }
    await db.updateTable('audit_chain_head').set({ seq: 30, hash: prev }).execute();
    const hashesBefore = (
      await db.selectFrom('audit_events').select(['seq', 'hash']).orderBy('seq').execute()
    ).map((r) => `${r.seq}:${r.hash}`);

    const config = loadConfig({
      DATABASE_URL: database.url,
      APP_DATABASE_URL: '',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
    });
    const ctx = await AppContext.fromConfig(
      config,
      { migrate: true },
      { logger: createLogger('silent') },
    );
    try {
      const verify = (): Promise<ChainReport> =>
        ctx.auditVerifier.verify(createPublicKey(ctx.signingKey.publicKeyPem));

      expect(
        (await db.selectFrom('audit_events').select(['seq', 'hash']).orderBy('seq').execute()).map(
          (r) => `${r.seq}:${r.hash}`,
        ),
      ).toEqual(hashesBefore);
      const where = await homes(db);
      expect(where.get(1)).toBe('audit_events_p202608');
      expect(where.get(15)).toBe('audit_events_p202609');
      expect(where.get(30)).toBe('audit_events_p202610');
      const { rows: kind } = await sql<{ relkind: string }>`
        select relkind from pg_class where relname = 'audit_events'`.execute(db);
      expect(kind[0]!.relkind).toBe('p');

      let report = await verify();
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
      expect(report.eventsChecked).toBe(30);

      // Every (item, event) pair, from item_ids.
      const pairs = await db
        .selectFrom('audit_event_items')
        .select(['item_id', 'seq'])
        .orderBy('seq')
        .orderBy('item_id')
        .execute();
      expect(pairs).toHaveLength(40);
      const history = await ctx.auditRepo.listForItem(ctx.db, item(1), 0, 100);
      expect(history.map((r) => r.seq)).toEqual(
        Array.from({ length: 30 }, (_, i) => i + 1).filter((s) => s % 3 !== 2),
      );
      expect((await ctx.auditRepo.listForItem(ctx.db, item(1), 12, 3)).map((r) => r.seq)).toEqual([
        13, 15, 16,
      ]);
      expect((await ctx.auditRepo.creationOf(ctx.db, item(1)))?.seq).toBe(1);
      expect((await ctx.auditRepo.creationOf(ctx.db, item(2)))?.seq).toBe(11);
      expect(await ctx.auditRepo.creationOf(ctx.db, item(3))).toBeUndefined();

      // The chain goes on from the converted head, in this month's partition.
      await ctx.audit.record({
        action: 'audit.read',
        actor: { keyId: null, role: 'admin', name: 'after' },
        itemIds: [item(2)],
      });
      report = await verify();
      expect(report.ok).toBe(true);
      expect(report.eventsChecked).toBe(31);
      expect((await homes(db)).get(31)).toBe(partitionOf(new Date()));
      expect((await ctx.auditRepo.listForItem(ctx.db, item(2), 29, 10)).map((r) => r.seq)).toEqual([
        30, 31,
      ]);
    } finally {
      await ctx.close();
    }

    // Undone: one plain table again, every event kept, the GIN index back.
    const down = await migrator.migrateTo(before);
    if (down.error) throw down.error;
    const { rows: undone } = await sql<{ relkind: string; events: number; gin: boolean }>`
      select c.relkind, (select count(*)::int from audit_events) as events,
             exists (select 1 from pg_indexes where indexname = 'audit_events_item_ids_idx') as gin
        from pg_class c where c.relname = 'audit_events'`.execute(db);
    expect(undone[0]).toEqual({ relkind: 'r', events: 31, gin: true });
  });
});

/**
 * The partitioned trail in service: events over months with and without their own partition,
 * item histories paged through the item index, tampering in any partition found, and the
 * service's own login unable to touch a partition's rows or the partitions themselves.
 */
describe('partitioned audit trail', () => {
  let app: TestApp;
  let owner: Db; // the owner's login: triggers can be switched off (a DBA)
  let appDb: Db; // the service's own login
  let clock = new Date(Date.UTC(2020, 0, 15, 12));
  let itemId: string;
  const thisMonth = monthStart(new Date());
  const inTwoMonths = monthStart(new Date(), 2);

  const verify = (): Promise<ChainReport> =>
    app.ctx.auditVerifier.verify(createPublicKey(app.ctx.signingKey.publicKeyPem));
  const view = () =>
    request(app.url).get(`/v1/evidence/${itemId}`).set(bearer(app.keys.support)).expect(200);

  beforeAll(async () => {
    app = await startTestApp('fs', {}, { now: () => clock });
    owner = createDb(app.databaseUrl, 1);
    appDb = createDb(app.appDatabaseUrl, 1);
    // January 2020 has no partition: its events go to the default one.
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'p.mp4',
      content: fakeMedia('mp4', 3000),
    });
    itemId = res.json().id;
    await view();
    clock = new Date(thisMonth.getTime() + 3600_000);
    await view();
    await view();
    clock = new Date(inTwoMonths.getTime() + 3600_000);
    await view();
    await view();
    await app.ctx.audit.settle(); // every event answered, linked
  });
  afterAll(async () => {
    await owner.destroy();
    await appDb.destroy();
    await app.close();
  });

  it('files events by month (a month without a partition in the default one) and verifies across them', async () => {
    const where = [...(await homes(owner)).values()];
    expect(where).toContain('audit_events_default');
    expect(where).toContain(partitionOf(thisMonth));
    expect(where).toContain(partitionOf(inTwoMonths));
    const report = await verify();
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("pages an item's history through the item index, in seq order with the cursor", async () => {
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await request(app.url)
        .get(`/v1/evidence/${itemId}/audit`)
        .query({ limit: 2, ...(cursor ? { cursor } : {}) })
        .set(bearer(app.keys.support))
        .expect(200);
      seen.push(...res.body.events.map((e: { seq: number }) => e.seq));
      for (const e of res.body.events) expect(e.itemIds).toContain(itemId);
      cursor = res.body.nextCursor;
    } while (cursor);
    const expected = (
      await owner
        .selectFrom('audit_events')
        .select('seq')
        .where('item_ids', '@>', sql<string[]>`array[${itemId}]::text[]`)
        .where('seq', '<=', Math.max(...seen))
        .orderBy('seq')
        .execute()
    ).map((r) => r.seq);
    expect(seen).toEqual(expected);
    // create, five views, and the history reads themselves as they were recorded
    expect(seen.length).toBeGreaterThanOrEqual(6);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    // An index row slipped in for someone else's event does not put that event in the history.
    const other = await owner
      .selectFrom('audit_events')
      .select(['seq', 'occurred_at'])
      .where('action', '=', 'key.create')
      .orderBy('seq')
      .executeTakeFirstOrThrow();
    await appDb
      .insertInto('audit_event_items')
      .values({ item_id: itemId, seq: other.seq, occurred_at: other.occurred_at })
      .execute();
    const history = await app.ctx.auditRepo.listForItem(app.ctx.db, itemId, 0, 1000);
    expect(history.map((r) => r.seq)).not.toContain(other.seq);
    expect(history.map((r) => r.seq)).toEqual(
      seen.concat(history.map((r) => r.seq).slice(seen.length)),
    );
    // ... nor, skipped, leaves the page short: the first page still holds the creation.
    const first = await app.ctx.auditRepo.listForItem(app.ctx.db, itemId, 0, 1);
    expect(first.map((r) => r.seq)).toEqual([seen[0]]);
  });

  it('finds tampering in any partition', async () => {
    const where = await homes(owner);
    const inDefault = [...where].find(([, home]) => home === 'audit_events_default')![0];
    const inMonth = [...where].find(([, home]) => home === partitionOf(inTwoMonths))![0];
    await sql`alter table audit_events disable trigger user`.execute(owner);
    try {
      await owner
        .updateTable('audit_events')
        .set({ actor_name: 'someone else' })
        .where('seq', '=', inDefault)
        .execute();
      await owner.deleteFrom('audit_events').where('seq', '=', inMonth).execute();
    } finally {
      await sql`alter table audit_events enable trigger user`.execute(owner);
    }
    const report = await verify();
    expect(report.ok).toBe(false);
    const found = report.problems.map((p) => `${p.kind}@${p.seq}`);
    expect(found).toContain(`hash_mismatch@${inDefault}`);
    expect(found).toContain(`gap@${inMonth + 1}`);
  });

  it("refuses the service's login any change to a partition's rows, and any change to the partitions", async () => {
    const partitions = ['audit_events_default', partitionOf(thisMonth), partitionOf(inTwoMonths)];
    for (const table of [...partitions, 'audit_events', 'audit_event_items']) {
      for (const statement of [
        sql`update ${sql.table(table)} set seq = seq`,
        sql`delete from ${sql.table(table)}`,
        sql`truncate ${sql.table(table)}`,
      ]) {
        await expect(statement.execute(appDb)).rejects.toThrow(
          /permission denied|append-only|must be owner/,
        );
      }
    }
    for (const table of partitions) {
      await expect(
        sql`alter table audit_events detach partition ${sql.table(table)}`.execute(appDb),
      ).rejects.toThrow(/must be owner/);
      await expect(sql`drop table ${sql.table(table)}`.execute(appDb)).rejects.toThrow(
        /must be owner/,
      );
      // The owner itself meets the append-only triggers on every partition.
      for (const statement of [
        sql`update ${sql.table(table)} set seq = seq`,
        sql`delete from ${sql.table(table)}`,
        sql`truncate ${sql.table(table)}`,
      ]) {
        await expect(statement.execute(owner)).rejects.toThrow(/append-only/);
      }
    }
    await expect(
      sql`select audit_events_add_partition('2030-01-01'::date)`.execute(appDb),
    ).rejects.toThrow(/permission denied/);
    await expect(
      sql`create table audit_events_p203001 partition of audit_events
        for values from ('2030-01-01') to ('2030-02-01')`.execute(appDb),
    ).rejects.toThrow(/permission denied|must be owner/);
  });

  it('adds the coming months through the function the service may call, and never a month the default partition holds', async () => {
    const far = monthStart(new Date(), 3);
    // An empty future month, taken away by the owner: the service's login puts it back.
    await sql`drop table ${sql.table(partitionOf(far))}`.execute(owner);
    expect(await app.ctx.checkpoints.preparePartitions()).toBe(1);
    expect(await app.ctx.checkpoints.preparePartitions()).toBe(0);
    const { rows } = await sql<{ owner: string; triggers: string[] }>`
      select pg_get_userbyid(c.relowner) as owner,
             array(select tgname::text from pg_trigger where tgrelid = c.oid order by tgname)
               as triggers
        from pg_class c where c.relname = ${partitionOf(far)}`.execute(owner);
    expect(rows[0]!.owner).not.toBe('evidence_app');
    expect(rows[0]!.triggers).toEqual(
      expect.arrayContaining(['audit_events_append_only', `${partitionOf(far)}_no_truncate`]),
    );
    // January 2020's events sit in the default partition: that month is never split off.
    expect(
      (
        await sql<{
          made: boolean;
        }>`select audit_events_add_partition('2020-01-01'::date) as made`.execute(owner)
      ).rows[0]!.made,
    ).toBe(false);
    await view(); // appends still go on
  });
});
