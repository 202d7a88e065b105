/**
 * The bench's archive of a busy shop, seeded in SQL: BENCH_ITEMS items (default 10,000,000) over
 * a year, each linked to its order (two items per order) and a complaint id (four per id), so
 * twice as many links; packing clips and photos from 200 stations and 600 operators with their
 * tracking numbers, calls between 1,000,000 customers and 10 shop lines, a complaint on record for
 * one complaint id in ten (its orders, tracking numbers, the customer's phone and calls), long recordings
 * with per-order segments, and the custody states of a real archive (verified, never verified,
 * failing, damaged, deleted, awaiting purge).
 *
 * Fast because it loads like a restore: secondary indexes, keys and foreign keys are dropped
 * and rebuilt after the rows are in (one sorted build each instead of millions of random
 * inserts), foreign keys and triggers do not fire per row (session_replication_role = replica:
 * the rows are consistent by construction; the keys are validated when they are put back), commits
 * do not wait for the WAL, and one VACUUM ANALYZE at the end sets the visibility map (index-only
 * scans) and the planner's statistics. Needs a superuser's URL, as the bench's admin URL is.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ApiKeyRepository } from '../src/access/api-key.repository';
import { ApiKeyService } from '../src/access/api-key.service';
import { AuditRepository } from '../src/base/audit.repository';
import { AuditLog } from '../src/base/audit.service';
import { createLogger } from '../src/base/logger';
import { createDb } from '../src/db/database';
import { migrateToLatest } from '../src/db/migrator';
import { createTestDatabase } from '../tests/support/test-db';

export const SEED_ITEMS = Number(process.env.BENCH_ITEMS ?? 10_000_000);
const STATIONS = 200;
const OPERATORS = 600;
const CUSTOMERS = 1_000_000;
const SHOP_LINES = 10;
/** The tables the seed fills: their keys and indexes are rebuilt after the load. */
const TABLES = ['evidence_items', 'evidence_links', 'complaints', 'segments'];

/**
 * What item g (1..items) is, the same in SQL and here, so a caller can name real values: one in
 * 20 items is a photo, 5 in 20 calls, the rest packing clips.
 */
export const seedShape = {
  kindSql: (g: string) =>
    `case when ${g} % 20 < 14 then 'packing_video' when ${g} % 20 < 19 then 'call_recording' else 'photo' end`,
  /** Orders: items 2o+1 and 2o+2 belong to order ORD-o. */
  orderOf: (item: number) => `ORD-${Math.floor((item - 1) / 2)}`,
  /**
   * Complaint ids: items 4c+1..4c+4; a complaint on record when c % 10 = 3 (a packing clip and
   * three calls with its customer).
   */
  complaintOf: (item: number) => `CMP-${Math.floor((item - 1) / 4)}`,
  station: (n: number) => `PK-${String(n % STATIONS).padStart(3, '0')}`,
  /** The customer of complaint id c (and of the calls among its items). */
  customer: (c: number) => `+4477${String(c % CUSTOMERS).padStart(8, '0')}`,
  shopLine: (n: number) => `+44207946${String(n % SHOP_LINES).padStart(4, '0')}`,
  tracking: (item: number) => `TRK${String(item).padStart(10, '0')}`,
};

export interface Seeded {
  database: { url: string; drop(): Promise<void> };
  dataDir: string;
  support: string;
  db: ReturnType<typeof createDb>;
  seedSecs: number;
  /** Seconds of each step: load, indexes and keys, vacuum. */
  steps: Record<string, number>;
  items: number;
  counts: { items: number; links: number; complaints: number; segments: number };
  /** Orders ORD-0 ... ORD-(orders - 1). */
  orders: number;
  orderOf(i: number): string;
  drop(): Promise<void>;
}

