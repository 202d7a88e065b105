/**
 * npm run bench: ingest throughput and memory, and lookup latency, each measured side by side with
 * a baseline doing the same work without the service, in the same run on the same machine.
 *
 *   BENCH_INGEST_BYTES (default 1 GiB), BENCH_ITEMS (1,000,000), BENCH_SECONDS (20),
 *   BENCH_CONCURRENCY (32), BENCH_ROUNDS (2; the best round of each side is reported)
 *   TEST_DATABASE_URL: an admin URL of the PostgreSQL to use (default: the local server on
 *   127.0.0.1:5432 if it answers, else an embedded one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CopyObjectCommand, DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { sql } from 'kysely';
import pg from 'pg';
import { ApiKeyRepository } from '../src/access/api-key.repository';
import { ApiKeyService } from '../src/access/api-key.service';
import { loadConfig } from '../src/config';
import { createDb } from '../src/db/database';
import { EmbeddedDatabase } from '../src/db/embedded-postgres';
import { EvidenceRepository } from '../src/evidence/evidence.repository';
import { createLogger } from '../src/logger';
import { createS3Client } from '../src/storage/blob-store.s3';
import type { TestS3 } from '../tests/support/s3-server';
import { createTestDatabase } from '../tests/support/test-db';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // Node 20 is this project's runtime
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const INGEST_BYTES = env('BENCH_INGEST_BYTES', 1024 ** 3);
const ITEMS = env('BENCH_ITEMS', 1_000_000);
const SECONDS = env('BENCH_SECONDS', 20);
const CONCURRENCY = env('BENCH_CONCURRENCY', 32);
const ROUNDS = env('BENCH_ROUNDS', 2);
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

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

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

/** A file that sniffs as MP4, with random content. */
async function makeClip(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  const header = Buffer.from('00000018667479706d703432000000006d703432', 'hex');
  const block = randomBytes(16 * 1024 * 1024);
  for (let written = 0; written < size;) {
    const chunk = Buffer.from(block.subarray(0, Math.min(block.length, size - written)));
    if (written === 0) header.copy(chunk);
    chunk.writeUInt32BE(written / block.length, chunk.length - 4); // no two blocks alike
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    written += chunk.length;
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
      env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', ...vars },
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
  try {
    return (await new ApiKeyService(db, new ApiKeyRepository(), 0).create(role, `bench ${role}`))
      .key;
  } finally {
    await db.destroy();
  }
}

/** Streams a file from disk as one multipart upload; resolves with the item's sha256. */
function uploadFile(url: string, key: string, file: string, size: number): Promise<string> {
  const boundary = `bench${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\npacking_video\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="orderId"\r\n\r\nBENCH-1\r\n` +
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
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () =>
        res.statusCode === 201
          ? resolve(JSON.parse(body).sha256)
          : reject(new Error(`${res.statusCode} ${body}`)),
      );
    });
    req.on('error', reject);
    req.write(head);
    const src = createReadStream(file, { highWaterMark: 1 << 20 });
    src.pipe(req, { end: false });
    src.on('end', () => req.end(tail));
    src.on('error', reject);
  });
}

