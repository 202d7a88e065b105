/**
 * npm run bench: ingest throughput and memory, lookup latency, and the cost of custody (reads
 * audited against the same reads unaudited, the scrub against a plain read of the same blobs),
 * each measured side by side with its baseline in the same run on the same machine.
 *
 *   BENCH_INGEST_BYTES (default 1 GiB), BENCH_ITEMS (10,000,000; seeded by ./seed.ts), BENCH_SECONDS (20),
 *   BENCH_CONCURRENCY (32), BENCH_ROUNDS (2; the best round of each side is reported),
 *   BENCH_DOWNLOAD_ITEMS (64) of BENCH_DOWNLOAD_BYTES (1 MiB), BENCH_SCRUB_BYTES (1 GiB) in clips
 *   of BENCH_SCRUB_CLIP_BYTES (32 MiB), BENCH_DRIVERS (s3,fs),
 *   BENCH_ONLY (ingest|lookups|explain|custody|scrub|media|push|tus|bundle|station|cluster|audit,
 *   or several separated by commas; station runs only when named); the media, push, tus, bundle, station, cluster and audit parts'
 *   own settings are in their own files
 *   TEST_DATABASE_URL: an admin URL of the PostgreSQL to use (default: the local server on
 *   127.0.0.1:5432 if it answers, else an embedded one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import pg from 'pg';
import { ApiKeyRepository } from '../src/access/api-key.repository';
import { ApiKeyService } from '../src/access/api-key.service';
import { loadConfig } from '../src/base/config';
import { AuditRepository } from '../src/base/audit.repository';
import { AuditLog } from '../src/base/audit.service';
import { AppContext } from '../src/context';
import { createDb, type Db } from '../src/db/database';
import { EmbeddedDatabase } from '../src/db/embedded-postgres';
import { EvidenceRepository } from '../src/evidence/evidence.repository';
import { createLogger } from '../src/base/logger';
import { createS3Client } from '../src/storage/s3-client';
import type { TestS3 } from '../tests/support/s3-server';
import { benchMedia } from './media-bench';
import { benchPush } from './push-bench';
import { benchTus } from './tus-bench';
import { benchIngest } from './ingest-bench';
import { benchBundle } from './bundle-bench';
import { benchStation } from './station-bench';
import { compareLookups, orderScript, startThinServer, wrkText } from './lookup-bench';
import { SEED_ITEMS, seedLookups, type Seeded } from './seed';
import { explainSearches, printExplained } from './explain';
import { benchCluster } from './cluster-bench';
import { benchAudit } from './audit-bench';
import { createTestDatabase } from '../tests/support/test-db';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // Node 20 is this project's runtime
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const INGEST_BYTES = env('BENCH_INGEST_BYTES', 1024 ** 3);
const SECONDS = env('BENCH_SECONDS', 20);
const CONCURRENCY = env('BENCH_CONCURRENCY', 32);
const ROUNDS = env('BENCH_ROUNDS', 2);
const LOOKUP_CONNECTIONS = (process.env.BENCH_LOOKUP_CONNECTIONS ?? '32,4').split(',').map(Number);
const DOWNLOAD_ITEMS = env('BENCH_DOWNLOAD_ITEMS', 64);
const DOWNLOAD_BYTES = env('BENCH_DOWNLOAD_BYTES', 1024 ** 2);
const SCRUB_BYTES = env('BENCH_SCRUB_BYTES', 1024 ** 3);
const SCRUB_CLIP_BYTES = env('BENCH_SCRUB_CLIP_BYTES', 32 * 1024 ** 2);
// The baseline uploads with exactly the service's default multipart settings.
const S3_DEFAULTS = loadConfig({ STORAGE_DRIVER: 's3', S3_BUCKET: 'defaults' }).storage;
if (S3_DEFAULTS.driver !== 's3') throw new Error('unreachable');
const PART_SIZE = S3_DEFAULTS.s3.partSizeBytes;
const QUEUE_SIZE = S3_DEFAULTS.s3.uploadConcurrency;
const MB = 1e6;
const DRIVERS = (process.env.BENCH_DRIVERS ?? 's3,fs').split(',') as ('s3' | 'fs')[];

const work = mkdtempSync(path.join(tmpdir(), 'evidence-bench-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, digits = 1) => n.toFixed(digits);

async function adminDatabaseUrl(): Promise<{ url: string; stop?: () => Promise<void> }> {
  if (process.env.TEST_DATABASE_URL) return { url: process.env.TEST_DATABASE_URL };
  const local = 'postgres://postgres@127.0.0.1:5432/postgres';
  const client = new pg.Client({ connectionString: local, connectionTimeoutMillis: 1000 });
  try {
    await client.connect();
    await client.end();
    return { url: local };
  } catch {
    const dir = path.join(work, 'pg');
    await fs.mkdir(dir, { recursive: true, mode: 0o755 });
    await fs.chmod(work, 0o755);
    const db = await EmbeddedDatabase.start(dir, 55432, createLogger('warn'));
    return { url: db.connectionString, stop: () => db.stop() };
  }
}

/** Bytes that sniff as MP4, random, generated as they are consumed: no two clips alike. */
function* clipChunks(size: number): Generator<Buffer> {
  const header = Buffer.from('00000018667479706d703432000000006d703432', 'hex');
  const block = randomBytes(Math.min(16 * 1024 * 1024, size));
  for (let written = 0; written < size;) {
    const chunk = Buffer.from(block.subarray(0, Math.min(block.length, size - written)));
    if (written === 0) header.copy(chunk);
    chunk.writeUInt32BE(written / block.length, chunk.length - 4); // no two blocks alike
    yield chunk;
    written += chunk.length;
  }
}

