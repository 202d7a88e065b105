/**
 * The plans of support's searches on the seeded archive: each read the service runs for a lookup
 * by order or complaint, the search by phone, station and time range, the one search box, a
 * complaint's workspace (timeline) and suggestions, and the custody status counts. The queries are
 * the repositories' own (captured from Kysely's log as the repository methods run them), each
 * EXPLAINed with ANALYZE and BUFFERS; a sequential scan of a big table or a sort of more than
 * SORT_LIMIT rows is called out. The status counts are timed against the full count(*) they
 * replaced.
 */
import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely';
import pg from 'pg';
import { ComplaintRepository } from '../src/complaints/complaint.repository';
import { CustodyStatusRepository } from '../src/custody/custody-status.repository';
import type { Database } from '../src/db/database';
import { EvidenceRepository } from '../src/evidence/evidence.repository';
import { SegmentRepository } from '../src/evidence/segment.repository';
import { seedShape, type Seeded } from './seed';

/** A sort of more rows than this is a sort of a large set. */
const SORT_LIMIT = 5000;
/** Tables whose sequential scan is a defect (the small ones may be scanned). */
const BIG_TABLES = ['evidence_items', 'evidence_links', 'complaints', 'segments', 'audit_events'];
const DAY_MS = 86_400_000;

/** The count(*) over every item that GET /v1/custody/status and /metrics ran before. */
const FULL_COUNT = `select
    count(*) filter (where deleted_at is null) as archived,
    count(*) filter (where deleted_at is not null) as deleted,
    count(*) filter (where deleted_at is not null and blob_purged_at is null) as unpurged,
    count(*) filter (where deleted_at is null and verify_status <> 'ok') as failing,
    count(*) filter (where deleted_at is null and verified_at is null) as never_verified,
    (select count(*) from legal_holds where released_at is null) as holds,
    count(*) filter (where deleted_at is null and damaged_at is not null) as damaged
  from evidence_items`;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

export interface Explained {
  name: string;
  ms: number;
  /** Sequential scans of big tables and sorts of large sets found in the plan. */
  problems: string[];
  plan: string[];
}

/** EXPLAIN (ANALYZE, BUFFERS) of every query `run` sends through the repositories. */
async function explainEach(
  pool: pg.Pool,
  name: string,
  run: (db: Kysely<Database>) => Promise<unknown>,
): Promise<Explained[]> {
  const queries: CompiledQuery[] = [];
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (e) => void (e.level === 'query' && queries.push(e.query)),
  });
  await run(db);
  const out: Explained[] = [];
  for (const [i, q] of queries.entries()) {
    out.push(
      await explain(pool, queries.length > 1 ? `${name} (${i + 1})` : name, q.sql, [
        ...q.parameters,
      ]),
    );
  }
  return out;
}

async function explain(
  pool: pg.Pool,
  name: string,
  text: string,
  params: unknown[] = [],
): Promise<Explained> {
  const json = await pool.query(`explain (analyze, buffers, format json) ${text}`, params);
  const top = (json.rows[0]['QUERY PLAN'] as { Plan: PlanNode; 'Execution Time': number }[])[0]!;
  const problems: string[] = [];
  const walk = (n: PlanNode) => {
    if (n['Node Type'] === 'Seq Scan' && BIG_TABLES.includes(n['Relation Name'] ?? '')) {
      problems.push(`seq scan of ${n['Relation Name']}`);
    }
    // What a sort reads, not what it returns (a top-N sort under a LIMIT returns few).
    const rows = (n.Plans ?? []).reduce((sum, c) => sum + c['Actual Rows'] * c['Actual Loops'], 0);
    if (n['Node Type'].includes('Sort') && rows > SORT_LIMIT) problems.push(`sort of ${rows} rows`);
    n.Plans?.forEach(walk);
  };
  walk(top.Plan);
  const textPlan = await pool.query(`explain (analyze, buffers) ${text}`, params);
  const plan = (textPlan.rows as { 'QUERY PLAN': string }[])
    .map((r) => r['QUERY PLAN'])
    .filter((l) => !/^\s*(Planning|Execution|Buffers|I\/O Timings|Planning Time)/.test(l.trim()))
    .filter((l) => !/^\s*(Buffers|Planning):/.test(l))
    .map((l) => l.replace(/\s*\(cost=[^)]*\)/, ''));
  return { name, ms: top['Execution Time'], problems, plan };
}

