import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MintedKey } from '../../src/access/api-key.service';
import { loadConfig } from '../../src/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { DRIVERS, type Driver } from '../support/harness';
import { eventually, leftovers, storeOf } from '../support/leftovers';
import { fakeMedia, sha256 } from '../support/media';
import { startS3Server, type TestS3 } from '../support/s3-server';
import { childProcessReport } from '../support/openapi-validator';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(240_000);

const SERVICE = path.resolve(__dirname, '../support/run-service.js');
/** What the service answered, checked against the OpenAPI document (see run-service.js). */
const openapiReport = childProcessReport();
const MiB = 1024 * 1024;

interface Push {
  /** The answer's status, or 0 when the connection died first. */
  status: number;
  body: string;
}

/**
 * A PUT of a recording streamed chunk by chunk (with backpressure); `pace` runs before each chunk
 * (a test slows or stalls a client with it).
 */
function push(
  url: string,
  key: string,
  callId: string,
  size: number,
  chunks: AsyncIterable<Buffer>,
): Promise<Push> {
  return new Promise((resolve) => {
    const req = http.request(`${url}/v1/calls/${callId}/recording?source=kill-leftovers`, {
      method: 'PUT',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'audio/wav',
        'Content-Length': size,
      },
    });
    let done = false;
    const finish = (r: Push) => {
      if (!done) resolve(r);
      done = true;
    };
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        finish({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }),
      );
      res.on('error', () => finish({ status: res.statusCode ?? 0, body: '' }));
    });
    req.on('error', () => finish({ status: 0, body: '' }));
    void (async () => {
      try {
        for await (const chunk of chunks) {
          if (done || req.destroyed) return;
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      } catch {
        req.destroy();
      }
    })();
  });
}

async function* chunksOf(body: Buffer, size = 256 * 1024, pause?: () => Promise<void>) {
  for (let at = 0; at < body.length; at += size) {
    await pause?.();
    yield body.subarray(at, at + size);
  }
}

/**
 * The crash half of the fault suite: the real service in a child process, killed (SIGKILL) or
 * stopped (SIGTERM) while it archives uploads, then started again on the same database and store.
 * After each: every acknowledged upload is there with its bytes, and nothing is left behind
 * (no staging, no evidence blob without its row).
 */
