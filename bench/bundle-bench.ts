/**
 * The dispute-bundle part of `npm run bench` (BENCH_ONLY=bundle): a bundle of 10 items totalling
 * 1 GiB (disk driver) downloaded as one streamed ZIP (`GET /v1/bundles/{id}/content`) against a
 * plain streamed read of the same blobs (`GET /v1/evidence/{id}/content` of each item, one after
 * another), in alternating rounds. Both sides read every byte to the end and hash it (SHA-256), as
 * a client checking what it got would; the bundle must be the same bytes every round and the plain
 * reads must match the items' hashes, or the bench fails.
 *
 * The items are archived by one service process, which is then stopped; the downloads are served
 * by a fresh one, so its peak RSS (VmHWM, from /proc) is that of the downloads alone (both sides,
 * every round: an upper bound of the bundle's own). The machine's speed drifts between minutes, so
 * the figure that counts is the median of the rounds' own ratios, each round's two sides back to
 * back; the best of each side is printed too.
 *
 *   BENCH_BUNDLE_BYTES (1 GiB in all), BENCH_BUNDLE_ITEMS (10), BENCH_BUNDLE_ROUNDS (5)
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { PushBenchDeps } from './push-bench';
import { MP4_HEADER, type BenchUpload } from './tus-bench';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const TOTAL_BYTES = env('BENCH_BUNDLE_BYTES', 1024 ** 3);
const ITEMS = env('BENCH_BUNDLE_ITEMS', 10);
const ROUNDS = env('BENCH_BUNDLE_ROUNDS', 5);
const MB = 1e6;
const fmt = (n: number, digits = 1) => n.toFixed(digits);
const COMPLAINT = 'BENCH-DISPUTE';

type Side = 'plain' | 'bundle';

export type BundleBenchDeps = PushBenchDeps & { upload: BenchUpload };

/** `size` random bytes behind an MP4 header, made as they are read: never all in memory. */
function randomClip(size: number): Readable {
  let written = 0;
  return new Readable({
    read() {
      if (written >= size) return void this.push(null);
      const block = randomBytes(Math.min(4 * 1024 ** 2, size - written));
      if (written === 0) MP4_HEADER.copy(block);
      written += block.length;
      this.push(block);
    },
  });
}

/** GET, reading and hashing the body to its end; resolves with its length and SHA-256. */
function getHashed(
  agent: http.Agent,
  url: string,
  key: string,
): Promise<{ bytes: number; sha256: string; contentLength: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers: { Authorization: `Bearer ${key}` } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`GET ${url}: status ${res.statusCode}`));
        }
        const hash = createHash('sha256');
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        res.on('end', () =>
          resolve({
            bytes,
            sha256: hash.digest('hex'),
            contentLength: Number(res.headers['content-length']),
          }),
        );
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

