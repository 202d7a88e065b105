import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../../src/base/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/base/logger';
import { leftovers } from '../support/leftovers';
import { fakeMedia, sha256 } from '../support/media';
import { tusUpload } from '../support/tus';
import { childProcessReport } from '../support/openapi-validator';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(180_000);

const SERVICE = path.resolve(__dirname, '../support/run-service.js');
/** What the service answered, checked against the OpenAPI document (see run-service.js). */
const openapiReport = childProcessReport();

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
 * Kill the service (SIGKILL) at random points while a phone system pushes 20 recordings, and
 * while a station sends 20 resumable uploads, each retried until acknowledged: every acknowledged
 * upload is there with its hash, none twice, nothing partial, and no staging left once swept.
 */
describe('uploads while the service is killed', () => {
  let dataDir: string;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let ctx: AppContext;
  let service: ChildProcess | undefined;
  const port = 21000 + Math.floor(Math.random() * 10000);
  const url = `http://127.0.0.1:${port}`;

  const env = () => ({
    ...process.env,
    ...openapiReport.env,
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    PORT: String(port),
    LOG_LEVEL: 'silent',
    WORKERS: '0',
  });

  async function start(): Promise<void> {
    service = spawn(process.execPath, [SERVICE], { env: env(), stdio: 'ignore' });
    for (let i = 0; i < 600; i++) {
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
    ctx = await AppContext.fromConfig(
      loadConfig({ DATABASE_URL: database.url, DATA_DIR: dataDir, LOG_LEVEL: 'silent' }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
  });
  afterAll(async () => {
    if (service) await kill();
    await ctx.close();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
    openapiReport.assertClean();
  });

  /** SIGKILLs the service at random points, then starts it again, until stopped. */
  function startKiller(): { stop(): Promise<number> } {
    let running = true;
    let kills = 0;
    const loop = (async () => {
      while (running) {
        // Soon and often: uploads (with their events recorded, not chained, since the trail's
        // redesign) can finish before a slower killer has killed twice.
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 250));
        if (!running) break;
        await kill();
        kills++;
        await start();
      }
    })();
    // A restart that fails is reported by stop(); until then it must not surface as an unhandled
    // rejection in whichever suite runs next in this worker.
    loop.catch(() => undefined);
    return {
      async stop() {
        running = false;
        await loop;
        return kills;
      },
    };
  }

  it('keeps every acknowledged recording exactly once, with its hash, and nothing partial', async () => {
    const key = (await ctx.apiKeys.create('ingest', 'PBX')).key;
    const recordings = Array.from({ length: 20 }, (_, i) => ({
      callId: `kill-${i}`,
      body: fakeMedia('wav', 256 * 1024 + i),
      acknowledged: false,
    }));
    await start();
    const killer = startKiller();
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
    expect(await killer.stop()).toBeGreaterThanOrEqual(2);
    expect(recordings.every((r) => r.acknowledged)).toBe(true);

    const { rows } = await sql<{ call_id: string; sha256: string; n: string }>`
      select call_id, sha256, count(*) over (partition by call_id) as n
      from evidence_items where source = 'kill-test' order by call_id`.execute(ctx.db);
    expect(rows).toHaveLength(recordings.length);
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
    // Another instance's leftover sweep (this test's context is one) removes, at once, what the
    // killed service left: its staging, and blobs promoted by requests killed before their commit.
    await kill();
    await ctx.leftovers.runOnce();
    expect(await leftovers(ctx.db, path.join(dataDir, 'blobs'))).toEqual({
      orphans: [],
      staging: [],
    });
  });

  it('keeps every acknowledged resumable upload exactly once, with its hash, and nothing partial', async () => {
    const station = await ctx.apiKeys.create('ingest', 'PK-KILL');
    const clips = Array.from({ length: 32 }, (_, i) => ({
      body: fakeMedia('mp4', 1536 * 1024 + i),
      itemId: null as string | null,
      url: undefined as string | undefined,
    }));
    if (!service || service.exitCode !== null || service.signalCode !== null) await start();
    const killer = startKiller();
    // The station: each clip sent in 256 KiB chunks, resumed from the server's offset after
    // every failure (tus-js-client retries by itself first), until the item is named.
    await Promise.all(
      [0, 1, 2, 3].map(async (lane) => {
        for (const c of clips.filter((_, i) => i % 4 === lane)) {
          for (let attempt = 0; attempt < 100 && !c.itemId; attempt++) {
            try {
              const r = await tusUpload(
                url,
                station,
                c.body,
                { kind: 'packing_video', stationId: 'PK-KILL', sha256: sha256(c.body) },
                { chunkSize: 256 * 1024, uploadUrl: c.url, retryDelays: [100, 200, 400, 800] },
              );
              c.itemId = r.itemId;
              expect(r.digest).toBe(
                `sha-256=:${Buffer.from(sha256(c.body), 'hex').toString('base64')}:`,
              );
            } catch (err) {
              // Resume the same upload when the client learnt its URL before the failure.
              const known = (err as { originalRequest?: { getURL(): string } }).originalRequest;
              const at = known?.getURL();
              if (at && at.includes('/v1/uploads/')) c.url = at;
              await new Promise((res) => setTimeout(res, 200));
            }
          }
        }
      }),
    );
    expect(await killer.stop()).toBeGreaterThanOrEqual(2);
    expect(clips.every((c) => c.itemId)).toBe(true);

    const { rows } = await sql<{ id: string; sha256: string; size_bytes: number }>`
      select id, sha256, size_bytes from evidence_items where station_id = 'PK-KILL'`.execute(
      ctx.db,
    );
    expect(rows).toHaveLength(clips.length);
    for (const c of clips) {
      const row = rows.find((x) => x.sha256 === sha256(c.body));
      expect(row?.id).toBe(c.itemId);
      const stored = await ctx.blobStore.stat(
        `sha256/${row!.sha256.slice(0, 2)}/${row!.sha256.slice(2, 4)}/${row!.sha256}`,
      );
      expect(stored).toBe(c.body.length);
    }
    // Uploads created by a POST whose answer a kill swallowed are abandoned by the client; they
    // expire, and with the sweep nothing of any upload is left outside the content addresses.
    await kill();
    // The sweep as it runs once they expired (and store leftovers no row knows are an hour old).
    await ctx.uploads.sweep(new Date(Date.now() + 73 * 3600_000));
    const left: string[] = [];
    for await (const o of ctx.blobStore.list('resumable/')) left.push(o.key);
    expect(left).toEqual([]);
    const unfinished = await ctx.db.selectFrom('resumable_uploads').select('id').execute();
    expect(unfinished).toEqual([]);
    await ctx.leftovers.runOnce();
    expect(await leftovers(ctx.db, path.join(dataDir, 'blobs'))).toEqual({
      orphans: [],
      staging: [],
    });
  });
});
