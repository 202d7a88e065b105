import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { sha256 } from '../support/media';
import { upload } from '../support/multipart';
import { freePort } from '../support/own-postgres';
import { startServiceProcess, type ServiceProcess } from '../support/service-process';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(120_000);

const HEADERS_TIMEOUT_MS = 2000;
const IDLE_TIMEOUT_MS = 2000;
/** Node checks header deadlines every HEADERS_TIMEOUT_MS / 4; a busy machine adds a little. */
const CUT_WITHIN_MS = Math.max(HEADERS_TIMEOUT_MS, IDLE_TIMEOUT_MS) + 4000;

type Behaviour = 'idle' | 'slowloris' | 'headers-then-stall' | 'body-then-stall';

/**
 * A hostile client on a raw socket; resolves with how long the server let it live (ms), and
 * whether it answered anything before closing.
 */
function hostileClient(
  port: number,
  behaviour: Behaviour,
  key: string,
): Promise<{ ms: number; answered: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    let answered = '';
    const socket = net.connect(port, '127.0.0.1');
    let drip: NodeJS.Timeout | undefined;
    socket.on('connect', () => {
      if (behaviour === 'slowloris') {
        socket.write('GET /v1/evidence HTTP/1.1\r\nHost: x\r\n');
        // Always sending something: only the headers deadline can end it.
        drip = setInterval(
          () => socket.write(`X-Slow-${randomBytes(2).toString('hex')}: 1\r\n`),
          300,
        );
      } else if (behaviour === 'headers-then-stall') {
        socket.write(
          `POST /v1/evidence HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
            'Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000000\r\n\r\n',
        );
      } else if (behaviour === 'body-then-stall') {
        socket.write(
          `POST /v1/evidence HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
            'Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000000\r\n\r\n' +
            '--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\nphoto\r\n' +
            '--b\r\nContent-Disposition: form-data; name="file"; filename="stalled.jpg"\r\n' +
            'Content-Type: image/jpeg\r\n\r\n',
        );
        socket.write(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(200_000)]));
      }
    });
    socket.on('data', (c: Buffer) => (answered += c.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(drip);
      resolve({ ms: Date.now() - started, answered: answered.split('\r\n')[0] ?? '' });
    });
    // The test's own bound: a server that never cuts the client fails, it does not hang.
    setTimeout(() => socket.destroy(), 30_000).unref();
  });
}

/**
 * Slow and idle clients against the real service: each is cut per the configured timeouts, and
 * honest clients are served meanwhile; a stalled upload stores nothing.
 */
describe('slow and idle connections', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dataDir: string;
  let ctx: AppContext;
  let service: ServiceProcess;
  let keys: { ingest: string; support: string };
  let port: number;

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-slow-'));
    const env = { DATABASE_URL: database.url, DATA_DIR: dataDir };
    ctx = await AppContext.fromConfig(
      loadConfig({ ...env, LOG_LEVEL: 'silent' }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
    keys = {
      ingest: (await ctx.apiKeys.create('ingest', 'slow station')).key,
      support: (await ctx.apiKeys.create('support', 'slow support')).key,
    };
    port = await freePort();
    service = await startServiceProcess(
      {
        ...env,
        LOG_LEVEL: 'warn',
        WORKERS: '0',
        HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
        SOCKET_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
      },
      port,
    );
    await service.ready();
  });

  afterAll(async () => {
    await service?.kill();
    await ctx?.close();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('cuts 80 idle, slowloris and stalled clients per its timeouts while serving honest ones', async () => {
    const behaviours: Behaviour[] = ['idle', 'slowloris', 'headers-then-stall', 'body-then-stall'];
    const hostile = Array.from({ length: 80 }, (_, i) => {
      const behaviour = behaviours[i % behaviours.length]!;
      return hostileClient(port, behaviour, keys.ingest).then((r) => ({ behaviour, ...r }));
    });

    // Meanwhile honest clients upload and read, and are answered promptly.
    const honest: number[] = [];
    for (let i = 0; i < 5; i++) {
      const body = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(100_000)]);
      const started = Date.now();
      const res = await upload(service.url, keys.ingest, [['kind', 'photo']], {
        filename: `honest-${i}.jpg`,
        contentType: 'image/jpeg',
        content: body,
      });
      expect(res.status).toBe(201);
      const content = await fetch(`${service.url}/v1/evidence/${res.json().id}/content`, {
        headers: { Authorization: `Bearer ${keys.support}` },
      });
      expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(body));
      honest.push(Date.now() - started);
    }
    expect(Math.max(...honest)).toBeLessThan(HEADERS_TIMEOUT_MS);

    const results = await Promise.all(hostile);
    for (const r of results) {
      // Cut by the server (not by our 30 s bound), without an acknowledgement.
      expect({ behaviour: r.behaviour, cut: r.ms < CUT_WITHIN_MS }).toEqual({
        behaviour: r.behaviour,
        cut: true,
      });
      expect(r.answered).not.toMatch(/^HTTP\/1\.1 20/);
    }
    expect(service.alive()).toBe(true);

    // The stalled uploads stored nothing: no item, no staging left once their requests ended.
    const { rows } = await sql<{
      n: number;
    }>`select count(*)::int as n from evidence_items where original_filename = 'stalled.jpg'`.execute(
      ctx.db,
    );
    expect(rows[0]!.n).toBe(0);
    const staging = path.join(dataDir, 'blobs', 'staging');
    const until = Date.now() + 10_000;
    while (existsSync(staging) && readdirSync(staging).length > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(existsSync(staging) ? readdirSync(staging) : []).toEqual([]);
  });
});
