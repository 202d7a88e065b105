/**
 * The audit trail part of `npm run bench` (BENCH_ONLY=audit): a trail of BENCH_AUDIT_EVENTS
 * valid chained events (hashed in Node with the project's own chainHash, inserted in batches)
 * spread over BENCH_AUDIT_MONTHS months, so over as many monthly partitions; one event in a
 * hundred names one of ten "hot" items, whose histories grow long (a thousandth of the trail
 * each), the others one of a million items. Then prints the seed time, the table and index
 * sizes, an item's history page (AuditRepository.listForItem, what GET /v1/evidence/{id}/audit
 * reads) and its creation event (what every verification reads) with their plans, the plans of
 * the pages the verifier and GET /v1/audit walk, and the real `verify-audit` CLI's wall time and
 * peak RSS. The database is dropped at the end (50 M events take about 25 GB).
 *
 *   BENCH_AUDIT_EVENTS (50,000,000), BENCH_AUDIT_MONTHS (6)
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely';
import pg from 'pg';
import { chainHash, GENESIS_HASH, type ChainedEvent } from '../src/base/audit-chain';
import { AuditRepository } from '../src/base/audit.repository';
import { PG_TYPES, type Database } from '../src/db/database';
import { migrateToLatest } from '../src/db/migrator';
import { createLogger } from '../src/base/logger';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const EVENTS = env('BENCH_AUDIT_EVENTS', 50_000_000);
const MONTHS = env('BENCH_AUDIT_MONTHS', 6);
const BATCH = 20_000;
const HOT = 10;
const POOL = 1_000_000;
const FIRST_MONTH = Date.UTC(2026, 5, 1); // June 2026
const fmt = (n: number, digits = 1) => n.toFixed(digits);

export interface AuditBenchDeps {
  work: string;
  adminUrl: string;
  createScratch(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }>;
}

const itemId = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const hotItem = (h: number) => `11111111-0000-4000-8000-${h.toString(16).padStart(12, '0')}`;

/** Event `seq` of the synthetic trail (time strictly follows seq, as under the head lock). */
function eventAt(seq: number, span: number): ChainedEvent {
  const at = new Date(FIRST_MONTH + Math.floor(((seq - 1) * span) / EVENTS)).toISOString();
  if (seq <= HOT) {
    return {
      seq,
      occurredAt: at,
      action: 'evidence.create',
      outcome: 'success',
      actor: { keyId: 'k_bench_ingest', role: 'ingest', name: 'bench station' },
      itemIds: [hotItem(seq - 1)],
      complaintId: null,
      requestId: `r${seq}`,
      clientIp: '10.0.0.2',
      details: { sha256: 'ab'.repeat(32), size: 1000 },
    };
  }
  const item = seq % 100 === 0 ? hotItem((seq / 100) % HOT) : itemId((seq * 2654435761) % POOL);
  return {
    seq,
    occurredAt: at,
    action: 'evidence.view',
    outcome: 'success',
    actor: { keyId: 'k_bench_support', role: 'support', name: 'bench support' },
    itemIds: [item],
    complaintId: null,
    requestId: `r${seq}`,
    clientIp: '10.0.0.1',
    details: {},
  };
}

async function seed(client: pg.Client): Promise<{ head: { seq: number; hash: string } }> {
  const span = Date.UTC(2026, 5 + MONTHS, 1) - FIRST_MONTH;
  // The job that adds the coming months ran every month: one partition per month seeded.
  await client.query(
    `select audit_events_add_partition(m::date)
       from generate_series($1::date, $2::date, interval '1 month') m`,
    [new Date(FIRST_MONTH), new Date(Date.UTC(2026, 5 + MONTHS - 1, 1))],
  );
  // The item index is built after the events (a sort, not 50 M random inserts); dropped and
  // re-added exactly as the migration made it.
  await client.query('alter table audit_event_items drop constraint audit_event_items_pkey');
  let prev = GENESIS_HASH;
  let pending: Promise<unknown> = Promise.resolve();
  for (let from = 1; from <= EVENTS; from += BATCH) {
    const cols: unknown[][] = Array.from({ length: 13 }, () => []);
    for (let seq = from; seq < Math.min(from + BATCH, EVENTS + 1); seq++) {
      const e = eventAt(seq, span);
      const hash = chainHash(prev, e);
      const row = [
        seq,
        e.occurredAt,
        e.action,
        e.actor.keyId,
        e.actor.role,
        e.actor.name,
        e.itemIds[0],
        e.requestId,
        e.clientIp,
        JSON.stringify(e.details),
        prev,
        hash,
        e.outcome,
      ];
      for (let i = 0; i < row.length; i++) cols[i]!.push(row[i]);
      prev = hash;
    }
    // The previous batch is written while this one is hashed: PostgreSQL on one core, Node on the other.
    await pending;
    pending = client.query(
      `insert into audit_events (seq, occurred_at, action, actor_key_id, actor_role, actor_name,
         item_ids, request_id, client_ip, details, prev_hash, hash, outcome)
       select seq, at, action, k, r, n, array[item], req, ip, d::jsonb, p, h, o
         from unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
           $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
           $13::text[]) as t(seq, at, action, k, r, n, item, req, ip, d, p, h, o)`,
      cols,
    );
    if ((from - 1) % 5_000_000 === 0 && from > 1) {
      console.log(`  ... ${from - 1} events`);
    }
  }
  await pending;
  await client.query(`insert into audit_event_items (item_id, seq, occurred_at)
    select i, seq, occurred_at from audit_events, unnest(item_ids) i`);
  await client.query(`alter table audit_event_items
    add constraint audit_event_items_pkey primary key (item_id, seq)`);
  await client.query('update audit_chain_head set seq = $1, hash = $2', [EVENTS, prev]);
  await client.query('vacuum analyze audit_events');
  await client.query('vacuum analyze audit_event_items');
  return { head: { seq: EVENTS, hash: prev } };
}