/** A clip file on disk; resolves with its sha256. */
async function makeClip(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  for (const chunk of clipChunks(size)) {
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return hash.digest('hex');
}

interface Service {
  url: string;
  proc: ChildProcess;
  peakRssMb(): Promise<number>;
  stop(): Promise<void>;
}

/** The real service as its own process, so its memory is measured alone. */
async function startService(vars: Record<string, string>): Promise<Service> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const proc = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
      path.resolve(__dirname, '..', 'src', 'main.js'),
    ],
    {
      // No background jobs (scrub, retention, checkpoints): they would compete with what is measured.
      env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', WORKERS: '0', ...vars },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (proc.exitCode !== null) throw new Error('service exited during start-up');
    await sleep(100);
  }
  return {
    url,
    proc,
    async peakRssMb() {
      const status = await fs.readFile(`/proc/${proc.pid}/status`, 'utf8');
      return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
    },
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

async function mintKey(databaseUrl: string, role: 'ingest' | 'support'): Promise<string> {
  const db = createDb(databaseUrl, 1);
  const audit = new AuditLog({ db, repo: new AuditRepository(), logger: createLogger('silent') });
  try {
    const keys = new ApiKeyService({ db, repo: new ApiKeyRepository(), audit, cacheTtlMs: 0 });
    return (await keys.create(role, `bench ${role}`)).key;
  } finally {
    await audit.close(); // links the key's event
    await db.destroy();
  }
}

/**
 * Streams `size` bytes as one multipart upload with these fields; resolves with the new item's id
 * and sha256.
 */
function upload(
  url: string,
  key: string,
  body: Readable,
  size: number,
  fields: Record<string, string> = { kind: 'packing_video', orderId: 'BENCH-1' },
): Promise<{ id: string; sha256: string }> {
  const boundary = `bench${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    Object.entries(fields)
      .map(
        ([name, value]) =>
          `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      )
      .join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n` +
      'Content-Type: video/mp4\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/evidence`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': `multipart/form-data; boundary=${boundary}`,
        'Content-Length': head.length + size + tail.length,
      },
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () =>
        res.statusCode === 201
          ? resolve(JSON.parse(text) as { id: string; sha256: string })
          : reject(new Error(`${res.statusCode} ${text}`)),
      );
    });
    req.on('error', reject);
    req.write(head);
    body.pipe(req, { end: false });
    body.on('end', () => req.end(tail));
    body.on('error', reject);
  });
}