/** The searches' plans on the seeded database, and the status count before and after. */
export async function explainSearches(seeded: Seeded): Promise<{
  explained: Explained[];
  status: { fullCountMs: number; countsMs: number };
}> {
  const pool = new pg.Pool({ connectionString: seeded.database.url, max: 2 });
  const evidence = new EvidenceRepository();
  const segments = new SegmentRepository();
  const complaints = new ComplaintRepository();
  const custody = new CustodyStatusRepository();
  const n = seeded.items;
  // Values that exist: an item in the middle of the year, its order and complaint (on record:
  // complaint ids whose number ends in 3), its customer and a busy shop line.
  const item = 4 * (10 * Math.floor(n / 80) + 3) + 1;
  const c = Math.floor((item - 1) / 4);
  const complaintId = `CMP-${c}`;
  const order = seedShape.orderOf(item);
  const customer = seedShape.customer(c);
  const line = seedShape.shopLine(5); // calls are items 14..18 of every 20: lines 4..8
  const station = seedShape.station(21); // packing: items 0..13 of every 20
  const yearAgo = Date.now() - 365 * DAY_MS;
  const mid = new Date(yearAgo + 182 * DAY_MS);
  const week = { from: mid, to: new Date(mid.getTime() + 7 * DAY_MS) };
  try {
    const explained: Explained[] = [];
    const each = async (name: string, run: (db: Kysely<Database>) => Promise<unknown>) =>
      explained.push(...(await explainEach(pool, name, run)));

    await each('GET /v1/orders/{id}/evidence', (db) => evidence.listByOrder(db, order));
    await each('GET /v1/complaints/{id}/evidence', (db) =>
      evidence.listByLink(db, 'complaint', complaintId, 1000),
    );
    await each('search ?orderId=', (db) => evidence.search(db, { orderId: order }, undefined, 51));
    await each("search ?phone= (a customer's, a few calls)", (db) =>
      evidence.search(db, { phoneE164: customer }, undefined, 51),
    );
    await each(`search ?phone= (a shop line, ${Math.round(n / 20)} calls)`, (db) =>
      evidence.search(db, { phoneE164: line }, undefined, 51),
    );
    await each('search ?stationId=&from=&to= (a week)', (db) =>
      evidence.search(db, { stationId: station, ...week }, undefined, 51),
    );
    await each('search ?stationId=&from=&to= next page', async (db) => {
      const page = await evidence.search(db, { stationId: station, ...week }, undefined, 51);
      const last = page.at(-1);
      if (!last) return;
      // Only the second page's query is of interest; the first is explained above.
      await evidence.search(
        db,
        { stationId: station, ...week },
        { capturedAt: new Date(last.captured_at), id: last.id },
        51,
      );
    });
    await each('search ?from=&to= (a week)', (db) => evidence.search(db, week, undefined, 51));
    await each('search ?kind=photo', (db) => evidence.search(db, { kind: 'photo' }, undefined, 51));
    await each('GET /v1/lookup?q= (an order: refs, complaints, tracking, segments)', async (db) => {
      const spellings = [order, order.toUpperCase()];
      await evidence.linkedRefs(db, 'order', spellings);
      await evidence.linkedRefs(db, 'complaint', spellings);
      await complaints.ordersOfAny(db, spellings);
      await evidence.listByTrackingNumbers(db, spellings, 200);
      await segments.listForOrdersOrTracking(db, [], spellings, 200);
    });
    await each('GET /v1/lookup?q= (a phone number)', (db) =>
      evidence.search(db, { phoneE164: customer }, undefined, 200),
    );
    const plain = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    const complaint = (await complaints.find(plain, complaintId))!;
    await each('GET /v1/complaints/{id} (workspace, timeline)', async (db) => {
      await complaints.find(db, complaintId);
      const rows = await evidence.listByLinks(db, 'order', complaint.order_ids, 1000);
      await evidence.listByLink(db, 'complaint', complaintId, 1000);
      await segments.listForOrdersOrTracking(db, complaint.order_ids, [], 1000);
      const times = [new Date(complaint.opened_at), ...rows.map((r) => new Date(r.captured_at))];
      await evidence.listCallsWithNumber(
        db,
        complaint.customer_phone_e164!,
        new Date(Math.min(...times.map(Number)) - 14 * DAY_MS),
        new Date(Math.max(...times.map(Number)) + 14 * DAY_MS),
        1000,
      );
    });
    await each('GET /v1/complaints/{id}/suggestions (beyond the workspace)', async (db) => {
      await segments.listForOrdersOrTracking(
        db,
        complaint.order_ids,
        complaint.tracking_numbers,
        1000,
      );
      await evidence.listByTrackingNumbers(db, complaint.tracking_numbers, 1000);
    });
    await each('GET /v1/custody/status and /metrics: counts', (db) => custody.counts(db));
    await each('GET /v1/custody/status: failing items', (db) => custody.failing(db, 100));
    await each('/metrics: failing by status', (db) => custody.failingByStatus(db));

    // The status counts, best of three each, against the full count they replaced.
    const best = async (text: string) => {
      let ms = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await pool.query(text);
        ms = Math.min(ms, performance.now() - t0);
      }
      return ms;
    };
    const countsSql = await (async () => {
      let captured = '';
      const db = new Kysely<Database>({
        dialect: new PostgresDialect({ pool }),
        log: (e) => void (e.level === 'query' && (captured = e.query.sql)),
      });
      await custody.counts(db);
      return captured;
    })();
    const status = { fullCountMs: await best(FULL_COUNT), countsMs: await best(countsSql) };
    return { explained, status };
  } finally {
    await pool.end();
  }
}

/** The report: each query's time, plan shape, and what is wrong with it, if anything. */
export function printExplained(r: Awaited<ReturnType<typeof explainSearches>>): void {
  for (const e of r.explained) {
    const verdict = e.problems.length ? `PROBLEM: ${e.problems.join(', ')}` : 'index scans only';
    console.log(`${e.name}: ${e.ms.toFixed(2)} ms, ${verdict}`);
    for (const line of e.plan) console.log(`    ${line}`);
  }
  const bad = r.explained.filter((e) => e.problems.length > 0).length;
  console.log(
    `${r.explained.length} queries, ${bad} with a sequential scan of a big table or a sort of more than ${SORT_LIMIT} rows`,
  );
  console.log(
    `custody status counts: ${r.status.countsMs.toFixed(2)} ms (maintained totals, partial indexes); the full count(*) it replaced: ${r.status.fullCountMs.toFixed(1)} ms`,
  );
}