describe.each(DRIVERS)('crashes and stops while uploads run (%s)', (driver: Driver) => {
  let dataDir: string;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let s3: TestS3 | undefined;
  let ctx: AppContext;
  let service: ChildProcess | undefined;
  let ingest: MintedKey;
  let admin: MintedKey;
  const port = 21000 + Math.floor(Math.random() * 10000);
  const url = `http://127.0.0.1:${port}`;

  const env = (extra: Record<string, string>) => ({
    ...process.env,
    ...openapiReport.env,
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    PORT: String(port),
    LOG_LEVEL: 'silent',
    WORKERS: '0',
    LEFTOVER_SWEEP_SECONDS: '5',
    ...s3?.env,
    ...extra,
  });

  /** Starts the service; resolves once it is ready, with the lines it printed since. */
  async function start(extra: Record<string, string> = {}): Promise<{ lines: string[] }> {
    const proc = spawn(process.execPath, [SERVICE], {
      env: env(extra),
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    service = proc;
    const out = { lines: [] as string[] };
    let partial = '';
    proc.stdout!.on('data', (c: Buffer) => {
      const text = partial + c.toString();
      const lines = text.split('\n');
      partial = lines.pop()!;
      out.lines.push(...lines);
    });
    // Up to a minute: a 2-core CI machine running another suite's child processes starts slowly.
    for (let i = 0; i < 600; i++) {
      const ok = await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return out;
      if (proc.exitCode !== null) throw new Error('the service exited at start-up');
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the service did not start');
  }

  function stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<number | null> {
    const proc = service!;
    if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
    return new Promise((resolve) => {
      proc.once('exit', (code) => resolve(code));
      proc.kill(signal);
    });
  }

  const stored = () => leftovers(ctx.db, storeOf(dataDir, s3));
  const clean = () =>
    eventually(stored, (s) => s.orphans.length === 0 && s.staging.length === 0, 30_000);

  async function content(itemId: string): Promise<string> {
    const res = await fetch(`${url}/v1/evidence/${itemId}/content`, {
      headers: { Authorization: `Bearer ${admin.key}` },
    });
    expect(res.status).toBe(200);
    return sha256(Buffer.from(await res.arrayBuffer()));
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-kill-leftovers-'));
    s3 = driver === 's3' ? await startS3Server() : undefined;
    ctx = await AppContext.fromConfig(
      loadConfig({
        DATABASE_URL: database.url,
        DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
        ...s3?.env,
      }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
    ingest = await ctx.apiKeys.create('ingest', 'PBX');
    admin = await ctx.apiKeys.create('admin', 'Admin');
  });
  afterAll(async () => {
    if (service) await stop('SIGKILL');
    await ctx.close();
    await s3?.close();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
    openapiReport.assertClean();
  });

  it('kill -9 in the middle of a 120 MB upload: its staging is gone once the service is back', async () => {
    await start();
    const size = 120 * MiB;
    const block = randomBytes(MiB);
    let sent = 0;
    let reached!: () => void;
    const halfway = new Promise<void>((r) => (reached = r));
    async function* body() {
      const head = fakeMedia('wav', MiB);
      for (let i = 0; i < size / MiB; i++) {
        if ((sent += MiB) >= 60 * MiB) reached();
        yield i === 0 ? head : block;
      }
    }
    const answer = push(url, ingest.key, 'big-1', size, body());
    await halfway;
    if (driver === 'fs') {
      // Tens of MB are on disk under the instance's staging key when it dies.
      await eventually(
        async () => (await stored()).staging,
        (s) => s.length === 1,
      );
    }
    await stop('SIGKILL');
    expect((await answer).status).toBe(0);
    if (driver === 'fs') expect((await stored()).staging).toHaveLength(1);
    await start();
    // Removed by the start-up sweep, not STAGING_GRACE_HOURS later.
    expect(await clean()).toEqual({ orphans: [], staging: [] });
  });

  it('kill -9 between promotion and commit: the blob without a row is removed after the restart', async () => {
    if (service) await stop('SIGKILL');
    const { lines } = await start({ TEST_HOLD_AFTER_PROMOTE: '1' });
    const recording = fakeMedia('wav', 512 * 1024);
    const answer = push(url, ingest.key, 'held-1', recording.length, chunksOf(recording));
    const promoted = await eventually(
      async () => lines.find((l) => l.startsWith('promoted ')),
      (l) => l !== undefined,
    );
    expect(promoted).toBe(
      `promoted sha256/${sha256(recording).slice(0, 2)}/${sha256(recording).slice(2, 4)}/${sha256(recording)}`,
    );
    await stop('SIGKILL');
    expect((await answer).status).toBe(0);
    // The crash left exactly what this issue is about: a blob at its address, and no row.
    expect((await stored()).orphans).toEqual([promoted!.slice('promoted '.length)]);
    await start();
    expect(await clean()).toEqual({ orphans: [], staging: [] });
    // The same recording sent again is archived whole.
    const again = await push(url, ingest.key, 'held-1', recording.length, chunksOf(recording));
    expect(again.status).toBe(201);
    expect(await content(JSON.parse(again.body).id)).toBe(sha256(recording));
  });

  it('kill -9 right after a 2xx: the acknowledged item is there with its bytes', async () => {
    if (service) await stop('SIGKILL');
    await start();
    const acknowledged: { id: string; sha256: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const recording = fakeMedia('wav', 300 * 1024 + i);
      const res = await push(url, ingest.key, `ack-${i}`, recording.length, chunksOf(recording));
      expect(res.status).toBe(201);
      acknowledged.push({ id: JSON.parse(res.body).id, sha256: sha256(recording) });
      await stop('SIGKILL'); // at once, after the answer
      await start();
    }
    for (const a of acknowledged) expect(await content(a.id)).toBe(a.sha256);
    expect(await clean()).toEqual({ orphans: [], staging: [] });
  });

  it('SIGTERM with uploads in flight: each is acknowledged and archived, or refused with 503; a clean exit; nothing partial', async () => {
    if (service) await stop('SIGKILL');
    // A grace long enough for the fast three on a loaded two-core CI machine (3 s was not).
    await start({ SHUTDOWN_GRACE_MS: '10000' });
    // Three clients finish within the grace period, three stall past it.
    let stalled!: () => void;
    const stall = new Promise<void>((r) => (stalled = r));
    let started = 0;
    const uploads = Array.from({ length: 6 }, (_, i) => {
      const recording = fakeMedia('wav', 2 * MiB + i);
      const slow = i >= 3;
      let chunks = 0;
      const answer = push(
        url,
        ingest.key,
        `term-${i}`,
        recording.length,
        chunksOf(recording, 128 * 1024, async () => {
          if (chunks++ === 2) started++;
          if (chunks > 4) await (slow ? stall : new Promise((r) => setTimeout(r, 50)));
          else await new Promise((r) => setTimeout(r, 20));
        }),
      );
      return { recording, answer };
    });
    await eventually(
      async () => started,
      (n) => n === 6,
    );
    const exited = stop('SIGTERM');
    const answers = await Promise.all(uploads.map((u) => u.answer));
    expect(await exited).toBe(0);
    stalled();
    for (const [i, a] of answers.entries()) {
      if (i < 3) expect(a.status).toBe(201);
      else {
        expect(a.status).toBe(503);
        expect(JSON.parse(a.body).code).toBe('not_ready');
      }
    }
    await start();
    for (const [i, a] of answers.entries()) {
      if (a.status === 201)
        expect(await content(JSON.parse(a.body).id)).toBe(sha256(uploads[i]!.recording));
    }
    const rows = await ctx.db
      .selectFrom('evidence_items')
      .select('call_id')
      .where('call_id', 'like', 'term-%')
      .orderBy('call_id')
      .execute();
    expect(rows.map((r) => r.call_id)).toEqual(['term-0', 'term-1', 'term-2']);
    expect(await clean()).toEqual({ orphans: [], staging: [] });
  });
});