/** Archives `count` fresh random clips of `size` bytes through the API, one after another. */
async function archiveClips(url: string, key: string, count: number, size: number) {
  const items: { id: string; size: number }[] = [];
  for (let i = 0; i < count; i++) {
    const { id } = await upload(url, key, Readable.from(clipChunks(size)), size);
    items.push({ id, size });
  }
  return items;
}

/** GETs over keep-alive connections, each body read to its end; resolves with its length. */
function httpClient(url: string, key: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const get = (p: string) =>
    new Promise<number>((resolve, reject) => {
      http
        .get(`${url}${p}`, { agent, headers: { Authorization: `Bearer ${key}` } }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`GET ${p}: status ${res.statusCode}`));
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve(bytes));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  return { get, close: () => agent.destroy() };
}

async function emptyBucket(s3: TestS3): Promise<void> {
  const cfg = loadConfig(s3.env);
  if (cfg.storage.driver !== 's3') throw new Error('unreachable');
  const client = createS3Client(cfg.storage.s3);
  const { Contents = [] } = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
  for (const o of Contents)
    await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: o.Key! }));
  client.destroy();
}

async function startS3Process(): Promise<TestS3> {
  const proc = spawn(process.execPath, [path.join(__dirname, 's3rver-process.js')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve(d.toString()));
    proc.once('exit', () => reject(new Error('s3rver process exited')));
  });
  const info = JSON.parse(line) as Omit<TestS3, 'close'> & { inRam: boolean };
  console.log(`s3rver in its own process, objects ${info.inRam ? 'in RAM (/dev/shm)' : 'on disk'}`);
  return {
    ...info,
    close: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

async function createScratch(adminUrl: string) {
  process.env.TEST_DATABASE_URL = adminUrl;
  return createTestDatabase();
}

/** `CONCURRENCY` callers each running `op` back to back for SECONDS; latency per call. */
async function load(op: (i: number) => Promise<void>) {
  const latencies: number[] = [];
  const deadline = Date.now() + SECONDS * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline) {
        const t0 = process.hrtime.bigint();
        await op(n++);
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { rps: latencies.length / SECONDS, p50: at(0.5), p99: at(0.99), calls: latencies.length };
}

/** Lookups through the service (CONCURRENCY callers for SECONDS), after one warm-up call each. */
async function serviceLookups(seeded: Seeded, vars: Record<string, string> = {}) {
  const service = await startService({
    DATABASE_URL: seeded.database.url,
    DATA_DIR: seeded.dataDir,
    ...vars,
  });
  const client = httpClient(service.url, seeded.support);
  try {
    const lookup = (i: number) => client.get(`/v1/orders/${seeded.orderOf(i)}/evidence`);
    // Warm the path once so no measurement pays for connection set-up.
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => lookup(i)));
    const latency = await load(async (i) => void (await lookup(i)));
    return { ...latency, calls: latency.calls + CONCURRENCY };
  } finally {
    client.close();
    await service.stop();
  }
}

/**
 * Lookups through the service against the thinnest service doing the same query, under wrk, in
 * alternating rounds at each connection count (bench/lookup-bench.ts).
 */
