import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { Express } from 'express';
import request from 'supertest';
import type { AppContext } from '../../src/context';
import { createApp } from '../../src/http/app';
import { openApiCompressions } from '../../src/http/openapi-document';
import openapi from '../../src/http/openapi.json';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The bytes as they came over the wire: nothing decoded. */
  body: Buffer;
}

/** One request over a plain socket: node's http client decodes nothing, so bytes are as sent. */
function raw(
  url: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
  body?: string,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const varies = (h: http.IncomingHttpHeaders, name: string) =>
  String(h.vary ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .includes(name.toLowerCase());

const corsHeaders = (h: http.IncomingHttpHeaders | Headers) =>
  (h instanceof Headers ? [...h.keys()] : Object.keys(h)).filter((k) =>
    k.toLowerCase().startsWith('access-control-'),
  );

describe('compression', () => {
  let app: TestApp;
  let itemId: string;
  let content: Buffer;
  beforeAll(async () => {
    app = await startTestApp('fs');
    content = fakeMedia('mp4', 256 * 1024);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-Z1'],
      ],
      { filename: 'clip.mp4', content },
    );
    expect(res.status).toBe(201);
    itemId = res.json().id;
  });
  afterAll(() => app.close());

  it('serves /openapi.json compressed to a real client, which decodes it (node fetch: undici)', async () => {
    const res = await fetch(`${app.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(['br', 'gzip']).toContain(res.headers.get('content-encoding'));
    expect(res.headers.get('vary')).toMatch(/Accept-Encoding/i);
    expect(await res.json()).toEqual(openapi);
  });

  // (Buffers compared with equals(): jest's toEqual walks 290 KB byte by byte, for seconds.)
  it('compresses /openapi.json once per coding, with a strong ETag and 304 on If-None-Match', async () => {
    const identity = Buffer.from(JSON.stringify(openapi));
    const first = {
      br: await raw(app.url, '/openapi.json', { 'Accept-Encoding': 'br' }),
      gzip: await raw(app.url, '/openapi.json', { 'Accept-Encoding': 'gzip' }),
      identity: await raw(app.url, '/openapi.json'),
    };
    expect(brotliDecompressSync(first.br.body).equals(identity)).toBe(true);
    expect(gunzipSync(first.gzip.body).equals(identity)).toBe(true);
    expect(first.identity.body.equals(identity)).toBe(true);
    const tags = Object.values(first).map((r) => String(r.headers.etag));
    expect(new Set(tags).size).toBe(3); // one strong tag per representation
    for (const tag of tags) expect(tag).toMatch(/^"[0-9a-f]{64}(-(br|gzip))?"$/);
    // From now on, served from memory: the same bytes, no compression at all.
    const compressed = openApiCompressions.count;
    for (const coding of ['br', 'gzip'] as const) {
      for (let i = 0; i < 3; i++) {
        const again = await raw(app.url, '/openapi.json', { 'Accept-Encoding': coding });
        expect(again.body.equals(first[coding].body)).toBe(true);
        expect(again.headers.etag).toBe(first[coding].headers.etag);
      }
    }
    expect(openApiCompressions.count).toBe(compressed);
    // If-None-Match: 304 for the representation's own tag (weakly compared), 200 for another's.
    for (const [coding, res] of Object.entries(first)) {
      const ae: Record<string, string> = coding === 'identity' ? {} : { 'Accept-Encoding': coding };
      for (const inm of [
        res.headers.etag!,
        `W/${res.headers.etag}`,
        `"nope", ${res.headers.etag}`,
        '*',
      ]) {
        const cached = await raw(app.url, '/openapi.json', { ...ae, 'If-None-Match': inm });
        expect([coding, inm, cached.status, cached.body.length]).toEqual([coding, inm, 304, 0]);
        expect(cached.headers.etag).toBe(res.headers.etag);
      }
    }
    const other = await raw(app.url, '/openapi.json', {
      'Accept-Encoding': 'gzip',
      'If-None-Match': first.br.headers.etag!,
    });
    expect([other.status, other.headers['content-encoding']]).toEqual([200, 'gzip']);
  });

  it('answers HEAD /openapi.json as its GET: same coding, length and ETag', async () => {
    for (const ae of ['br', 'gzip', 'gzip, deflate, br', 'identity']) {
      const get = await raw(app.url, '/openapi.json', { 'Accept-Encoding': ae });
      const head = await raw(app.url, '/openapi.json', { 'Accept-Encoding': ae }, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      for (const h of ['content-encoding', 'content-length', 'content-type', 'etag', 'vary']) {
        expect([ae, h, head.headers[h]]).toEqual([ae, h, get.headers[h]]);
      }
      expect(Number(get.headers['content-length'])).toBe(get.body.length);
    }
  });

  it('compresses with the coding the client prefers, honouring q-values', async () => {
    const json = JSON.stringify(openapi);
    const cases: [string, 'gzip' | 'br' | undefined][] = [
      ['gzip', 'gzip'],
      ['br', 'br'],
      ['gzip, deflate, br', 'br'],
      ['gzip;q=1.0, br;q=0.5', 'gzip'],
      ['br;q=0.9, gzip;q=0.3', 'br'],
      ['*', 'br'],
      ['gzip;q=0, br;q=0', undefined],
      ['gzip;q=0.5, identity', undefined],
      ['identity', undefined],
      ['deflate', undefined],
    ];
    for (const [accept, coding] of cases) {
      const res = await raw(app.url, '/openapi.json', { 'Accept-Encoding': accept });
      expect({ accept, status: res.status, coding: res.headers['content-encoding'] }).toEqual({
        accept,
        status: 200,
        coding,
      });
      expect(varies(res.headers, 'Accept-Encoding')).toBe(true);
      const decoded =
        coding === 'gzip'
          ? gunzipSync(res.body)
          : coding === 'br'
            ? brotliDecompressSync(res.body)
            : res.body;
      expect(decoded.toString('utf8')).toBe(json);
      // Compressed once and served from memory: its length is known, compressed or not.
      expect(Number(res.headers['content-length'])).toBe(res.body.length);
      if (coding) expect(res.body.length).toBeLessThan(json.length / 4);
    }
    // Asked for nothing: nothing compressed (curl without --compressed).
    const plain = await raw(app.url, '/openapi.json');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.toString('utf8')).toBe(json);
  });

  it('leaves a small body alone, unless identity is refused; problem+json too', async () => {
    const small = await raw(app.url, '/healthz', { 'Accept-Encoding': 'gzip' });
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(varies(small.headers, 'Accept-Encoding')).toBe(true);
    expect(JSON.parse(small.body.toString())).toEqual({ status: 'ok' });

    const refused = await raw(app.url, '/healthz', { 'Accept-Encoding': 'identity;q=0, gzip' });
    expect(refused.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(refused.body).toString())).toEqual({ status: 'ok' });

    const problem = await raw(app.url, '/v2/nothing', { 'Accept-Encoding': '*;q=0, br' });
    expect(problem.status).toBe(404);
    expect(problem.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(problem.headers['content-encoding']).toBe('br');
    expect(JSON.parse(brotliDecompressSync(problem.body).toString()).code).toBe('route_not_found');
  });

  it('compresses large JSON lists and the metrics text for clients that decode them (supertest)', async () => {
    for (let i = 0; i < 30; i++) {
      await request(app.url).get(`/v1/evidence/${itemId}`).set(bearer(app.keys.support));
    }
    const trail = await raw(app.url, `/v1/evidence/${itemId}/audit`, {
      ...bearer(app.keys.support),
      'Accept-Encoding': 'gzip',
    });
    expect(trail.status).toBe(200);
    expect(trail.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(trail.body).toString()).events.length).toBeGreaterThan(30);

    const metrics = await request(app.url)
      .get('/metrics')
      .set(bearer(app.keys.admin))
      .set('Accept-Encoding', 'gzip');
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-encoding']).toBe('gzip');
    expect(metrics.text).toMatch(/^# (HELP|TYPE) /m);
  });

  it('never compresses evidence: the same bytes, ETag and Repr-Digest, whole or in ranges', async () => {
    const digest = `sha-256=:${Buffer.from(sha256(content), 'hex').toString('base64')}:`;
    for (const accept of ['gzip', 'br', 'gzip, br, *', 'identity;q=0, gzip']) {
      const res = await raw(app.url, `/v1/evidence/${itemId}/content`, {
        ...bearer(app.keys.support),
        'Accept-Encoding': accept,
      });
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.headers.etag).toBe(`"${sha256(content)}"`);
      expect(res.headers['repr-digest']).toBe(digest);
      expect(Number(res.headers['content-length'])).toBe(content.length);
      expect(res.body.equals(content)).toBe(true);

      const part = await raw(app.url, `/v1/evidence/${itemId}/content`, {
        ...bearer(app.keys.support),
        'Accept-Encoding': accept,
        Range: 'bytes=1000-1999',
      });
      expect(part.status).toBe(206);
      expect(part.headers['content-encoding']).toBeUndefined();
      expect(part.headers['content-range']).toBe(`bytes 1000-1999/${content.length}`);
      expect(part.body.equals(content.subarray(1000, 2000))).toBe(true);
    }
  });

  it('never compresses share-link content or ZIP bundles', async () => {
    const link = await request(app.url)
      .post('/v1/share-links')
      .set(bearer(app.keys.support))
      .send({ itemId });
    expect(link.status).toBe(201);
    const shared = await raw(app.url, link.body.url, { 'Accept-Encoding': 'gzip, br' });
    expect(shared.status).toBe(200);
    expect(shared.headers['content-encoding']).toBeUndefined();
    expect(shared.body.equals(content)).toBe(true);

    const complaint = await request(app.url)
      .put('/v1/complaints/CMP-Z1')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-Z1'] });
    expect(complaint.status).toBe(201);
    await request(app.url)
      .post(`/v1/evidence/${itemId}/links`)
      .set(bearer(app.keys.support))
      .send({ complaintIds: ['CMP-Z1'] })
      .expect(200);
    const bundle = await request(app.url)
      .post('/v1/complaints/CMP-Z1/bundles')
      .set(bearer(app.keys.support))
      .send({});
    expect(bundle.status).toBe(201);
    const zip = await raw(app.url, bundle.body.downloadUrl, {
      ...bearer(app.keys.support),
      'Accept-Encoding': 'gzip, br',
    });
    expect(zip.status).toBe(200);
    expect(zip.headers['content-type']).toBe('application/zip');
    expect(zip.headers['content-encoding']).toBeUndefined();
    expect(zip.body.length).toBe(Number(zip.headers['content-length']));
    expect(zip.body.subarray(0, 4).toString('hex')).toBe('504b0304');
  });
});

describe('CORS', () => {
  const DASH = 'https://dash.example.com';
  const EVIL = 'https://evil.example';
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', { CORS_ORIGINS: `${DASH}, http://127.0.0.1:5173` });
  });
  afterAll(() => app.close());

  const preflight = (path: string, origin: string, method: string, headers: string) =>
    raw(
      app.url,
      path,
      {
        Origin: origin,
        'Access-Control-Request-Method': method,
        'Access-Control-Request-Headers': headers,
      },
      'OPTIONS',
    );

  it('answers a listed origin’s preflight with exactly that origin, the methods and the headers', async () => {
    const res = await preflight('/v1/evidence', DASH, 'POST', 'authorization,idempotency-key');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(DASH);
    expect(res.headers['access-control-allow-methods']).toBe('GET, HEAD, POST, OPTIONS');
    const allowHeaders = String(res.headers['access-control-allow-headers'])
      .split(',')
      .map((h) => h.trim().toLowerCase());
    for (const h of [
      'authorization',
      'content-type',
      'idempotency-key',
      'if-none-match',
      'range',
      'tus-resumable',
      'upload-length',
      'upload-metadata',
      'upload-offset',
    ]) {
      expect(allowHeaders).toContain(h);
    }
    expect(Number(res.headers['access-control-max-age'])).toBeGreaterThan(0);
    expect(varies(res.headers, 'Origin')).toBe(true);
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();

    const tus = await preflight('/v1/uploads', DASH, 'POST', 'tus-resumable,upload-length');
    expect(tus.status).toBe(204);
    expect(tus.headers['access-control-allow-origin']).toBe(DASH);
    expect(tus.headers['access-control-allow-methods']).toBe('POST, OPTIONS');
    const patch = await preflight('/v1/uploads/abc', DASH, 'PATCH', 'upload-offset');
    expect(patch.headers['access-control-allow-methods']).toBe(
      'HEAD, POST, PATCH, DELETE, OPTIONS',
    );
  });

  it('lets a listed origin read answers and the headers it needs, without credentials', async () => {
    const me = await raw(app.url, '/v1/me', { ...bearer(app.keys.support), Origin: DASH });
    expect(me.status).toBe(200);
    expect(me.headers['access-control-allow-origin']).toBe(DASH);
    expect(me.headers['access-control-allow-credentials']).toBeUndefined();
    expect(varies(me.headers, 'Origin')).toBe(true);
    const exposed = String(me.headers['access-control-expose-headers'])
      .split(',')
      .map((h) => h.trim().toLowerCase());
    for (const h of [
      'etag',
      'location',
      'retry-after',
      'content-range',
      'repr-digest',
      'upload-offset',
      'tus-resumable',
      'evidence-item-id',
      'x-request-id',
    ]) {
      expect(exposed).toContain(h);
    }
    // Errors too: a page must be able to read why it was refused.
    const refused = await raw(app.url, '/v1/me', { Origin: 'http://127.0.0.1:5173' });
    expect(refused.status).toBe(401);
    expect(refused.headers['access-control-allow-origin']).toBe('http://127.0.0.1:5173');
  });

  it('gives any other origin no CORS header at all, never reflecting it', async () => {
    for (const origin of [
      EVIL,
      'null',
      `${DASH}.evil.example`,
      'https://DASH.example.com',
      `${DASH}/`,
    ]) {
      const res = await raw(app.url, '/v1/me', { ...bearer(app.keys.support), Origin: origin });
      expect({ origin, cors: corsHeaders(res.headers) }).toEqual({ origin, cors: [] });
      const pre = await preflight('/v1/evidence', origin, 'POST', 'authorization');
      expect({ origin, cors: corsHeaders(pre.headers) }).toEqual({ origin, cors: [] });
    }
  });

  it('the tus endpoint follows the same policy (no more reflecting any origin)', async () => {
    const create = (origin: string) =>
      raw(
        app.url,
        '/v1/uploads',
        {
          ...bearer(app.keys.ingest),
          Origin: origin,
          'Tus-Resumable': '1.0.0',
          'Upload-Length': '70000',
          'Upload-Metadata': `kind ${Buffer.from('packing_video').toString('base64')}`,
        },
        'POST',
      );
    const listed = await create(DASH);
    expect(listed.status).toBe(201);
    expect(listed.headers['access-control-allow-origin']).toBe(DASH);
    expect(String(listed.headers['access-control-expose-headers'])).toMatch(/Location/);
    const stranger = await create(EVIL);
    expect(stranger.status).toBe(201);
    expect(corsHeaders(stranger.headers)).toEqual([]);
    const discovery = await raw(app.url, '/v1/uploads', { Origin: EVIL }, 'OPTIONS');
    expect(discovery.status).toBe(204);
    expect(discovery.headers['tus-version']).toBe('1.0.0');
    expect(corsHeaders(discovery.headers)).toEqual([]);
    const strangerPreflight = await preflight('/v1/uploads', EVIL, 'POST', 'tus-resumable');
    expect(corsHeaders(strangerPreflight.headers)).toEqual([]);
  });

  it('keeps the web app’s session cookie SameSite=Strict and never allows credentials', async () => {
    const res = await raw(
      app.url,
      '/v1/session',
      { Origin: DASH, 'Content-Type': 'application/json' },
      'POST',
      JSON.stringify({ key: app.keys.support.key }),
    );
    expect(res.status).toBe(200);
    expect(String(res.headers['set-cookie'])).toMatch(/SameSite=Strict/);
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
  });
});

describe('the session cookie from another site', () => {
  let app: TestApp;
  let cookie: string;
  let itemId: string;
  beforeAll(async () => {
    app = await startTestApp('fs');
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-CORP'],
      ],
      {
        filename: 'clip.mp4',
        content: fakeMedia('mp4', 4096),
      },
    );
    itemId = res.json().id;
    const session = await raw(
      app.url,
      '/v1/session',
      { 'Content-Type': 'application/json' },
      'POST',
      JSON.stringify({ key: app.keys.support.key }),
    );
    cookie = String(session.headers['set-cookie']).split(';')[0]!;
  });
  afterAll(() => app.close());

  it('authenticates only requests from the service’s own pages', async () => {
    const own = new URL(app.url).origin;
    const cases: [Record<string, string>, number][] = [
      [{}, 200], // not a browser (no Sec-Fetch-*)
      [{ 'Sec-Fetch-Site': 'same-origin', 'Sec-Fetch-Mode': 'no-cors' }, 200],
      [{ 'Sec-Fetch-Site': 'same-origin', Origin: own }, 200],
      // A sibling site (another subdomain or port): SameSite=Strict still sends the cookie.
      [{ 'Sec-Fetch-Site': 'same-site', 'Sec-Fetch-Mode': 'no-cors' }, 401],
      [{ 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'no-cors' }, 401],
      [{ 'Sec-Fetch-Site': 'same-site', Origin: 'http://127.0.0.1:1' }, 401],
      [{ Origin: 'https://evil.example' }, 401],
      [{ 'Sec-Fetch-Site': 'same-origin', Origin: 'null' }, 401],
    ];
    for (const path of ['/v1/me', `/v1/evidence/${itemId}/content`]) {
      for (const [headers, status] of cases) {
        const res = await raw(app.url, path, { Cookie: cookie, ...headers }, 'GET');
        expect({ path, headers, status: res.status }).toEqual({ path, headers, status });
      }
    }
    // A key in the header is not a cookie: it works from any page (CORS decides what it reads).
    const keyed = await raw(app.url, '/v1/me', {
      ...bearer(app.keys.support),
      'Sec-Fetch-Site': 'cross-site',
    });
    expect(keyed.status).toBe(200);
  });

  it('tells browsers no other site may embed its answers, except a share link’s', async () => {
    const content = await raw(app.url, `/v1/evidence/${itemId}/content`, bearer(app.keys.support));
    expect(content.status).toBe(200);
    expect(content.headers['cross-origin-resource-policy']).toBe('same-origin');
    const link = await request(app.url)
      .post('/v1/share-links')
      .set(bearer(app.keys.support))
      .send({ itemId });
    expect(link.status).toBe(201);
    const shared = await raw(app.url, link.body.url);
    expect(shared.status).toBe(200);
    expect(shared.headers['cross-origin-resource-policy']).toBeUndefined();
  });
});

