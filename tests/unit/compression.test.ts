import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import express from 'express';
import { compression, negotiateEncoding } from '../../src/http/compression';

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
        })
        .on('error', reject);
    });

  it('streams a body written in pieces through gzip and br', async () => {
    const gz = await get('/stream', 'gzip');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).toString()).toBe(big);
    const br = await get('/stream', 'br');
    expect(br.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(br.body).toString()).toBe(big);
  });

  it.each(['ranges', 'etag', 'no-transform', 'image', 'partial'])(
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
});
