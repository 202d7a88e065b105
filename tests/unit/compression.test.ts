import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib, { brotliDecompressSync, gunzipSync } from 'node:zlib';
import express from 'express';
import { compression, negotiateEncoding, ONE_SHOT_MAX_BYTES } from '../../src/http/compression';

describe('Accept-Encoding negotiation (RFC 9110 §12.5.3)', () => {
  it.each([
    [undefined, undefined, false], // never asked: never compressed
    ['', undefined, false],
    ['identity', undefined, false],
    ['gzip', 'gzip', false],
    ['x-gzip', 'gzip', false],
    ['GZIP', 'gzip', false],
    ['br', 'br', false],
    ['gzip, deflate, br', 'br', false], // a tie: br, the smaller
    ['gzip, deflate, br, zstd', 'br', false], // Chromium
    ['gzip;q=1.0, br;q=0.5', 'gzip', false],
    ['br;q=0.8, gzip;q=0.2', 'br', false],
    ['gzip;q=0, br;q=0', undefined, false],
    ['deflate', undefined, false],
    ['*', 'br', false],
    ['*;q=0.5, br;q=0', 'gzip', false],
    ['gzip;q=0.5, identity', undefined, false], // identity preferred
    ['gzip;q=0.5, identity;q=0.5', 'gzip', false],
    ['identity;q=0, gzip', 'gzip', true],
    ['*;q=0, gzip', 'gzip', true],
    ['*;q=0, identity, gzip;q=0.1', undefined, false],
    ['*;q=0', undefined, true],
    ['gzip;q=2, br;q=abc', undefined, false], // malformed q-values: those entries are ignored
    ['gzip;q=0.001', 'gzip', false],
    [' gzip ; q=0.7 ,br;q=0.6', 'gzip', false],
  ])('%j → %s (identity refused: %s)', (header, coding, identityRefused) => {
    expect(negotiateEncoding(header)).toEqual({ coding, identityRefused });
  });
});