describe('CORS by default (CORS_ORIGINS unset)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(() => app.close());

  it('grants no origin anything, on the API and on the tus endpoint', async () => {
    const me = await raw(app.url, '/v1/me', {
      ...bearer(app.keys.support),
      Origin: 'https://dash.example.com',
    });
    expect(corsHeaders(me.headers)).toEqual([]);
    expect(varies(me.headers, 'Origin')).toBe(false);
    const created = await raw(
      app.url,
      '/v1/uploads',
      {
        ...bearer(app.keys.ingest),
        Origin: 'https://evil.example',
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '70000',
        'Upload-Metadata': `kind ${Buffer.from('packing_video').toString('base64')}`,
      },
      'POST',
    );
    expect(created.status).toBe(201);
    expect(corsHeaders(created.headers)).toEqual([]);
    const preflight = await raw(
      app.url,
      '/v1/uploads/abc',
      { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'PATCH' },
      'OPTIONS',
    );
    expect(corsHeaders(preflight.headers)).toEqual([]);
  });
});

type RouteLayer = { route?: { path: string }; handle?: { stack?: RouteLayer[] } };

/** Every path express registered, from an app built without live dependencies. */
function registeredPaths(): string[] {
  const built: Express = createApp({
    config: { http: { corsOrigins: [] }, maxUploadBytes: 1 },
    logger: {},
    uploads: {},
  } as unknown as AppContext);
  const found: string[] = [];
  const walk = (stack: RouteLayer[]) => {
    for (const layer of stack) {
      if (layer.route) found.push(layer.route.path);
      else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((built as unknown as { router: { stack: RouteLayer[] } }).router.stack);
  return [...new Set(found)];
}

describe('405 with a complete Allow on every known path', () => {
  const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(() => app.close());

  /** What a path serves by the OpenAPI document: GET implies HEAD; OPTIONS everywhere. */
  const documented = (ops: Record<string, unknown>) => {
    const methods = new Set(Object.keys(ops).map((m) => m.toUpperCase()));
    if (methods.has('GET')) methods.add('HEAD');
    methods.add('OPTIONS');
    return ORDER.filter((m) => methods.has(m));
  };
  const concrete = (path: string) =>
    path
      .replace(/\{\*\w+\}/g, 'index.html')
      .replace(/\{\w+\}/g, 'x1')
      .replace(/:\w+/g, 'x1');

  it('every path of the OpenAPI document and every registered route', async () => {
    const doc = openapi as unknown as { paths: Record<string, Record<string, unknown>> };
    const expected = new Map<string, string[]>();
    for (const [path, ops] of Object.entries(doc.paths)) expected.set(path, documented(ops));
    // The web app's and the station's static files are not in the document: GET (and HEAD) only.
    for (const path of registeredPaths()) {
      const asDoc = path.replace(/:(\w+)/g, '{$1}');
      if (!expected.has(asDoc)) {
        expect(path).toMatch(/^\/(app|station)(\/|$)/);
        expected.set(path, ['GET', 'HEAD', 'OPTIONS']);
      }
    }
    expect(expected.size).toBeGreaterThan(50);
    const wrong: string[] = [];
    for (const [path, allowed] of expected) {
      const url = concrete(path);
      for (const method of ORDER.filter((m) => !allowed.includes(m))) {
        const withBody = ['POST', 'PUT', 'PATCH'].includes(method);
        // Whatever the body: well-formed, malformed or over the JSON limit, never parsed first.
        for (const sent of withBody
          ? ['{}', '{', JSON.stringify({ a: 'x'.repeat(70_000) })]
          : [undefined]) {
          const res = await raw(
            app.url,
            url,
            sent === undefined
              ? {}
              : { 'Content-Type': 'application/json', 'Content-Length': String(sent.length) },
            method,
            sent,
          );
          const body = method === 'HEAD' ? undefined : JSON.parse(res.body.toString() || 'null');
          const got = `${res.status} ${res.headers.allow} ${body?.code ?? ''}`;
          const want = `405 ${allowed.join(', ')} ${method === 'HEAD' ? '' : 'method_not_allowed'}`;
          if (got !== want)
            wrong.push(`${method} ${url} ${sent?.slice(0, 5)}: ${got} (want ${want})`);
        }
      }
      const options = await raw(app.url, url, {}, 'OPTIONS');
      if (options.status !== 204 || options.headers.allow !== allowed.join(', ')) {
        wrong.push(`OPTIONS ${url}: ${options.status} ${options.headers.allow}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('answers 405 as problem+json, and unknown paths stay 404', async () => {
    const res = await request(app.url).delete('/healthz');
    expect(res.status).toBe(405);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.headers.allow).toBe('GET, HEAD, OPTIONS');
    // An upload: a GET and a POST without (or with a wrong) X-HTTP-Method-Override list the same.
    const upload = '/v1/uploads/0123456789abcdef0123456789abcdef';
    const allows = new Set<string>();
    for (const [method, override] of [
      ['GET', undefined],
      ['POST', undefined],
      ['POST', 'GET'],
    ] as const) {
      const headers = { 'Tus-Resumable': '1.0.0', ...bearer(app.keys.ingest) };
      if (override) Object.assign(headers, { 'X-HTTP-Method-Override': override });
      const res = await raw(app.url, upload, headers, method);
      expect([method, override, res.status]).toEqual([method, override, 405]);
      allows.add(String(res.headers.allow));
    }
    expect([...allows]).toEqual(['HEAD, POST, PATCH, DELETE, OPTIONS']);
    for (const [method, path] of [
      ['POST', '/v2/nothing'],
      ['GET', '/v1/evidence/x1/nothing'],
      ['OPTIONS', '/v1/nothing'],
      ['DELETE', '/healthz/x'],
      ['GET', '/appx'],
    ] as const) {
      const miss = await raw(app.url, path, {}, method);
      expect({ method, path, status: miss.status }).toEqual({ method, path, status: 404 });
    }
    // An unknown path is 404 whatever the body: it is not parsed first.
    for (const sent of ['{', JSON.stringify({ a: 'x'.repeat(70_000) })]) {
      const miss = await raw(
        app.url,
        '/v2/nothing',
        { 'Content-Type': 'application/json' },
        'POST',
        sent,
      );
      expect([miss.status, JSON.parse(miss.body.toString()).code]).toEqual([
        404,
        'route_not_found',
      ]);
      // A known shape with an undecodable parameter names nothing either: 404 not_found.
      const bad = await raw(
        app.url,
        '/v1/evidence/%E0/links',
        { 'Content-Type': 'application/json' },
        'POST',
        sent,
      );
      expect([bad.status, JSON.parse(bad.body.toString()).code]).toEqual([404, 'not_found']);
    }
  });
});

describe('docs/api.md’s HTTP snippet', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', { CORS_ORIGINS: 'https://dash.example.com' });
  });
  afterAll(() => app.close());

  it('runs as written and shows what the service answers', async () => {
    const readme = readFileSync(path.join(__dirname, '..', '..', 'docs', 'api.md'), 'utf8');
    const marker = readme.indexOf('<!-- run as written by tests/api/http-semantics.test.ts');
    expect(marker).toBeGreaterThan(0);
    const snippet = /```sh\n([\s\S]*?)```/.exec(readme.slice(marker))![1]!;
    // Not execFileSync: the service runs in this process, and must answer curl meanwhile.
    const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', snippet], {
      env: { ...process.env, ARCHIVE: app.url },
      encoding: 'utf8',
      timeout: 30_000,
    });
    const out = stdout.replace(/\r\n/g, '\n');
    // Each answer shown in the snippet ("#    Header: value") is in what curl printed, in order.
    const answers = out.split(/\n(?=HTTP\/1\.1 )/);
    const shown = snippet.split(/\n(?=# {4}HTTP\/1\.1 )/).slice(1);
    expect(answers).toHaveLength(shown.length);
    shown.forEach((block, i) => {
      for (const line of block.split('\n').filter((l) => l.startsWith('#    '))) {
        expect(answers[i]!.split('\n')).toContain(line.slice(5));
      }
    });
  });
});
