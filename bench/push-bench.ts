/**
 * The raw-push part of `npm run bench` (BENCH_ONLY=push): phone systems pushing finished calls
 * with `PUT /v1/calls/{callId}/recording`, arriving at a fixed rate whatever the latency (open
 * loop, as real PBXs do), each with its own call id. Reports the rate sustained, errors, and
 * latency percentiles.
 *
 *   BENCH_PUSH_RATE (200 per second), BENCH_PUSH_SECONDS (30), BENCH_PUSH_BYTES (300 KB)
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const RATE = env('BENCH_PUSH_RATE', 200);
const SECONDS = env('BENCH_PUSH_SECONDS', 30);
const BYTES = env('BENCH_PUSH_BYTES', 300 * 1000);
const fmt = (n: number, digits = 1) => n.toFixed(digits);

export interface PushBenchDeps {
  work: string;
  adminUrl: string;
  startService(vars: Record<string, string>): Promise<{
    url: string;
    peakRssMb(): Promise<number>;
    stop(): Promise<void>;
  }>;
  mintKey(databaseUrl: string, role: 'ingest' | 'support'): Promise<string>;
  createScratch(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }>;
}

/** A WAV-shaped body (real header, random samples) unique per call. */
function recording(): Buffer {
  const body = randomBytes(BYTES);
  Buffer.from('RIFF\0\0\0\0WAVEfmt ', 'latin1').copy(body, 0);
  return body;
}

export async function benchPush(deps: PushBenchDeps): Promise<void> {
  const database = await deps.createScratch(deps.adminUrl);
  const dataDir = mkdtempSync(path.join(deps.work, 'data-'));
  // No media workers: 6,000 waveforms would be another benchmark; they queue for a worker.
  const service = await deps.startService({ DATABASE_URL: database.url, DATA_DIR: dataDir });
  const key = await deps.mintKey(database.url, 'ingest');
  const agent = new http.Agent({ keepAlive: true, maxSockets: RATE * 2 });
  const bodies = Array.from({ length: 64 }, recording);
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  let inFlight = 0;
  let maxInFlight = 0;

  const push = (i: number) =>
    new Promise<void>((resolve) => {
      const body = Buffer.from(bodies[i % bodies.length]!);
      body.writeUInt32LE(i, 40); // unique bytes per call
      const t0 = process.hrtime.bigint();
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const req = http.request(
        `${service.url}/v1/calls/bench-${i}/recording?source=bench-pbx&direction=inbound&orderId=ORD-${i % 5000}`,
        {
          method: 'PUT',
          agent,
          headers: {
            Authorization: `Bearer ${key}`,
            'Content-Type': 'audio/wav',
            'Content-Length': body.length,
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            inFlight--;
            if (res.statusCode === 201) {
              latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
            } else {
              errors.set(String(res.statusCode), (errors.get(String(res.statusCode)) ?? 0) + 1);
            }
            resolve();
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        inFlight--;
        errors.set(err.code ?? 'error', (errors.get(err.code ?? 'error') ?? 0) + 1);
        resolve();
      });
      req.end(body);
    });

  try {
    // Warm the connections and code paths.
    await Promise.all(Array.from({ length: 50 }, (_, i) => push(1_000_000 + i)));
    latencies.length = 0;
    errors.clear();

    const total = RATE * SECONDS;
    const pending: Promise<void>[] = [];
    const started = performance.now();
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      pending.push(push(i));
    }
    const sentSecs = (performance.now() - started) / 1000;
    await Promise.all(pending);
    const allSecs = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const at = (q: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
    const errorText = errors.size ? [...errors].map(([k, v]) => `${k}: ${v}`).join(', ') : 'none';
    console.log(
      `\n== raw call pushes: ${RATE}/s of ${fmt(BYTES / 1000, 0)} KB for ${SECONDS} s (open loop), PUT /v1/calls/{id}/recording, disk driver`,
    );
    console.log(
      `sent ${total} in ${fmt(sentSecs, 2)} s (${fmt(total / sentSecs, 1)}/s), all answered after ${fmt(allSecs, 2)} s; archived ${latencies.length}; errors ${errorText}`,
    );
    console.log(
      `latency p50 ${fmt(at(0.5), 2)} ms  p90 ${fmt(at(0.9), 2)} ms  p99 ${fmt(at(0.99), 2)} ms  max ${fmt(at(1), 2)} ms; at most ${maxInFlight} in flight; service peak RSS ${fmt(await service.peakRssMb(), 0)} MB`,
    );
  } finally {
    agent.destroy();
    await service.stop();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