async function benchLookups(seeded: Seeded) {
  const service = await startService({
    DATABASE_URL: seeded.database.url,
    DATA_DIR: seeded.dataDir,
    LOG_LEVEL: 'info',
  });
  const thin = await startThinServer(seeded.database.url);
  try {
    const script = await orderScript(work, seeded.orders, `Bearer ${seeded.support}`);
    const summary = await compareLookups(
      { service: { url: service.url, pid: service.proc.pid! }, thin },
      script,
      LOOKUP_CONNECTIONS,
      SECONDS,
      ROUNDS,
      (line) => console.log(line),
    );
    const repo = new EvidenceRepository();
    const q = repo.listByOrderQuery(seeded.db, seeded.orderOf(1), 1000).compile();
    const explain = await sql<{ 'QUERY PLAN': string }>`explain (analyze, buffers) ${sql.raw(
      q.sql.replace(/\$(\d+)/g, (_m, n: string) => pgLiteral(q.parameters[Number(n) - 1])),
    )}`.execute(seeded.db);
    return { summary, plan: explain.rows.map((r) => r['QUERY PLAN']).join('\n') };
  } finally {
    await thin.stop();
    await service.stop();
  }
}

const pgLiteral = (v: unknown) =>
  typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`;

type Latency = Awaited<ReturnType<typeof load>>;
interface OnOff<T> {
  off: T & { events: number };
  on: T & { events: number };
}

/**
 * The same measurement with reads unaudited (AUDIT_READS=false) and audited (the default),
 * alternating ROUNDS times so drift (caches, autovacuum) hits both sides; the best of each side
 * wins. `events` counts the audit events the best round of each side wrote for its `calls`
 * requests (warm-up included).
 */
async function auditOnOff<T extends { rps: number; calls: number }>(
  db: Db,
  measure: (vars: Record<string, string>) => Promise<T>,
): Promise<OnOff<T>> {
  const best: Partial<OnOff<T>> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of ['off', 'on'] as const) {
      const before = await auditEvents(db);
      const result = await measure({ AUDIT_READS: String(side === 'on') });
      const events = (await auditEvents(db)) - before;
      if (!best[side] || result.rps > best[side].rps) best[side] = { ...result, events };
    }
  }
  return best as OnOff<T>;
}

async function auditEvents(db: Db): Promise<number> {
  const r = await sql<{ n: string }>`select count(*) n from audit_events`.execute(db);
  return Number(r.rows[0]!.n);
}

/** Full downloads of DOWNLOAD_ITEMS clips archived through the API (disk driver). */
async function benchDownloads(adminUrl: string) {
  const database = await createScratch(adminUrl);
  const dataDir = mkdtempSync(path.join(work, 'data-'));
  const vars = { DATABASE_URL: database.url, DATA_DIR: dataDir };
  const db = createDb(database.url, 2);
  try {
    const archiving = await startService(vars);
    const ingestKey = await mintKey(database.url, 'ingest');
    const support = await mintKey(database.url, 'support');
    const items = await archiveClips(archiving.url, ingestKey, DOWNLOAD_ITEMS, DOWNLOAD_BYTES);
    await archiving.stop();

    return await auditOnOff(db, async (audit) => {
      const service = await startService({ ...vars, ...audit });
      const client = httpClient(service.url, support);
      try {
        const download = async (i: number) => {
          const item = items[i % items.length]!;
          const bytes = await client.get(`/v1/evidence/${item.id}/content`);
          if (bytes !== item.size) throw new Error(`downloaded ${bytes} of ${item.size} bytes`);
          return bytes;
        };
        // Every item once: warm connections, the page cache and the service's code paths.
        for (let i = 0; i < items.length; i += CONCURRENCY) {
          await Promise.all(items.slice(i, i + CONCURRENCY).map((_, j) => download(i + j)));
        }
        let bytes = 0;
        const latency = await load(async (i) => {
          const n = await download(i);
          bytes += n; // not `bytes += await …`, which would add to a stale total
        });
        return { ...latency, calls: latency.calls + items.length, mbs: bytes / MB / SECONDS };
      } finally {
        client.close();
        await service.stop();
      }
    });
  } finally {
    await db.destroy();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * The integrity scrub (the real ScrubService, in this process) against a plain streamed read of
 * the same blobs through the same blob store, alternating rounds; disk driver, page cache warm
 * for both sides, so what differs is the scrub's own work: hashing, checks and audit events.
 */
async function benchScrub(adminUrl: string, s3?: TestS3) {
  const database = await createScratch(adminUrl);
  const dataDir = mkdtempSync(path.join(work, 'scrub-'));
  const vars = { DATABASE_URL: database.url, DATA_DIR: dataDir, ...s3?.env };
  if (s3) await emptyBucket(s3);
  const count = Math.max(1, Math.round(SCRUB_BYTES / SCRUB_CLIP_BYTES));
  try {
    const archiving = await startService(vars);
    const ingestKey = await mintKey(database.url, 'ingest');
    await archiveClips(archiving.url, ingestKey, count, SCRUB_CLIP_BYTES);
    await archiving.stop();
    const config = loadConfig({ ...vars, LOG_LEVEL: 'silent', WORKERS: '0' });
    const ctx = await AppContext.fromConfig(
      config,
      { migrate: false },
      { logger: createLogger('silent') },
    );
    try {
      const rows = await ctx.db
        .selectFrom('evidence_items')
        .select(['blob_key', 'size_bytes'])
        .execute();
      const plainRead = async () => {
        let bytes = 0;
        const t0 = performance.now();
        for (const r of rows) {
          for await (const chunk of await ctx.blobStore.read(r.blob_key, r.size_bytes)) {
            bytes += (chunk as Buffer).length;
          }
        }
        return bytes / MB / ((performance.now() - t0) / 1000);
      };
      const scrub = async () => {
        const t0 = performance.now();
        const report = await ctx.scrub.run({
          intervalMinutes: 60,
          fullPassDays: 30,
          stagingGraceHours: 24,
          limit: rows.length,
        });
        if (!report.ok || report.verified !== rows.length) throw new Error('scrub found problems');
        const whole = (performance.now() - t0) / 1000;
        return { verifyMBs: report.mbPerSecond, wholeRunMBs: report.bytesRead / MB / whole };
      };
      // Cold: the page cache is dropped before each side (needs root), as a scrub meets evidence
      // nobody has read for weeks. Warm: both sides read from memory, the scrub's worst case.
      // (s3rver keeps its objects in RAM: there is no cache to drop.)
      const cold = !s3 && (await dropPageCache());
      const measure = async (dropFirst: boolean) => {
        let best = { plain: 0, verifyMBs: 0, wholeRunMBs: 0 };
        for (let round = 0; round < ROUNDS; round++) {
          if (dropFirst) await dropPageCache();
          const plain = await plainRead();
          if (dropFirst) await dropPageCache();
          const s = await scrub();
          best = {
            plain: Math.max(best.plain, plain),
            verifyMBs: Math.max(best.verifyMBs, s.verifyMBs),
            wholeRunMBs: Math.max(best.wholeRunMBs, s.wholeRunMBs),
          };
        }
        return best;
      };
      const coldFigures = cold ? await measure(true) : undefined;
      await plainRead();
      const warmFigures = await measure(false);
      return { cold: coldFigures, warm: warmFigures, items: rows.length };
    } finally {
      await ctx.close();
    }
  } finally {
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
    if (s3) await emptyBucket(s3);
  }
}

/** Empties the kernel's page cache; false where that is not permitted (not root). */
async function dropPageCache(): Promise<boolean> {
  try {
    await new Promise<void>((resolve, reject) =>
      spawn('sync').on('exit', (code) => (code === 0 ? resolve() : reject(new Error('sync')))),
    );
    await fs.writeFile('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}

const PARTS = [
  'ingest',
  'lookups',
  'explain',
  'custody',
  'scrub',
  'media',
  'push',
  'tus',
  'bundle',
  'station',
  'cluster',
  'audit',
] as const;

const latencyText = (l: Latency) =>
  `${fmt(l.rps, 0)} req/s  p50 ${fmt(l.p50, 2)} ms  p99 ${fmt(l.p99, 2)} ms`;

function printOnOff<T extends Latency>(
  label: string,
  r: OnOff<T>,
  extra: (t: T) => string = () => '',
): void {
  const pad = ' '.repeat(label.length);
  console.log(
    `${label}  audit off  ${extra(r.off)}${latencyText(r.off)}  (${fmt(r.off.events / r.off.calls, 2)} events/request)`,
  );
  console.log(
    `${pad}  audit on   ${extra(r.on)}${latencyText(r.on)}  (${fmt(r.on.events / r.on.calls, 2)} events/request)`,
  );
  console.log(`${pad}  ratio on/off ${fmt(r.on.rps / r.off.rps, 2)} (throughput; target >= 0.8)`);
}

function printScrub(
  label: string,
  f: { plain: number; verifyMBs: number; wholeRunMBs: number } | undefined,
  items: number,
): void {
  if (!f) {
    console.log(`${label}: not measured (dropping the page cache needs root)`);
    return;
  }
  console.log(`${label}:`);
  console.log(`  plain streamed read of the blobs   ${fmt(f.plain)} MB/s`);
  console.log(
    `  scrub re-verification             ${fmt(f.verifyMBs)} MB/s   ratio ${fmt(f.verifyMBs / f.plain, 2)} (target >= 0.9)`,
  );
  console.log(
    `  whole scrub run (+ reconciliation, chain check)  ${fmt(f.wholeRunMBs)} MB/s over ${items} items`,
  );
}

async function main(): Promise<void> {
  // One part, or several separated by commas (e.g. BENCH_ONLY=ingest,lookups,cluster,audit).
  const only = process.env.BENCH_ONLY?.split(',').map((p) => p.trim());
  const unknown = only?.filter((p) => !(PARTS as readonly string[]).includes(p)) ?? [];
  if (unknown.length > 0) {
    throw new Error(`BENCH_ONLY must name parts among ${PARTS.join(', ')}`);
  }
  const runs = (part: (typeof PARTS)[number]) => only === undefined || only.includes(part);
  const admin = await adminDatabaseUrl();
  const s3 = await startS3Process();
  try {
    console.log(
      `evidence archive bench: ${new Date().toISOString()}, node ${process.version}, ${cpus().length} cores`,
    );

    if (runs('ingest')) {
      const clip = path.join(work, 'clip.mp4');
      const sha = await makeClip(clip, INGEST_BYTES);
      await pipeline(createReadStream(clip), async function* (src) {
        for await (const _ of src) yield; // warm the page cache so every run reads from memory
      });
      console.log(
        `\n== ingest of a ${fmt(INGEST_BYTES / 1024 ** 3, 2)} GiB clip, ${ROUNDS} alternating rounds per driver`,
      );
      await benchIngest(
        { work, adminUrl: admin.url, s3, startService, mintKey, createScratch, upload },
        {
          clip,
          sha256: sha,
          bytes: INGEST_BYTES,
          rounds: ROUNDS,
          drivers: DRIVERS,
          partSize: PART_SIZE,
          queueSize: QUEUE_SIZE,
        },
      );
      rmSync(clip, { force: true });
    }

    if (runs('lookups') || runs('custody') || runs('explain')) {
      console.log(
        `\n== ${SEED_ITEMS} items and ${2 * SEED_ITEMS} links, seeded in SQL: support's searches and lookups by order`,
      );
      const seeded = await seedLookups(admin.url);
      try {
        console.log(
          `seeded ${seeded.counts.items} items and ${seeded.counts.links} links in ${fmt(seeded.seedSecs)} s (${Object.entries(
            seeded.steps,
          )
            .map(([k, v]) => `${k} ${fmt(v)} s`)
            .join(', ')})`,
        );
        if (runs('explain')) {
          console.log(
            `\n== support's searches at ${seeded.items} items: EXPLAIN (ANALYZE, BUFFERS)`,
          );
          printExplained(await explainSearches(seeded));
        }
        if (runs('lookups')) {
          console.log(
            `GET /v1/orders/{id}/evidence (reads audited, the default) against the thinnest node:http service running the same compiled query (bench/thin-lookup-server.ts), wrk, ${ROUNDS} alternating rounds of ${SECONDS} s; medians:`,
          );
          const l = await benchLookups(seeded);
          for (const c of LOOKUP_CONNECTIONS) {
            const { service, thin } = l.summary[c]!;
            console.log(`${c} connections, service  ${wrkText(service)}`);
            console.log(`${c} connections, thinnest ${wrkText(thin)}`);
            console.log(
              `${c} connections, ratio    throughput ${fmt(service.rps / thin.rps, 2)} (target >= 0.7 at 32), CPU per request ${fmt(service.cpuMs / thin.cpuMs, 2)}x (target <= 1.5x)${Number(c) === 4 ? `, service p50 ${fmt(service.p50, 2)} ms (target <= 3), p99 ${fmt(service.p99, 2)} ms (target <= 10)` : ''}`,
            );
          }
          console.log(`query plan:\n${l.plan.replace(/^/gm, '  ')}`);
        }
        if (runs('custody')) {
          console.log(
            `\n== auditing of reads: the same service with AUDIT_READS=false (nothing recorded) and on (default), best of ${ROUNDS} alternating rounds`,
          );
          console.log(
            'lookups: each audited lookup appends one evidence.list event (group-committed) before answering',
          );
          printOnOff(
            'GET /v1/orders/{id}/evidence   ',
            await auditOnOff(seeded.db, (audit) => serviceLookups(seeded, audit)),
          );
        }
      } finally {
        await seeded.drop();
      }
    }

    if (runs('custody')) {
      console.log(
        `downloads: ${DOWNLOAD_ITEMS} clips of ${fmt(DOWNLOAD_BYTES / 1024 ** 2, 0)} MiB archived through POST /v1/evidence (disk driver), read whole; each audited download records an evidence.download event before the first byte`,
      );
      printOnOff(
        'GET /v1/evidence/{id}/content  ',
        await benchDownloads(admin.url),
        (r) => `${fmt(r.mbs)} MB/s  `,
      );
    }
    if (runs('custody') || runs('scrub')) {
      console.log(
        `\n== integrity scrub: ${fmt(SCRUB_BYTES / 1024 ** 3, 2)} GiB in clips of ${fmt(SCRUB_CLIP_BYTES / 1024 ** 2, 0)} MiB per driver, best of ${ROUNDS} alternating rounds`,
      );
      for (const driver of DRIVERS) {
        const sc = await benchScrub(admin.url, driver === 's3' ? s3 : undefined);
        if (driver === 's3') printScrub('S3 driver (s3rver, objects in RAM)', sc.warm, sc.items);
        else {
          printScrub('disk, page cache dropped', sc.cold, sc.items);
          printScrub('disk, page cache warm', sc.warm, sc.items);
        }
      }
    }
    // What every service-level part needs: a place to work, the admin service, fresh services.
    const deps = { work, adminUrl: admin.url, startService, mintKey, createScratch, upload };
    if (runs('push')) await benchPush(deps);
    if (runs('bundle')) await benchBundle(deps);
    if (runs('tus')) await benchTus(deps);
    if (runs('cluster')) await benchCluster({ ...deps, seedLookups });
    // Only when asked for: it records for ten minutes.
    if (only?.includes('station')) await benchStation(deps);
    if (runs('audit')) await benchAudit(deps);
    if (runs('media')) {
      await benchMedia({
        ...deps,
        rounds: ROUNDS,
        clipChunks,
        seedLookups,
        httpClient,
        load,
      });
    }
  } finally {
    await s3.close();
    await admin.stop?.();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
