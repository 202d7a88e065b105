/**
 * The ingest part of `npm run bench` (BENCH_ONLY=ingest): one clip through multipart
 * `POST /v1/evidence` against its baseline, per driver, in alternating rounds.
 *
 * - S3: the same file straight to the same S3 server with lib-storage (the service's S3 client,
 *   part size and queue size), in a process of its own (bench/direct-s3-upload.ts).
 * - disk: the thinnest Node handler that stores an upload (bench/thin-ingest-server.ts):
 *   `node:http`, the same multipart body from the same client streamed to a file, one fsync.
 *
 * Each side's process is measured alone: its CPU (utime + stime from /proc/<pid>/stat over the
 * upload, or the baseline's own process.cpuUsage around it) as CPU seconds per GiB, and its peak
 * RSS (VmHWM). Every service upload gets a fresh service, database and data directory, so no
 * round's upload is a duplicate and the RSS is that upload's own. The machine's speed drifts
 * between minutes, so the figure that counts is the median of the rounds' own ratios, the two
 * uploads of a round being back to back and their order alternating.
 */
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { loadConfig } from '../src/base/config';
import { createS3Client } from '../src/storage/s3-client';
import type { TestS3 } from '../tests/support/s3-server';

const MB = 1e6;
const GiB = 1024 ** 3;
const fmt = (n: number, digits = 1) => n.toFixed(digits);
/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

export interface IngestBenchDeps {
  work: string;
  adminUrl: string;
  s3: TestS3;
  startService(vars: Record<string, string>): Promise<{
    url: string;
    proc: { pid?: number };
    peakRssMb(): Promise<number>;
    stop(): Promise<void>;
  }>;
  mintKey(databaseUrl: string, role: 'ingest'): Promise<string>;
  createScratch(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }>;
  upload(
    url: string,
    key: string,
    body: Readable,
    size: number,
  ): Promise<{ id: string; sha256: string }>;
}

export interface IngestSettings {
  clip: string;
  sha256: string;
  bytes: number;
  rounds: number;
  drivers: ('s3' | 'fs')[];
  partSize: number;
  queueSize: number;
}

/** One upload, one side. */
interface Run {
  secs: number;
  cpuSecs: number;
  rssMb: number;
  /** Its peak RSS once started, before the upload. */
  startRssMb: number;
  /** S3 baseline only: a server-side CopyObject of the uploaded object. */
  copySecs?: number;
}

/** utime + stime of a process so far, in seconds. */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

