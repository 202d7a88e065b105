/**
 * The media part of `npm run bench` (BENCH_ONLY=media):
 *
 * 1. Orchestration: a 60 s 1080p H.264/AAC clip in a QuickTime MOV (as a phone writes it; browsers
 *    need a preview) archived through the API and processed by the service's worker (probe,
 *    poster, contact sheet, preview), from the upload's answer to `done`; against the very same
 *    ffmpeg/ffprobe invocations, recorded from the service and replayed directly from a shell on a
 *    copy of the clip. Target: shell / service >= 0.9.
 * 2. Starvation: lookups by order and uploads, idle against while a batch of clips is being
 *    processed by the same service (in-process workers, the default). Target: busy / idle >= 0.7.
 *
 *   BENCH_MEDIA_CLIP_SECONDS (60), BENCH_MEDIA_BATCH (20) clips of BENCH_MEDIA_BATCH_SECONDS (20),
 *   BENCH_MEDIA_ITEMS (100,000 seeded items for lookups), BENCH_MEDIA_UPLOAD_BYTES (32 MiB) x
 *   BENCH_MEDIA_UPLOADS (8) for the upload figure.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, promises as fs, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';

const run = promisify(execFile);
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const CLIP_SECONDS = env('BENCH_MEDIA_CLIP_SECONDS', 60);
const BATCH = env('BENCH_MEDIA_BATCH', 20);
const BATCH_SECONDS = env('BENCH_MEDIA_BATCH_SECONDS', 20);
export const MEDIA_ITEMS = env('BENCH_MEDIA_ITEMS', 100_000);
const UPLOAD_BYTES = env('BENCH_MEDIA_UPLOAD_BYTES', 32 * 1024 ** 2);
const UPLOADS = env('BENCH_MEDIA_UPLOADS', 8);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, digits = 1) => n.toFixed(digits);

interface Service {
  url: string;
  stop(): Promise<void>;
}
interface Latency {
  rps: number;
  p50: number;
  p99: number;
  calls: number;
}
export interface MediaBenchDeps {
  work: string;
  adminUrl: string;
  rounds: number;
  startService(vars: Record<string, string>): Promise<Service>;
  mintKey(databaseUrl: string, role: 'ingest' | 'support'): Promise<string>;
  upload(url: string, key: string, body: Readable, size: number): Promise<{ id: string }>;
  clipChunks(size: number): Iterable<Buffer>;
  createScratch(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }>;
  seedLookups(
    adminUrl: string,
    items: number,
  ): Promise<{
    database: { url: string };
    dataDir: string;
    support: string;
    orderOf(i: number): string;
    drop(): Promise<void>;
  }>;
  httpClient(url: string, key: string): { get(p: string): Promise<number>; close(): void };
  load(op: (i: number) => Promise<void>): Promise<Latency>;
}

async function which(name: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `command -v ${name}`]);
  return stdout.trim();
}

/** A clip of `seconds` from ffmpeg's test source; `codec` args decide what it is. */
async function makeVideo(file: string, seconds: number, size: string, codec: string[]) {
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin'],
    ...['-f', 'lavfi', '-i', `testsrc2=s=${size}:d=${seconds}:r=30`],
    ...['-f', 'lavfi', '-i', `sine=f=300:d=${seconds}`],
    ...codec,
    ...['-shortest', '-f', 'mov', '-y', file],
  ]);
}

/** The same clip with a new title tag: new bytes (new evidence), same media work. */
async function variant(source: string, file: string) {
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-i', source, '-map', '0', '-c', 'copy'],
    ...['-metadata', `title=${randomBytes(8).toString('hex')}`, '-f', 'mov', '-y', file],
  ]);
}

async function mediaStatus(url: string, key: string, id: string): Promise<string> {
  const res = await fetch(`${url}/v1/evidence/${id}`, {
    headers: { Authorization: `Bearer ${key}` },
  });
  const body = (await res.json()) as { media: { status: string; detail: string | null } | null };
  if (body.media?.status === 'failed' || body.media?.status === 'partial') {
    throw new Error(`media of ${id} ${body.media.status}: ${body.media.detail}`);
  }
  return body.media?.status ?? 'none';
}

async function uploadFile(deps: MediaBenchDeps, url: string, key: string, file: string) {
  const { size } = await fs.stat(file);
  return deps.upload(url, key, createReadStream(file), size);
}

/**
 * Recording wrappers: the service runs ffmpeg/ffprobe through these (FFMPEG_PATH/FFPROBE_PATH),
 * which log each invocation's arguments before running the real binary.
 */