/** A scratch database on the admin URL's server, migrated, with `items` items seeded. */
export async function seedLookups(adminUrl: string, items = SEED_ITEMS): Promise<Seeded> {
  process.env.TEST_DATABASE_URL = adminUrl;
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-seed-'));
  const logger = createLogger('silent');
  const db = createDb(database.url, 10);
  await migrateToLatest(db, logger);
  const audit = new AuditLog({ db, repo: new AuditRepository(), logger });
  const keys = new ApiKeyService({ db, repo: new ApiKeyRepository(), audit, cacheTtlMs: 0 });
  const support = (await keys.create('support', 'bench support')).key;
  const ingest = await keys.create('ingest', 'bench station');
  const orders = Math.max(1, Math.floor(items / 2));

  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const steps: Record<string, number> = {};
  const step = async (name: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    steps[name] = (steps[name] ?? 0) + (performance.now() - t0) / 1000;
  };
  const counts = { items, links: 0, complaints: 0, segments: 0 };
  const t0 = performance.now();
  try {
    await client.query(`set synchronous_commit = off; set maintenance_work_mem = '1GB';
      set max_parallel_maintenance_workers = 2; set work_mem = '256MB';
      set session_replication_role = replica`);
    const rebuild = await dropKeysAndIndexes(client);
    await step('load', async () => {
      counts.links = await loadRows(client, items, ingest.id);
      counts.complaints = Number(
        (await client.query(`select count(*) n from complaints`)).rows[0].n,
      );
      counts.segments = Number((await client.query(`select count(*) n from segments`)).rows[0].n);
    });
    await step('indexes and keys', async () => {
      for (const statement of rebuild) await client.query(statement);
    });
    await client.query(`set session_replication_role = origin`);
    // The triggers did not count the load: the totals as the migration would have counted them.
    await client.query(`delete from evidence_item_counts;
      insert into evidence_item_counts (archived, deleted)
      select count(*) filter (where deleted_at is null), count(*) filter (where deleted_at is not null)
      from evidence_items`);
    await step('vacuum analyze', () =>
      client.query(`vacuum (analyze) ${TABLES.join(', ')}, evidence_item_counts`),
    );
  } finally {
    await client.end();
  }
  const seedSecs = (performance.now() - t0) / 1000;
  return {
    database,
    dataDir,
    support,
    db,
    seedSecs,
    steps,
    items,
    counts,
    orders,
    orderOf: (i: number) => `ORD-${(i * 7919) % orders}`,
    async drop() {
      await db.destroy();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Drops the seeded tables' indexes, keys and foreign keys (and those pointing at them); returns
 * the statements that put them back, indexes first.
 */
async function dropKeysAndIndexes(client: pg.Client): Promise<string[]> {
  const tables = TABLES.map((t) => `'${t}'::regclass`).join(', ');
  const { rows: fks } = await client.query<{ tbl: string; name: string; def: string }>(
    `select conrelid::regclass::text tbl, conname name, pg_get_constraintdef(oid) def
     from pg_constraint where contype = 'f' and (conrelid in (${tables}) or confrelid in (${tables}))`,
  );
  const { rows: keys } = await client.query<{ tbl: string; name: string; def: string }>(
    `select conrelid::regclass::text tbl, conname name, pg_get_constraintdef(oid) def
     from pg_constraint where contype in ('p', 'u') and conrelid in (${tables})`,
  );
  const { rows: indexes } = await client.query<{ name: string; def: string }>(
    `select i.indexrelid::regclass::text name, pg_get_indexdef(i.indexrelid) def
     from pg_index i where i.indrelid in (${tables})
       and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)`,
  );
  for (const f of fks) await client.query(`alter table ${f.tbl} drop constraint ${f.name}`);
  for (const k of keys) await client.query(`alter table ${k.tbl} drop constraint ${k.name}`);
  for (const i of indexes) await client.query(`drop index ${i.name}`);
  return [
    ...keys.map((k) => `alter table ${k.tbl} add constraint ${k.name} ${k.def}`),
    ...indexes.map((i) => i.def),
    ...fks.map((f) => `alter table ${f.tbl} add constraint ${f.name} ${f.def}`),
  ];
}

/** Inserts the rows; returns how many links. */
async function loadRows(client: pg.Client, items: number, keyId: string): Promise<number> {
  const kind = seedShape.kindSql('g');
  const year = 365 * 86400;
  // Item g: captured at an even pace over the last year; its id derived from g, so links can be
  // generated without reading the items back.
  const at = `(now() - interval '365 days' + ((g - 1) * ${year / items}) * interval '1 second')`;
  const id = `md5('item' || g)::uuid`;
  const c = `((g - 1) / 4)`; // its complaint id's number
  const customerOf = (n: string) => `'+4477' || lpad((${n} % ${CUSTOMERS})::text, 8, '0')`;
  const customer = customerOf(c);
  const line = `'+44207946' || lpad((g % ${SHOP_LINES})::text, 4, '0')`;
  const inbound = `(g % 3 <> 0)`;
  await client.query(
    `
    insert into evidence_items (id, kind, sha256, size_bytes, content_type, blob_key,
      original_filename, captured_at, received_at, source, created_by_key_id, call_id,
      from_number, from_number_e164, to_number, to_number_e164, agent_id, direction,
      station_id, operator_id, tracking_number, verified_at, verify_status, verify_detail,
      deleted_at, deletion_reason, deleted_by, blob_purged_at, damaged_at)
    select id, kind, sha, size, ctype, 'sha256/' || sha, name, at, at + ((g % 600) || ' s')::interval,
      source, $1, call_id, from_n, from_n, to_n, to_n, agent, direction, station, operator,
      tracking, verified_at,
      case when verified_at is null then null when g % 100000 = 7 then 'mismatch'
           when g % 100000 = 8 then 'missing' else 'ok' end,
      case when g % 100000 in (7, 8) then '{"bench": true}'::jsonb end,
      deleted_at, case when deleted_at is not null then 'retention' end,
      case when deleted_at is not null then 'retention' end,
      case when deleted_at is not null and g % 1000 <> 3 then deleted_at + interval '1 hour' end,
      case when g % 200000 = 11 then at + interval '20 days' end
    from (
      select g, ${id} id, kind, encode(sha256(int8send(g)), 'hex') sha, at,
        case kind when 'packing_video' then 20000000 + (g % 9973) * 20000
                  when 'call_recording' then 500000 + (g % 997) * 5000 else 800000 + g % 1000 end size,
        case kind when 'packing_video' then 'video/mp4' when 'call_recording' then 'audio/mpeg'
                  else 'image/jpeg' end ctype,
        case kind when 'call_recording' then 'call-' || g || '.mp3' when 'photo' then 'IMG_' || g || '.jpg'
                  else 'clip-' || g || '.mp4' end name,
        case kind when 'call_recording' then 'asterisk' else 'station' end source,
        case when kind = 'call_recording' then 'CALL-' || g end call_id,
        case when kind = 'call_recording' then case when ${inbound} then ${customer} else ${line} end end from_n,
        case when kind = 'call_recording' then case when ${inbound} then ${line} else ${customer} end end to_n,
        case when kind = 'call_recording' then 'AG-' || (g % 50) end agent,
        case when kind = 'call_recording' then case when ${inbound} then 'inbound' else 'outbound' end end direction,
        case when kind <> 'call_recording' then 'PK-' || lpad((g % ${STATIONS})::text, 3, '0') end station,
        case when kind <> 'call_recording' then 'OP-' || (g % ${OPERATORS}) end operator,
        case when kind = 'packing_video' then 'TRK' || lpad(g::text, 10, '0') end tracking,
        -- The newest half percent is not verified yet; the rest was, within the scrub's month.
        case when g <= ${Math.floor(items * 0.995)} then at + ((g % 30) || ' days')::interval end verified_at,
        -- Two percent of the oldest quarter reached retention and were deleted.
        case when g <= ${Math.floor(items / 4)} and g % 50 = 3 then at + interval '90 days' end deleted_at
      from (select g, ${kind} kind, ${at} at from generate_series(1, ${items}) g) s
    ) x`,
    [keyId],
  );
  // Two links per item: its order and its complaint id.
  const links = await client.query(
    `insert into evidence_links (link_type, ref, item_id, created_at, created_by_key_id)
     select t.link_type, case t.link_type when 'order' then 'ORD-' || ((g - 1) / 2)
                              else 'CMP-' || ${c} end, ${id}, now(), $1
     from generate_series(1, ${items}) g, (values ('order'), ('complaint')) t(link_type)`,
    [keyId],
  );
  // A complaint on record for one complaint id in ten: its two orders, the tracking number of its
  // packing clip, its customer's phone (of the three calls among its items), opened three days
  // after its items were captured.
  const first = `(4 * c + 1)`;
  await client.query(`
    insert into complaints (id, status, customer_phone, customer_phone_e164, order_ids, opened_at,
      closed_at, updated_at, tracking_numbers, channel, topic, description)
    select 'CMP-' || c, case when c % 3 = 0 then 'closed' else 'open' end,
      ${customerOf('c')}, ${customerOf('c')},
      array['ORD-' || (2 * c), 'ORD-' || (2 * c + 1)], opened,
      case when c % 3 = 0 then opened + interval '5 days' end, opened,
      array(select 'TRK' || lpad(g::text, 10, '0') from generate_series(${first}, ${first} + 3) g
            where g % 20 < 14),
      (array['marketplace', 'review_site', 'chargeback', 'email', 'phone'])[1 + c % 5],
      (array['packing', 'call', 'delivery', 'product', 'other'])[1 + c % 5],
      'Bench complaint ' || c
    from (select c, now() - interval '365 days'
                 + ((${first} - 1) * ${year / items}) * interval '1 second' + interval '3 days' opened
          from generate_series(3, ${Math.floor((items - 1) / 4)}, 10) c) s`);
  // Long recordings: one packing clip in a hundred also shows five other orders, each a segment.
  await client.query(
    `insert into segments (id, item_id, order_id, tracking_number, start_sec, end_sec,
       created_by_key_id, created_at)
     select md5('segment' || g || '/' || n)::uuid, ${id}, 'ORD-' || ((g * 31 + n * 7919) % ${Math.max(1, Math.floor(items / 2))}),
       'TRKS' || g || '-' || n, n * 60, n * 60 + 45, $1, now()
     from generate_series(1, ${items}) g, generate_series(0, 4) n
     where g % 100 = 1`, // always a packing clip (g % 20 = 1)
    [keyId],
  );
  return links.rowCount ?? 0;
}