describe('compression middleware on a real socket', () => {
  let server: http.Server;
  let base: string;
  let endedAfterEnd: boolean | undefined;
  let endCallback: Promise<string> | undefined;
  let wholeCallback: Promise<string> | undefined;
  const medium = JSON.stringify({
    rows: Array.from({ length: 60 }, (_, i) => ({ i, v: 'y'.repeat(40) })),
  });
  const big = JSON.stringify({
    rows: Array.from({ length: 5000 }, (_, i) => ({ i, v: 'x'.repeat(40) })),
  });

  beforeAll(async () => {
    const app = express();
    app.set('etag', false); // as the service: an ETag alone would keep these from being compressed
    app.use(compression());
    // A JSON body written piece by piece, waiting for 'drain' as a stream producer does.
    app.get('/stream', async (_req, res) => {
      res.type('application/json');
      for (let i = 0; i < big.length; i += 4096) {
        if (!res.write(big.slice(i, i + 4096))) await once(res, 'drain');
      }
      res.end();
    });
    const guarded: [string, Record<string, string>][] = [
      ['ranges', { 'Accept-Ranges': 'bytes' }],
      ['etag', { ETag: '"abc"' }],
      ['no-transform', { 'Cache-Control': 'private, no-transform' }],
      ['encoded', { 'Content-Encoding': 'identity' }],
      // A digest names the bytes as sent: compressing would make it false.
      ['repr-digest', { 'Repr-Digest': 'sha-256=:AAAA:' }],
      ['content-digest', { 'Content-Digest': 'sha-256=:AAAA:' }],
    ];
    for (const [name, headers] of guarded) {
      app.get(`/${name}`, (_req, res) => {
        res.set(headers).type('application/json').send(big);
      });
    }
    app.get('/image', (_req, res) => {
      res.type('image/jpeg').send(Buffer.from(big));
    });
    app.get('/partial', (_req, res) => {
      res.status(206).set('Content-Range', `bytes 0-99/${big.length}`).type('text/plain');
      res.send(big.slice(0, 100));
    });
    // After end(), the answer is complete: an error raised later must not cut it (the service's
    // error middleware destroys the socket of an answer that started but did not end).
    app.get('/late-error', (_req, res, next) => {
      res.type('application/json').send(big);
      endedAfterEnd = res.writableEnded;
      next(new Error('raised after the answer'));
    });
    app.get('/double-end', (_req, res) => {
      res.type('application/json');
      res.end(big);
      res.end('again'); // plain Node ignores it
    });
    app.get('/end-callback', (_req, res) => {
      res.type('application/json');
      endCallback = new Promise((resolve) => res.end(big, () => resolve('called')));
    });
    // An order's lookup: a few KB of JSON handed whole to end(), compressed in one call.
    app.get('/whole', (_req, res) => {
      res.type('application/json').send(medium);
    });
    app.get('/whole-callback', (_req, res) => {
      res.type('application/json');
      wholeCallback = new Promise((resolve) => res.end(medium, () => resolve('called')));
    });
    app.get('/held-then-whole', (_req, res) => {
      res.type('application/json');
      res.write('[');
      res.end(`${medium}]`);
    });
    app.get('/write-head', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(big);
    });
    app.get('/small-writes', (_req, res) => {
      res.type('application/json');
      for (let i = 0; i < 5; i++) res.write('ab'); // 10 bytes, length unknown at header time
      res.end();
    });
    app.get('/writes-past-threshold', (_req, res) => {
      res.type('application/json');
      for (let i = 0; i < big.length; i += 100) res.write(big.slice(i, i + 100));
      res.end();
    });
    app.use(
      (err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        if (res.writableEnded) return;
        if (res.headersSent) return void res.destroy(err);
        res.status(500).end();
      },
    );
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  const get = (path: string, encoding: string) =>
    new Promise<{ headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http
        .get(`${base}${path}`, { headers: { 'Accept-Encoding': encoding } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject); // the socket cut mid-answer
        })
        .on('error', reject);
    });

  const getPlain = (path: string) =>
    new Promise<{ headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http
        .get(`${base}${path}`, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        })
        .on('error', reject);
    });

  it('answers a client that sent no Accept-Encoding as is, with Vary on compressible types', async () => {
    for (const path of ['/stream', '/write-head', '/double-end', '/late-error', '/end-callback']) {
      const plain = await getPlain(path);
      expect(plain.headers['content-encoding']).toBeUndefined();
      expect(plain.headers.vary).toMatch(/Accept-Encoding/i);
      expect(plain.body.toString()).toBe(big);
    }
    expect(endedAfterEnd).toBe(true);
    await expect(endCallback).resolves.toBe('called');
    const image = await getPlain('/image');
    expect(image.headers.vary).toBeUndefined();
    expect(image.body.length).toBe(big.length);
  });

  it('streams a body written in pieces through gzip and br', async () => {
    const gz = await get('/stream', 'gzip');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).toString()).toBe(big);
    const br = await get('/stream', 'br');
    expect(br.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(br.body).toString()).toBe(big);
  });

  it.each(['ranges', 'etag', 'no-transform', 'image', 'partial', 'repr-digest', 'content-digest'])(
    'leaves %s alone, byte for byte',
    async (name) => {
      const res = await get(`/${name}`, 'gzip, br');
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body.toString()).toBe(name === 'partial' ? big.slice(0, 100) : big);
    },
  );

  it('does not encode twice', async () => {
    const res = await get('/encoded', 'gzip');
    expect(res.headers['content-encoding']).toBe('identity');
    expect(res.body.toString()).toBe(big);
  });

  const unzip = (r: { headers: http.IncomingHttpHeaders; body: Buffer }) =>
    r.headers['content-encoding'] === 'gzip' ? gunzipSync(r.body) : r.body;

  it('reports writableEnded once end() was called, so a later error does not cut the answer', async () => {
    const res = await get('/late-error', 'gzip');
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(unzip(res).toString()).toBe(big);
    expect(endedAfterEnd).toBe(true);
  });

  it('ignores a second end(), as plain Node does', async () => {
    const res = await get('/double-end', 'gzip');
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(unzip(res).toString()).toBe(big);
  });

  it('calls end()’s callback when a compressed answer is finished', async () => {
    const res = await get('/end-callback', 'gzip');
    expect(res.headers['content-encoding']).toBe('gzip');
    const timeout = new Promise((resolve) => setTimeout(() => resolve('never called'), 2000));
    expect(await Promise.race([endCallback, timeout])).toBe('called');
  });

  it('compresses a small body handed whole to end() in one call, with its Content-Length', async () => {
    expect(medium.length).toBeGreaterThan(1024);
    expect(medium.length).toBeLessThan(ONE_SHOT_MAX_BYTES);
    for (const [coding, decode] of [
      ['gzip', gunzipSync],
      ['br', brotliDecompressSync],
    ] as const) {
      for (const path of ['/whole', '/whole-callback']) {
        const res = await get(path, coding);
        expect([path, res.headers['content-encoding']]).toEqual([path, coding]);
        expect(res.headers['content-length']).toBe(String(res.body.length));
        expect(res.headers['transfer-encoding']).toBeUndefined();
        expect(res.headers.vary).toMatch(/Accept-Encoding/i);
        expect(decode(res.body).toString()).toBe(medium);
      }
    }
    await expect(wholeCallback).resolves.toBe('called');
    // Held back below the threshold until end() brought the rest: compressed whole too.
    const held = await get('/held-then-whole', 'gzip');
    expect(held.headers['content-encoding']).toBe('gzip');
    expect(held.headers['content-length']).toBe(String(held.body.length));
    expect(gunzipSync(held.body).toString()).toBe(`[${medium}]`);
  });

  it('sends a body as it is, with no Content-Encoding, when the one-call compressor fails', async () => {
    const failing = (() => {
      throw new Error('out of memory');
    }) as never;
    const gzip = jest.spyOn(zlib, 'gzipSync').mockImplementation(failing);
    const br = jest.spyOn(zlib, 'brotliCompressSync').mockImplementation(failing);
    try {
      for (const path of ['/whole', '/held-then-whole']) {
        for (const coding of ['gzip', 'br']) {
          const res = await get(path, coding);
          expect([path, coding, res.headers['content-encoding']]).toEqual([
            path,
            coding,
            undefined,
          ]);
          expect(res.headers['content-length']).toBe(String(res.body.length));
          expect(res.body.toString()).toBe(path === '/whole' ? medium : `[${medium}]`);
        }
      }
      expect(gzip).toHaveBeenCalled();
      expect(br).toHaveBeenCalled();
    } finally {
      gzip.mockRestore();
      br.mockRestore();
    }
  });

  it('keeps the 1 KiB threshold when the length is unknown at header time', async () => {
    const small = await get('/small-writes', 'gzip, br');
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.headers['content-length']).toBe('10');
    expect(small.body.toString()).toBe('ababababab');
    const large = await get('/writes-past-threshold', 'gzip');
    expect(large.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(large.body).toString()).toBe(big);
  });
});