/** Peak RSS of a child process: its VmHWM, read until it exits. */
async function runMeasured(
  cmd: string,
  args: string[],
  vars: Record<string, string>,
): Promise<{ code: number | null; secs: number; peakMb: number; out: string }> {
  const t0 = process.hrtime.bigint();
  const proc = spawn(cmd, args, { env: { ...process.env, ...vars } });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let peakKb = 0;
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
    } catch {
      // exited between two polls
    }
  }, 100);
  const code = await new Promise<number | null>((r) => proc.on('exit', r));
  clearInterval(poll);
  return { code, secs: Number(process.hrtime.bigint() - t0) / 1e9, peakMb: peakKb / 1024, out };
}

export async function benchAudit(deps: AuditBenchDeps): Promise<void> {
  console.log(
    `\n== audit trail: ${EVENTS} chained events over ${MONTHS} monthly partitions, ${HOT} items with ${EVENTS / 1000} events each`,
  );
  const database = await deps.createScratch(deps.adminUrl);
  const dataDir = mkdtempSync(path.join(deps.work, 'audit-'));
  const captured: CompiledQuery[] = [];
  const pool = new pg.Pool({ connectionString: database.url, max: 2, types: PG_TYPES }); // as the service's pools read values
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (e) => {
      if (e.level === 'query') captured.push(e.query);
    },
  });
  const client = new pg.Client({ connectionString: database.url, types: PG_TYPES });
  try {
    await migrateToLatest(db, createLogger('silent'));
    await client.connect();
    const t0 = Date.now();
    await seed(client);
    console.log(`seeded ${EVENTS} events in ${fmt((Date.now() - t0) / 1000)} s`);

    const { rows: sizes } = await client.query<{ name: string; heap: string; indexes: string }>(`
      select c.relname as name,
             pg_size_pretty(pg_table_size(c.oid)) as heap,
             pg_size_pretty(pg_indexes_size(c.oid)) as indexes
        from pg_class c
       where c.relname like 'audit_event%' and c.relkind = 'r'
       order by c.relname`);
    console.log('tables (heap + toast, indexes):');
    for (const s of sizes) {
      console.log(`  ${s.name.padEnd(28)} ${s.heap.padStart(8)}  ${s.indexes.padStart(8)}`);
    }

    const repo = new AuditRepository();
    const hot = hotItem(3);
    const explain = async (label: string, run: () => Promise<unknown>) => {
      captured.length = 0;
      const times: number[] = [];
      for (let i = 0; i < 7; i++) {
        const t = process.hrtime.bigint();
        await run();
        times.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      const q = captured.at(-1)!;
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(
        `explain (analyze, buffers, costs off) ${q.sql}`,
        q.parameters as unknown[],
      );
      times.sort((a, b) => a - b);
      console.log(
        `${label}: median ${fmt(times[3]!, 2)} ms, max ${fmt(times[6]!, 2)} ms (7 runs)\n${rows
          .map((r) => `    ${r['QUERY PLAN']}`)
          .join('\n')}`,
      );
    };
    const page = await repo.listForItem(db, hot, 0, 101);
    const middle = Math.floor(EVENTS / 2);
    await explain(`item history, first page of 100 (hot item, ${EVENTS / 1000} events)`, () =>
      repo.listForItem(db, hot, 0, 101),
    );
    await explain('item history, a page from the middle of its history', () =>
      repo.listForItem(db, hot, middle, 101),
    );
    await explain('item history, an ordinary item (about 50 events)', () =>
      repo.listForItem(db, itemId(12345), 0, 101),
    );
    await explain('creation event of an item (every verification)', () => repo.creationOf(db, hot));
    await explain('verifier page (pageAfter, 5000 events from the middle)', () =>
      repo.pageAfter(db, middle, 5000),
    );
    await explain('checkpoint/bundle range (eventsAfter, 5000 events up to a seq)', () =>
      repo.eventsAfter(db, middle, middle + 100_000, 5000),
    );
    await explain('GET /v1/audit page (list, from/to, 100 events)', () =>
      repo.list(
        db,
        { from: new Date(Date.UTC(2026, 7, 1)), to: new Date(Date.UTC(2026, 8, 1)) },
        middle,
        101,
      ),
    );
    if (page.length === 0) throw new Error('the hot item has no history');

    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const cli = path.resolve(__dirname, '..', 'src', 'cli', 'verify-audit.cli.js');
    const v = await runMeasured(process.execPath, [cli], {
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      STORAGE_DRIVER: 'fs',
      CUSTODY_SIGNING_KEY: pem,
      LOG_LEVEL: 'warn',
    });
    console.log(
      `verify-audit (the CLI, ${EVENTS} events): exit ${v.code}, ${fmt(v.secs)} s wall (${fmt(EVENTS / v.secs / 1000, 0)} k events/s), peak RSS ${fmt(v.peakMb, 0)} MB`,
    );
    console.log(v.out.replace(/^/gm, '    ').trimEnd());
  } finally {
    await client.end().catch(() => undefined);
    await db.destroy();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
