import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config';
import { buildContext, type AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { fakeMedia, sha256 } from '../support/media';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(180_000);

const SERVICE = path.resolve(__dirname, '../support/run-service.js');

/** One PUT; resolves with the status, or 0 when the connection died. */
function pushOnce(url: string, key: string, callId: string, body: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(
      `${url}/v1/calls/${callId}/recording?source=kill-test`,
      {
        method: 'PUT',
        headers: {
          Authorization: `Bearer ${key}`,
          'Content-Type': 'audio/wav',
          'Content-Length': body.length,
        },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    // Sent in slices, so that a kill often lands mid-body.
    let offset = 0;
    const next = () => {
      if (offset >= body.length) return void req.end();
      const slice = body.subarray(offset, (offset += 16 * 1024));
      req.write(slice, () => setTimeout(next, 10));
    };
    next();
  });
}

/**
 * Kill the service (SIGKILL) at random points while a phone system pushes 20 recordings, each
 * retried until acknowledged: every acknowledged recording is there with its hash, none twice,
 * nothing partial, and no staging left once swept.
 */
describe('raw pushes while the service is killed', () => {
  let dataDir: string;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let ctx: AppContext;
  let service: ChildProcess | undefined;
  const port = 21000 + Math.floor(Math.random() * 10000);
  const url = `http://127.0.0.1:${port}`;

  const env = () => ({
    ...process.env,
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    PORT: String(port),
    LOG_LEVEL: 'silent',
    WORKERS: '0',
  });

  async function start(): Promise<void> {
    service = spawn(process.execPath, [SERVICE], { env: env(), stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      const ok = await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the service did not start');
  }

  function kill(): Promise<void> {
    const proc = service!;
    if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-kill-'));
    // The same context the service builds: migrations, and a key for the phone system.
    ctx = await buildContext(
      loadConfig({ DATABASE_URL: database.url, DATA_DIR: dataDir, LOG_LEVEL: 'silent' }),
      createLogger('silent'),
      { migrate: true, mediaTools: false },
    );
  });
  afterAll(async () => {
    if (service) await kill();
    await ctx.close();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged recording exactly once, with its hash, and nothing partial', async () => {
    const key = (await ctx.apiKeys.create('ingest', 'PBX')).key;
    const recordings = Array.from({ length: 20 }, (_, i) => ({
      callId: `kill-${i}`,
      body: fakeMedia('wav', 256 * 1024 + i),
      acknowledged: false,
    }));
    await start();
    let running = true;
    let kills = 0;
    // A killer: at random points, SIGKILL the service, then start it again.
    const killer = (async () => {
      while (running) {
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
        if (!running) break;
        await kill();
        kills++;
        await start();
      }
    })();
    // The phone system: each recording pushed until acknowledged, several at once.
    await Promise.all(
      [0, 1, 2, 3].map(async (lane) => {
        for (const r of recordings.filter((_, i) => i % 4 === lane)) {
          for (let attempt = 0; attempt < 200 && !r.acknowledged; attempt++) {
            const status = await pushOnce(url, key, r.callId, r.body);
            if (status === 200 || status === 201) r.acknowledged = true;
            else await new Promise((res) => setTimeout(res, 100));
          }
        }
      }),
    );
    running = false;
    await killer;
    expect(kills).toBeGreaterThanOrEqual(2);
    expect(recordings.every((r) => r.acknowledged)).toBe(true);

    const { rows } = await sql<{ call_id: string; sha256: string; n: string }>`
      select call_id, sha256, count(*) over (partition by call_id) as n
      from evidence_items where source = 'kill-test' order by call_id`.execute(ctx.db);
    expect(rows).toHaveLength(20);
    for (const r of recordings) {
      const row = rows.find((x) => x.call_id === r.callId)!;
      expect([r.callId, row.sha256, Number(row.n)]).toEqual([r.callId, sha256(r.body), 1]);
    }
    // Every item's bytes are whole, and staging left by killed uploads goes with the sweep.
    for (const row of rows) {
      const stored = await ctx.blobStore.stat(
        `sha256/${row.sha256.slice(0, 2)}/${row.sha256.slice(2, 4)}/${row.sha256}`,
      );
      expect(stored).toBe(256 * 1024 + Number(row.call_id.slice(5)));
    }
    await kill();
    await ctx.blobStore.sweepStaging(new Date(Date.now() + 1000));
    const staging: string[] = [];
    for await (const o of ctx.blobStore.list('staging/')) staging.push(o.key);
    expect(staging).toEqual([]);
  });
});