interface IngestFigures {
  serviceMBs: number;
  baselineMBs: number;
  peakRssMb: number;
  /** S3 only: a server-side CopyObject of the same object, the cost of promotion. */
  copyMBs?: number;
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

/** The S3 baseline: the same file straight to the same server with lib-storage, same settings. */
async function directS3Upload(s3: TestS3, clip: string, round: number) {
  const cfg = loadConfig({ ...s3.env, S3_PART_SIZE_BYTES: String(PART_SIZE) });
  if (cfg.storage.driver !== 's3') throw new Error('unreachable');
  const client = createS3Client(cfg.storage.s3);
  const Key = `baseline/${round}`;
  const secs = await timed(() =>
    new Upload({
      client,
      params: { Bucket: s3.bucket, Key, Body: createReadStream(clip, { highWaterMark: 1 << 20 }) },
      partSize: PART_SIZE,
      queueSize: QUEUE_SIZE,
    }).done(),
  );
  const copySecs = await timed(() =>
    client.send(
      new CopyObjectCommand({
        Bucket: s3.bucket,
        Key: `${Key}-copy`,
        CopySource: `${s3.bucket}/${Key}`,
      }),
    ),
  );
  client.destroy();
  return { secs, copySecs };
}

/** The disk baseline: a plain streamed copy, flushed to disk like the service's writes. */
async function streamedCopy(clip: string, target: string) {
  const secs = await timed(() =>
    pipeline(
      createReadStream(clip, { highWaterMark: 1 << 20 }),
      createWriteStream(target, { flush: true }),
    ),
  );
  return { secs, copySecs: undefined };
}

async function benchIngest(
  adminUrl: string,
  s3: TestS3,
  clip: string,
  sha: string,
): Promise<Record<string, IngestFigures>> {
  const results: Record<string, IngestFigures> = {};
  for (const driver of DRIVERS) {
    let best = { service: Infinity, baseline: Infinity, rss: 0, copy: Infinity };
    for (let round = 0; round < ROUNDS; round++) {
      const target = path.join(work, `copy-${round}`);
      const baseline =
        driver === 's3' ? await directS3Upload(s3, clip, round) : await streamedCopy(clip, target);
      if (baseline.copySecs !== undefined) best.copy = Math.min(best.copy, baseline.copySecs);
      rmSync(target, { force: true });

      // A fresh database and data directory per round, so the upload is new evidence, not a duplicate.
      const database = await createScratch(adminUrl);
      const dataDir = mkdtempSync(path.join(work, 'data-'));
      const service = await startService({
        DATABASE_URL: database.url,
        DATA_DIR: dataDir,
        ...(driver === 's3'
          ? {
              ...s3.env,
              S3_PREFIX: `round-${round}/`,
              S3_PART_SIZE_BYTES: String(PART_SIZE),
              S3_UPLOAD_CONCURRENCY: String(QUEUE_SIZE),
            }
          : {}),
      });
      const key = await mintKey(database.url, 'ingest');
      let stored = '';
      const serviceSecs = await timed(async () => {
        stored = await uploadFile(service.url, key, clip, INGEST_BYTES);
      });
      if (stored !== sha) throw new Error(`service stored ${stored}, file is ${sha}`);
      const rss = await service.peakRssMb();
      await service.stop();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
      if (driver === 's3') await emptyBucket(s3);
      best = {
        ...best,
        service: Math.min(best.service, serviceSecs),
        baseline: Math.min(best.baseline, baseline.secs),
        rss: Math.max(best.rss, rss),
      };
    }
    results[driver] = {
      serviceMBs: INGEST_BYTES / MB / best.service,
      baselineMBs: INGEST_BYTES / MB / best.baseline,
      peakRssMb: best.rss,
      copyMBs: driver === 's3' ? INGEST_BYTES / MB / best.copy : undefined,
    };
  }
  return results;
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
  return { rps: latencies.length / SECONDS, p50: at(0.5), p99: at(0.99) };
}

async function benchLookups(adminUrl: string) {
  const database = await createScratch(adminUrl);
  const dataDir = mkdtempSync(path.join(work, 'data-'));
  // Start once so the service's own migrations create the schema, then seed with plain SQL.
  let service = await startService({ DATABASE_URL: database.url, DATA_DIR: dataDir });
  await service.stop();
  const support = await mintKey(database.url, 'support');
  const db = createDb(database.url, 10);
  const orders = Math.max(1, Math.floor(ITEMS / 2));
  const seedSecs = await timed(async () => {
    const keyId = support.split('_')[1]!;
    await sql`insert into evidence_items (id, kind, sha256, size_bytes, content_type, blob_key, captured_at, received_at, created_by_key_id, station_id)
      select gen_random_uuid(), 'packing_video', encode(sha256(int8send(g)), 'hex'), 1000000 + g, 'video/mp4',
             'sha256/' || g, now() - (g || ' seconds')::interval, now(), ${keyId}, 'PK-' || (g % 40)
      from generate_series(1, ${ITEMS}::int) g`.execute(db);
    // Two links per item: its order (two items per order) and a complaint (four per complaint).
    await sql`insert into evidence_links (link_type, ref, item_id, created_by_key_id)
      select 'order', 'ORD-' || (row_number() over (order by id) % ${orders}), id, ${keyId} from evidence_items`.execute(
      db,
    );
    await sql`insert into evidence_links (link_type, ref, item_id, created_by_key_id)
      select 'complaint', 'CMP-' || (row_number() over (order by id) % ${Math.max(1, Math.floor(ITEMS / 4))}), id, ${keyId} from evidence_items`.execute(
      db,
    );
    await sql`vacuum analyze`.execute(db);
  });
  const counts = await sql<{
    items: string;
    links: string;
  }>`select (select count(*) from evidence_items) items, (select count(*) from evidence_links) links`.execute(
    db,
  );

  service = await startService({ DATABASE_URL: database.url, DATA_DIR: dataDir });
  const orderOf = (i: number) => `ORD-${(i * 7919) % orders}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const get = (p: string) =>
    new Promise<void>((resolve, reject) => {
      http
        .get(
          `${service.url}${p}`,
          { agent, headers: { Authorization: `Bearer ${support}` } },
          (res) => {
            if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
            res.resume();
            res.on('end', resolve);
          },
        )
        .on('error', reject);
    });
  // Warm both paths once so neither pays for connection set-up in its measurement.
  await Promise.all(
    Array.from({ length: CONCURRENCY }, (_, i) => get(`/v1/orders/${orderOf(i)}/evidence`)),
  );
  const viaService = await load((i) => get(`/v1/orders/${orderOf(i)}/evidence`));
  await service.stop();
  agent.destroy();

  const repo = new EvidenceRepository();
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
  const compiled = (ref: string) => repo.listByLinkQuery(db, 'order', ref, 1000).compile();
  const explain = await pool.query(`explain ${compiled(orderOf(1)).sql}`, [
    ...compiled(orderOf(1)).parameters,
  ]);
  await Promise.all(
    Array.from({ length: CONCURRENCY }, (_, i) =>
      pool.query(compiled(orderOf(i)).sql, [...compiled(orderOf(i)).parameters]),
    ),
  );
  const direct = await load(async (i) => {
    const q = compiled(orderOf(i));
    await pool.query(q.sql, [...q.parameters]);
  });
  await pool.end();
  await db.destroy();
  await database.drop();
  return {
    seedSecs,
    counts: counts.rows[0]!,
    viaService,
    direct,
    plan: explain.rows.map((r) => r['QUERY PLAN']).join('\n'),
  };
}

async function main(): Promise<void> {
  const admin = await adminDatabaseUrl();
  const s3 = await startS3Process();
  try {
    console.log(
      `evidence archive bench: ${new Date().toISOString()}, node ${process.version}, ${cpus().length} cores`,
    );
    const clip = path.join(work, 'clip.mp4');
    const sha = await makeClip(clip, INGEST_BYTES);
    await pipeline(createReadStream(clip), async function* (src) {
      for await (const _ of src) yield; // warm the page cache so every run reads from memory
    });

    const only = process.env.BENCH_ONLY; // "ingest" or "lookups", to run one half
    if (only !== 'lookups') {
      console.log(
        `\n== ingest of a ${fmt(INGEST_BYTES / 1024 ** 3, 2)} GiB clip (best of ${ROUNDS} rounds each)`,
      );
      const ingest = await benchIngest(admin.url, s3, clip, sha);
      const s3r = ingest.s3;
      const fsr = ingest.fs;
      if (s3r) {
        console.log(`S3 driver   POST /v1/evidence      ${fmt(s3r.serviceMBs)} MB/s`);
        console.log(
          `            direct lib-storage     ${fmt(s3r.baselineMBs)} MB/s   ratio ${fmt(s3r.serviceMBs / s3r.baselineMBs, 2)} (target >= 0.9)`,
        );
        console.log(`            service peak RSS       ${fmt(s3r.peakRssMb)} MB (target < 200)`);
        console.log(
          `            s3rver CopyObject      ${fmt(s3r.copyMBs!)} MB/s (what promotion costs here)`,
        );
      }
      if (fsr) {
        console.log(`disk driver POST /v1/evidence      ${fmt(fsr.serviceMBs)} MB/s`);
        console.log(
          `            streamed file copy     ${fmt(fsr.baselineMBs)} MB/s   ratio ${fmt(fsr.serviceMBs / fsr.baselineMBs, 2)} (target >= 0.9)`,
        );
        console.log(`            service peak RSS       ${fmt(fsr.peakRssMb)} MB (target < 200)`);
      }
    }
    if (only === 'ingest') return;

    console.log(
      `\n== lookups by order: ${ITEMS} items, ${CONCURRENCY} concurrent callers, ${SECONDS} s each`,
    );
    const l = await benchLookups(admin.url);
    console.log(
      `seeded ${l.counts.items} items and ${l.counts.links} links in ${fmt(l.seedSecs)} s`,
    );
    console.log(
      `GET /v1/orders/{id}/evidence   ${fmt(l.viaService.rps, 0)} req/s  p50 ${fmt(l.viaService.p50, 2)} ms  p99 ${fmt(l.viaService.p99, 2)} ms (targets >= 2000 req/s, p99 < 10 ms)`,
    );
    console.log(
      `same SQL through a pg pool     ${fmt(l.direct.rps, 0)} req/s  p50 ${fmt(l.direct.p50, 2)} ms  p99 ${fmt(l.direct.p99, 2)} ms`,
    );
    console.log(
      `ratio service/direct           ${fmt(l.viaService.rps / l.direct.rps, 2)} (throughput)`,
    );
    console.log(`query plan:\n${l.plan.replace(/^/gm, '  ')}`);
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