async function json(url: string, key: string, method: string, body?: unknown) {
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const parsed = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(parsed)}`);
  return parsed;
}

export async function benchBundle(deps: BundleBenchDeps): Promise<void> {
  const itemBytes = Math.floor(TOTAL_BYTES / ITEMS);
  console.log(
    `\n== dispute bundle: ${ITEMS} items of ${fmt(itemBytes / 1024 ** 2, 0)} MiB (${fmt((itemBytes * ITEMS) / 1024 ** 3, 2)} GiB, disk driver) as one streamed ZIP against a plain streamed read of the same blobs (GET /v1/evidence/{id}/content, one after another); both read to the end and hashed; ${ROUNDS} alternating rounds`,
  );
  const database = await deps.createScratch(deps.adminUrl);
  const dataDir = mkdtempSync(path.join(deps.work, 'bundle-data-'));
  const vars = { DATABASE_URL: database.url, DATA_DIR: dataDir, STORAGE_DRIVER: 'fs' };
  try {
    const items: { id: string; sha256: string }[] = [];
    const archiving = await deps.startService(vars); // migrates the new database
    const ingestKey = await deps.mintKey(database.url, 'ingest');
    const supportKey = await deps.mintKey(database.url, 'support');
    try {
      await json(`${archiving.url}/v1/complaints/${COMPLAINT}`, supportKey, 'PUT', {
        status: 'open',
      });
      for (let i = 0; i < ITEMS; i++) {
        items.push(
          await deps.upload(archiving.url, ingestKey, randomClip(itemBytes), itemBytes, {
            kind: 'packing_video',
            complaintId: COMPLAINT,
            stationId: 'PK-BENCH',
          }),
        );
      }
    } finally {
      await archiving.stop();
    }

    // A fresh process serves the downloads: its peak RSS is theirs alone.
    const service = await deps.startService(vars);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const t0 = process.hrtime.bigint();
      const bundle = await json(
        `${service.url}/v1/complaints/${COMPLAINT}/bundles`,
        supportKey,
        'POST',
        {},
      );
      const createMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (bundle.fileCount !== ITEMS)
        throw new Error(`bundle of ${String(bundle.fileCount)} files`);
      console.log(
        `bundle made in ${fmt(createMs, 0)} ms (checkpoint signed, audit excerpt, manifest signed): ${String(bundle.zipBytes)} bytes of ZIP for ${String(bundle.totalBytes)} bytes of evidence`,
      );

      let bundleSha: string | undefined;
      const run = async (side: Side): Promise<number> => {
        const started = process.hrtime.bigint();
        let bytes = 0;
        if (side === 'bundle') {
          const got = await getHashed(
            agent,
            `${service.url}${String(bundle.downloadUrl)}`,
            supportKey,
          );
          if (got.bytes !== bundle.zipBytes || got.contentLength !== bundle.zipBytes) {
            throw new Error(
              `bundle download: ${got.bytes} bytes, ${String(bundle.zipBytes)} expected`,
            );
          }
          if (bundleSha && got.sha256 !== bundleSha) throw new Error('the bundle bytes changed');
          bundleSha = got.sha256;
          bytes = got.bytes;
        } else {
          for (const item of items) {
            const got = await getHashed(
              agent,
              `${service.url}/v1/evidence/${item.id}/content`,
              supportKey,
            );
            if (got.sha256 !== item.sha256) throw new Error(`item ${item.id}: wrong bytes`);
            bytes += got.bytes;
          }
        }
        const secs = Number(process.hrtime.bigint() - started) / 1e9;
        return bytes / MB / secs;
      };

      const rounds: Record<Side, number>[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const order: Side[] = r % 2 === 0 ? ['plain', 'bundle'] : ['bundle', 'plain'];
        const round = {} as Record<Side, number>;
        for (const side of order) round[side] = await run(side);
        rounds.push(round);
        console.log(
          `round ${r + 1} (${order.join(' then ')}): plain ${fmt(round.plain)} MB/s, bundle ${fmt(round.bundle)} MB/s, ratio ${fmt(round.bundle / round.plain, 2)}`,
        );
      }
      const ratios = rounds.map((r) => r.bundle / r.plain).sort((a, b) => a - b);
      const median = ratios[Math.floor(ratios.length / 2)]!;
      const best = (side: Side) => Math.max(...rounds.map((r) => r[side]));
      console.log(`plain streamed read of the 10 blobs   best ${fmt(best('plain'))} MB/s`);
      console.log(`bundle ZIP, streamed                  best ${fmt(best('bundle'))} MB/s`);
      console.log(
        `ratio bundle/plain: median of the rounds' ratios ${fmt(median, 2)} (target >= 0.8); best against best ${fmt(best('bundle') / best('plain'), 2)}`,
      );
      console.log(
        `service peak RSS during the downloads (both sides, all rounds): ${fmt(await service.peakRssMb(), 0)} MB (target < 200 MB)`,
      );
    } finally {
      agent.destroy();
      await service.stop();
    }
  } finally {
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
