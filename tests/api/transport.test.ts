import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import request from 'supertest';
import {
  bearer,
  DRIVERS,
  itemCount,
  settledStaging,
  startTestApp,
  storedKeys,
  type TestApp,
} from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A file that arrives slowly: `chunks` pieces, one every `everyMs`. */
async function* trickle(chunks: number, everyMs: number): AsyncGenerator<Buffer> {
  yield fakeMedia('mp4', 8 * 1024);
  for (let i = 1; i < chunks; i++) {
    await sleep(everyMs);
    yield randomBytes(8 * 1024);
  }
}

/** Opens a socket, writes `payload`, and resolves with ms until the server closed it. */
function timeUntilClosed(url: string, payload: string, maxMs: number): Promise<number> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1', () => socket.write(payload));
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Date.now() - started));
    setTimeout(() => socket.destroy(), maxMs).unref();
  });
}

describe('server timeouts', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', { HEADERS_TIMEOUT_MS: '1000', SOCKET_IDLE_TIMEOUT_MS: '1000' });
  });
  afterAll(() => app.close());

  it('keeps a slow but steady upload going far past the header and idle timeouts', async () => {
    const started = Date.now();
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'slow.mp4',
      content: trickle(12, 300),
    });
    expect(Date.now() - started).toBeGreaterThan(3000);
    expect(res.status).toBe(201);
  });

  it('closes a slow-header client that keeps sending a byte at a time (slowloris)', async () => {
    const ms = await new Promise<number>((resolve) => {
      const started = Date.now();
      const socket = net.connect(Number(new URL(app.url).port), '127.0.0.1', () =>
        socket.write('GET /healthz HTTP/1.1\r\n'),
      );
      // Active enough that the idle timeout never fires; only the headers deadline can end it.
      const drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 200);
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearInterval(drip);
        resolve(Date.now() - started);
      });
      setTimeout(() => socket.destroy(), 8000).unref();
    });
    expect(ms).toBeLessThan(4000);
  });

  it('closes an idle connection', async () => {
    expect(await timeUntilClosed(app.url, '', 8000)).toBeLessThan(5000);
  });

  it('closes an upload that stalls mid-body, and stores nothing', async () => {
    const rows = await itemCount(app);
    const keys = await storedKeys(app);
    const head =
      `POST /v1/evidence HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${app.keys.ingest.key}\r\n` +
      'Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n' +
      '--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\npacking_video\r\n' +
      '--b\r\nContent-Disposition: form-data; name="file"; filename="s.mp4"\r\n\r\n' +
      '\u0000\u0000\u0000\u0018ftypmp42';
    expect(await timeUntilClosed(app.url, head, 8000)).toBeLessThan(5000);
    await sleep(200);
    expect(await itemCount(app)).toBe(rows);
    expect(await storedKeys(app)).toEqual(keys);
  });
});

describe('a promotion slower than the idle timeout', () => {
  it('still acknowledges the upload (a multi-GB S3 copy keeps the socket silent)', async () => {
    // The real disk store, with promotion held back past SOCKET_IDLE_TIMEOUT_MS.
    const app = await startTestApp(
      'fs',
      { SOCKET_IDLE_TIMEOUT_MS: '1000' },
      {
        wrapBlobStore: (store) =>
          Object.assign(Object.create(store) as typeof store, {
            promote: async (...args: Parameters<typeof store.promote>) => {
              await sleep(2500);
              return store.promote(...args);
            },
          }),
      },
    );
    try {
      const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'slow-promote.mp4',
        content: fakeMedia('mp4'),
      });
      expect(res.status).toBe(201);
    } finally {
      await app.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('finishes in-flight uploads, refuses new connections, then stops', async () => {
    const app = await startTestApp('fs');
    try {
      const inFlight = upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'late.mp4',
        content: trickle(6, 200),
      });
      await sleep(300);
      const closing = app.server.close(10_000);
      await sleep(100);
      await expect(request(app.url).get('/healthz')).rejects.toThrow(/ECONNREFUSED/);
      expect((await inFlight).status).toBe(201);
      await closing;
    } finally {
      await app.close();
    }
  });

  it('refuses (503, Retry-After) and cuts uploads still running when the grace period ends, without acknowledging or keeping them', async () => {
    const app = await startTestApp('fs');
    try {
      const rows = await itemCount(app);
      const inFlight = upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'cut.mp4',
        content: trickle(30, 200),
      }).then(
        (res) => [res.status, res.headers['retry-after'], res.json().code],
        () => 'connection closed',
      );
      await sleep(300);
      await app.server.close(300);
      expect(await inFlight).toEqual([503, '5', 'not_ready']);
      await sleep(200);
      expect(await itemCount(app)).toBe(rows);
      expect(await settledStaging(app)).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe.each(DRIVERS)('a 300 MB upload (%s driver)', (driver) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(driver);
  });
  afterAll(() => app.close());

  it('streams in and back out with the same SHA-256', async () => {
    const size = 300 * 1024 * 1024;
    const hash = createHash('sha256');
    async function* generate(): AsyncGenerator<Buffer> {
      const first = fakeMedia('mp4', 1024 * 1024);
      hash.update(first);
      yield first;
      for (let sent = first.length; sent < size;) {
        const chunk = randomBytes(Math.min(1024 * 1024, size - sent));
        hash.update(chunk);
        sent += chunk.length;
        yield chunk;
      }
    }
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'BIG-1'],
      ],
      {
        filename: 'big.mp4',
        content: generate(),
      },
    );
    const expected = hash.digest('hex');
    expect(res.status).toBe(201);
    expect(res.json()).toMatchObject({ size, sha256: expected });

    const download = createHash('sha256');
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      http
        .get(
          `${app.url}/v1/evidence/${res.json().id}/content`,
          { headers: bearer(app.keys.support) },
          (stream) => {
            expect(stream.statusCode).toBe(200);
            stream.on('data', (c: Buffer) => {
              download.update(c);
              received += c.length;
            });
            stream.on('end', resolve);
            stream.on('error', reject);
          },
        )
        .on('error', reject);
    });
    expect(received).toBe(size);
    expect(download.digest('hex')).toBe(expected);
  }, 180_000);
});

describe('database connections dropped by the server', () => {
  it('keeps serving after PostgreSQL terminates its idle connections', async () => {
    const app = await startTestApp('fs');
    try {
      const ok = () =>
        request(app.url).get('/v1/orders/ORD-X/evidence').set(bearer(app.keys.support));
      expect((await ok()).status).toBe(200);
      // What a failover or an administrator does: kill every other session of this database.
      const pg = (await import('pg')).default;
      const admin = new pg.Client({ connectionString: app.databaseUrl });
      await admin.connect();
      const { rowCount } = await admin.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and application_name = 'evidence-archive'`,
      );
      await admin.end();
      expect(rowCount).toBeGreaterThan(0);
      await sleep(200);
      expect((await ok()).status).toBe(200);
      expect((await request(app.url).get('/readyz')).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