async function recorders(dir: string) {
  const log = path.join(dir, 'invocations.log');
  const real = { ffmpeg: await which('ffmpeg'), ffprobe: await which('ffprobe') };
  for (const tool of ['ffmpeg', 'ffprobe'] as const) {
    await fs.writeFile(
      path.join(dir, tool),
      `#!/bin/sh\nprintf '%s\\037' ${tool} "$@" >> '${log}'\nprintf '\\036' >> '${log}'\nexec '${real[tool]}' "$@"\n`,
      { mode: 0o755 },
    );
  }
  return {
    vars: { FFMPEG_PATH: path.join(dir, 'ffmpeg'), FFPROBE_PATH: path.join(dir, 'ffprobe') },
    real,
    async take(): Promise<string[][]> {
      const text = await fs.readFile(log, 'utf8').catch(() => '');
      await fs.rm(log, { force: true });
      return text
        .split('\x1e')
        .filter(Boolean)
        .map((r) => r.split('\x1f').slice(0, -1));
    },
  };
}

const isCapabilityQuery = (args: string[]) =>
  ['-formats', '-encoders', '-version'].some((flag) => args.includes(flag));

/** Runs recorded invocations one after another from a shell, on `dir`'s copy of the source. */
async function replay(
  invocations: string[][],
  real: Record<string, string>,
  dir: string,
): Promise<number> {
  const jobDir = /[^\s']*\/media-scratch\/job-[^/]+\//g;
  const lines = invocations
    // fluent-ffmpeg's one-off capability queries are orchestration, not media work.
    .filter((args) => !isCapabilityQuery(args))
    .map((args) => {
      const [tool, ...rest] = args;
      const quoted = rest.map((a) => `'${a.replace(jobDir, `${dir}/`).replace(/'/g, `'\\''`)}'`);
      return `'${real[tool!]}' ${quoted.join(' ')} >/dev/null 2>"${dir}/stderr" || { cat "${dir}/stderr"; exit 1; }`;
    });
  const script = path.join(dir, 'replay.sh');
  await fs.writeFile(script, `set -e\n${lines.join('\n')}\n`);
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('sh', [script], { stdio: 'inherit' });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`replay exit ${code}`))));
  });
  return (performance.now() - started) / 1000;
}

async function orchestration(deps: MediaBenchDeps) {
  const dir = mkdtempSync(path.join(deps.work, 'media-'));
  const rec = await recorders(dir);
  const database = await deps.createScratch(deps.adminUrl);
  const dataDir = mkdtempSync(path.join(deps.work, 'data-'));
  const clip = path.join(dir, 'clip.mov');
  const made = performance.now();
  await makeVideo(clip, CLIP_SECONDS, '1920x1080', [
    ...['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p'],
    ...['-c:a', 'aac', '-b:a', '128k'],
  ]);
  const clipBytes = (await fs.stat(clip)).size;
  console.log(
    `clip: ${CLIP_SECONDS} s 1080p30 H.264/AAC in MOV, ${fmt(clipBytes / 1e6)} MB (made in ${fmt((performance.now() - made) / 1000)} s)`,
  );
  const service = await deps.startService({
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    WORKERS: '1',
    MEDIA_CONCURRENCY: '1',
    ...rec.vars,
  });
  const ingest = await deps.mintKey(database.url, 'ingest');
  const support = await deps.mintKey(database.url, 'support');
  let best = { service: Infinity, shell: Infinity, invocations: 0 };
  try {
    for (let round = 0; round < deps.rounds; round++) {
      const copy = path.join(dir, `round-${round}.mov`);
      await variant(clip, copy);
      await rec.take();
      const { id } = await uploadFile(deps, service.url, ingest, copy);
      const t0 = performance.now();
      while ((await mediaStatus(service.url, support, id)) !== 'done') await sleep(100);
      const serviceSecs = (performance.now() - t0) / 1000;
      const invocations = await rec.take();

      const replayDir = mkdtempSync(path.join(dir, 'replay-'));
      await fs.copyFile(copy, path.join(replayDir, 'source'));
      const shellSecs = await replay(invocations, rec.real, replayDir);
      rmSync(replayDir, { recursive: true, force: true });
      const replayed = invocations.filter((a) => !isCapabilityQuery(a));
      console.log(
        `  round ${round + 1}: service ${fmt(serviceSecs, 2)} s, shell ${fmt(shellSecs, 2)} s (${replayed.map((a) => a[0]).join(', ')})`,
      );
      best = {
        service: Math.min(best.service, serviceSecs),
        shell: Math.min(best.shell, shellSecs),
        invocations: replayed.length,
      };
    }
  } finally {
    await service.stop();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return { ...best, dir };
}

async function starvation(deps: MediaBenchDeps, batchSource: string) {
  const seeded = await deps.seedLookups(deps.adminUrl, MEDIA_ITEMS);
  const service = await deps.startService({
    DATABASE_URL: seeded.database.url,
    DATA_DIR: seeded.dataDir,
    WORKERS: '1', // the default: media work in the same process as the API
  });
  const ingest = await deps.mintKey(seeded.database.url, 'ingest');
  const client = deps.httpClient(service.url, seeded.support);
  const measure = async () => {
    const lookup = (i: number) => client.get(`/v1/orders/${seeded.orderOf(i)}/evidence`);
    const lookups = await deps.load(async (i) => void (await lookup(i)));
    const t0 = performance.now();
    for (let i = 0; i < UPLOADS; i++) {
      await deps.upload(
        service.url,
        ingest,
        Readable.from(deps.clipChunks(UPLOAD_BYTES)),
        UPLOAD_BYTES,
      );
    }
    const uploadMBs = (UPLOADS * UPLOAD_BYTES) / 1e6 / ((performance.now() - t0) / 1000);
    return { lookups, uploadMBs };
  };
  try {
    await Promise.all(
      Array.from({ length: 32 }, (_, i) => client.get(`/v1/orders/${seeded.orderOf(i)}/evidence`)),
    );
    const idle = await measure();

    const ids: string[] = [];
    for (let i = 0; i < BATCH; i++) {
      const file = path.join(path.dirname(batchSource), `batch-${i}.mov`);
      await variant(batchSource, file);
      ids.push((await uploadFile(deps, service.url, ingest, file)).id);
    }
    await sleep(2500); // the workers have picked up their first jobs
    const started = performance.now();
    const busy = await measure();
    const busySecs = (performance.now() - started) / 1000;
    const states = await Promise.all(ids.map((id) => mediaStatus(service.url, seeded.support, id)));
    const unfinished = states.filter((s) => s !== 'done').length;
    // Let the batch finish, to report how long it took.
    while (
      (await Promise.all(ids.map((id) => mediaStatus(service.url, seeded.support, id)))).some(
        (s) => s !== 'done',
      )
    ) {
      await sleep(500);
    }
    const batchSecs = (performance.now() - started) / 1000;
    return { idle, busy, busySecs, unfinished, batchSecs };
  } finally {
    client.close();
    await service.stop();
    await seeded.drop();
  }
}

export async function benchMedia(deps: MediaBenchDeps): Promise<void> {
  console.log(
    `\n== media: probe, poster, contact sheet and preview of a ${CLIP_SECONDS} s 1080p clip, best of ${deps.rounds} rounds`,
  );
  const o = await orchestration(deps);
  console.log(`through the service (upload answered -> derivatives ready)  ${fmt(o.service, 2)} s`);
  console.log(
    `the same ${o.invocations} ffmpeg/ffprobe runs from a shell             ${fmt(o.shell, 2)} s`,
  );
  console.log(
    `ratio shell/service                                       ${fmt(o.shell / o.service, 2)} (target >= 0.9)`,
  );

  const batchSource = path.join(o.dir, 'batch-source.mov');
  await makeVideo(batchSource, BATCH_SECONDS, '1280x720', [
    '-c:v',
    'mpeg4',
    '-q:v',
    '4',
    '-c:a',
    'pcm_s16le',
  ]);
  console.log(
    `\n== the API while ${BATCH} clips (${BATCH_SECONDS} s 720p MOV, each needing a preview) are processed in the same service, ${MEDIA_ITEMS} items, default WORKERS and MEDIA_CONCURRENCY`,
  );
  const s = await starvation(deps, batchSource);
  const line = (name: string, r: { lookups: Latency; uploadMBs: number }) =>
    `${name} lookups ${fmt(r.lookups.rps, 0)} req/s  p50 ${fmt(r.lookups.p50, 2)} ms  p99 ${fmt(r.lookups.p99, 2)} ms;  uploads ${fmt(r.uploadMBs)} MB/s`;
  console.log(line('idle      ', s.idle));
  console.log(line('processing', s.busy));
  console.log(
    `ratio busy/idle: lookups ${fmt(s.busy.lookups.rps / s.idle.lookups.rps, 2)} (throughput), uploads ${fmt(s.busy.uploadMBs / s.idle.uploadMBs, 2)} (target >= 0.7)`,
  );
  console.log(
    `${s.unfinished} of ${BATCH} clips were still being processed when the busy measurement ended (${fmt(s.busySecs)} s); the batch took ${fmt(s.batchSecs)} s`,
  );
  rmSync(o.dir, { recursive: true, force: true });
}