async function peakRssMbOf(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

const clipStream = (clip: string) => createReadStream(clip, { highWaterMark: 1 << 20 });

/** The service, fresh, as its own process. */
async function serviceRun(
  deps: IngestBenchDeps,
  s: IngestSettings,
  driver: 's3' | 'fs',
  round: number,
): Promise<Run> {
  const database = await deps.createScratch(deps.adminUrl);
  const dataDir = mkdtempSync(path.join(deps.work, 'data-'));
  const service = await deps.startService({
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    ...(driver === 's3'
      ? {
          ...deps.s3.env,
          S3_PREFIX: `round-${round}/`,
          S3_PART_SIZE_BYTES: String(s.partSize),
          S3_UPLOAD_CONCURRENCY: String(s.queueSize),
        }
      : {}),
  });
  try {
    const key = await deps.mintKey(database.url, 'ingest');
    const pid = service.proc.pid!;
    const startRssMb = await peakRssMbOf(pid);
    const cpu0 = await cpuSecondsOf(pid);
    const t0 = performance.now();
    const { sha256 } = await deps.upload(service.url, key, clipStream(s.clip), s.bytes);
    const secs = (performance.now() - t0) / 1000;
    const cpuSecs = (await cpuSecondsOf(pid)) - cpu0;
    if (sha256 !== s.sha256) throw new Error(`service stored ${sha256}, file is ${s.sha256}`);
    return { secs, cpuSecs, rssMb: await service.peakRssMb(), startRssMb };
  } finally {
    await service.stop();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Spawns a bench script; resolves with the process and its first line of output, parsed. */
async function spawnScript<T>(script: string, args: string[], env: Record<string, string> = {}) {
  const proc = spawn(process.execPath, [path.join(__dirname, script), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { proc, result: JSON.parse(line) as T };
}

/** The disk baseline: the thinnest handler, fresh, as its own process. */
async function thinRun(deps: IngestBenchDeps, s: IngestSettings): Promise<Run> {
  const dir = mkdtempSync(path.join(deps.work, 'thin-'));
  const { proc, result } = await spawnScript<{ port: number }>('thin-ingest-server.js', [dir]);
  try {
    const pid = proc.pid!;
    const startRssMb = await peakRssMbOf(pid);
    const cpu0 = await cpuSecondsOf(pid);
    const t0 = performance.now();
    await deps.upload(`http://127.0.0.1:${result.port}`, 'none', clipStream(s.clip), s.bytes);
    const secs = (performance.now() - t0) / 1000;
    const cpuSecs = (await cpuSecondsOf(pid)) - cpu0;
    return { secs, cpuSecs, rssMb: await peakRssMbOf(pid), startRssMb };
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The S3 baseline: lib-storage straight to the S3 server, as its own process. */
async function directRun(deps: IngestBenchDeps, s: IngestSettings, round: number): Promise<Run> {
  const { proc, result } = await spawnScript<Run>(
    'direct-s3-upload.js',
    [s.clip, `baseline/${round}`, String(s.partSize), String(s.queueSize)],
    deps.s3.env,
  );
  await new Promise((r) => (proc.exitCode === null ? proc.once('exit', r) : r(null)));
  return result;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!;
}

export async function benchIngest(deps: IngestBenchDeps, s: IngestSettings): Promise<void> {
  const gib = s.bytes / GiB;
  const mbs = (r: Run) => s.bytes / MB / r.secs;
  const perGiB = (r: Run) => r.cpuSecs / gib;
  for (const driver of s.drivers) {
    const baselineName =
      driver === 's3' ? 'direct lib-storage (own process)' : 'thinnest node:http + one fsync';
    console.log(
      driver === 's3'
        ? `S3 driver: POST /v1/evidence against ${baselineName}, part ${fmt(s.partSize / 2 ** 20, 0)} MiB x ${s.queueSize}`
        : `disk driver: POST /v1/evidence against the ${baselineName} (same multipart body, same client)`,
    );
    const rows: { service: Run; baseline: Run }[] = [];
    for (let round = 0; round < s.rounds; round++) {
      const order =
        round % 2 === 0 ? (['baseline', 'service'] as const) : (['service', 'baseline'] as const);
      const row = {} as { service: Run; baseline: Run };
      for (const side of order) {
        row[side] =
          side === 'service'
            ? await serviceRun(deps, s, driver, round)
            : driver === 's3'
              ? await directRun(deps, s, round)
              : await thinRun(deps, s);
      }
      if (driver === 's3') await emptyBucket(deps.s3);
      rows.push(row);
      const { service, baseline } = row;
      console.log(
        `  round ${round + 1}: service ${fmt(mbs(service))} MB/s ${fmt(perGiB(service), 2)} CPU s/GiB ${fmt(service.startRssMb, 0)}->${fmt(service.rssMb, 0)} MB | ` +
          `baseline ${fmt(mbs(baseline))} MB/s ${fmt(perGiB(baseline), 2)} CPU s/GiB ${fmt(baseline.startRssMb, 0)}->${fmt(baseline.rssMb, 0)} MB | ` +
          `ratio ${fmt(mbs(service) / mbs(baseline), 2)}  (load ${(await fs.readFile('/proc/loadavg', 'utf8')).split(' ')[0]})`,
      );
    }
    const side = (pick: (r: { service: Run; baseline: Run }) => Run, label: string) => {
      const runs = rows.map(pick);
      console.log(
        `  ${label.padEnd(36)} median ${fmt(median(runs.map(mbs)))} MB/s  ${fmt(median(runs.map(perGiB)), 2)} CPU s/GiB  peak RSS ${fmt(Math.max(...runs.map((r) => r.rssMb)), 0)} MB (${fmt(median(runs.map((r) => r.rssMb - r.startRssMb)), 0)} MB of it added by the upload)`,
      );
    };
    side((r) => r.service, 'POST /v1/evidence');
    side((r) => r.baseline, baselineName);
    const speed = median(rows.map((r) => mbs(r.service) / mbs(r.baseline)));
    const cpu = median(rows.map((r) => perGiB(r.service) / perGiB(r.baseline)));
    const rss = Math.max(...rows.map((r) => r.service.rssMb));
    console.log(
      `  ratio service/baseline: median ${fmt(speed, 2)} (target >= 0.9); CPU per GiB ${fmt(cpu, 2)}x; service peak RSS ${fmt(rss, 0)} MB (target < 200)`,
    );
    const copies = rows.map((r) => r.baseline.copySecs).filter((c) => c !== undefined);
    if (copies.length) {
      console.log(
        `  s3rver CopyObject of the same object ${fmt(s.bytes / MB / median(copies))} MB/s (what the service's promotion costs here, in its time)`,
      );
    }
  }
}

async function emptyBucket(s3: TestS3): Promise<void> {
  const cfg = loadConfig(s3.env);
  if (cfg.storage.driver !== 's3') throw new Error('unreachable');
  const client = createS3Client(cfg.storage.s3);
  for (;;) {
    const { Contents = [] } = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
    if (!Contents.length) break;
    for (const o of Contents) {
      await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: o.Key! }));
    }
  }
  client.destroy();
}
