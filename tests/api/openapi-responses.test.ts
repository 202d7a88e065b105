import http from 'node:http';
import type { Readable } from 'node:stream';
import request from 'supertest';
import openapi from '../../src/http/openapi.json';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';
import { appendFileSync } from 'node:fs';
import { childProcessReport, OpenApiValidator } from '../support/openapi-validator';

jest.setTimeout(60_000);

type Doc = {
  paths: Record<string, Record<string, { requestBody?: { content?: Record<string, unknown> } }>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
};
const copyOfDocument = () => structuredClone(openapi) as unknown as Doc & Record<string, unknown>;
const FAKE_ID = '00000000-0000-4000-8000-000000000000';

/** A connection refused by the blob store, as the S3 SDK or a lost NFS mount reports it. */
const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9000'), { code: 'ECONNREFUSED' });
/** A full disk while staging an upload. */
const diskFull = () =>
  Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });

describe('responses are checked against the OpenAPI document', () => {
  let app: TestApp;
  let failReads = false;
  let failWrites = false;

  beforeAll(async () => {
    app = await startTestApp(
      'fs',
      {},
      {
        wrapBlobStore: (store) =>
          Object.assign(Object.create(store) as typeof store, {
            read: (...args: Parameters<typeof store.read>) => {
              if (failReads) throw refused();
              return store.read(...args);
            },
            writeStaging: async (body: Readable) => {
              if (failWrites) {
                body.resume();
                throw diskFull();
              }
              return store.writeStaging(body);
            },
          }),
      },
    );
  });
  afterAll(async () => {
    await app.close(); // fails the suite if any response below did not match the document
  });
  afterEach(() => {
    failReads = false;
    failWrites = false;
    app.openapi.assertClean();
  });

  /** Another validator on the same server, with an altered document: what it reports. */
  const driftSeenBy = async (doc: unknown, send: () => Promise<unknown>): Promise<string> => {
    const other = new OpenApiValidator(doc);
    other.attach(app.server.server);
    await send();
    await new Promise((r) => setTimeout(r, 50)); // 'finish' runs after the client saw the end
    try {
      other.assertClean();
      return '';
    } catch (err) {
      return (err as Error).message;
    } finally {
      other.detach();
    }
  };

  it('sees every response, whoever the client (supertest, fetch, raw http)', async () => {
    const before = app.openapi.checked;
    await request(app.url).get('/healthz').expect(200);
    await fetch(`${app.url}/healthz`);
    await new Promise<void>((resolve, reject) =>
      http.get(`${app.url}/healthz`, (res) => res.resume().on('end', resolve)).on('error', reject),
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(app.openapi.checked - before).toBe(3);
  });

  it('fails on a status the document does not declare', async () => {
    const doc = copyOfDocument();
    delete (
      doc.paths['/v1/evidence/{id}']!.get as unknown as { responses: Record<string, unknown> }
    ).responses['404'];
    const report = await driftSeenBy(doc, () =>
      request(app.url).get(`/v1/evidence/${FAKE_ID}`).set(bearer(app.keys.admin)).expect(404),
    );
    expect(report).toContain('GET /v1/evidence/{id} → 404');
    expect(report).toContain('status 404 is not declared for GET /v1/evidence/{id}');
  });

  it('checks what a service in a child process recorded: its lines are validated here', () => {
    const report = childProcessReport();
    const file = report.env.TEST_OPENAPI_REPORT!;
    const line = (status: number, body?: object) =>
      `${JSON.stringify({
        method: 'GET',
        url: '/healthz',
        status,
        headers: { 'content-type': 'application/json' },
        body: body && Buffer.from(JSON.stringify(body)).toString('base64'),
      })}\n`;
    appendFileSync(file, line(418, { status: 'teapot' }));
    appendFileSync(file, '{"method":"GET","url":"/hea'); // cut by a SIGKILL mid-write: skipped
    expect(() => report.assertClean()).toThrow(/GET \/healthz → 418/);
  });

  it('fails on a missing required property, a wrong type and an undeclared property', async () => {
    const doc = copyOfDocument();
    const readiness = doc.components.schemas.Readiness as {
      required?: string[];
      properties: Record<string, { type?: unknown }>;
    };
    readiness.required = [...(readiness.required ?? []), 'uptime'];
    readiness.properties.uptime = { type: 'number' };
    const [first] = Object.keys(readiness.properties).filter((p) => p !== 'uptime');
    readiness.properties[first!] = { type: 'boolean' };
    const report = await driftSeenBy(doc, () => request(app.url).get('/readyz').expect(200));
    expect(report).toContain("must have required property 'uptime'");
    expect(report).toContain(`/${first} must be boolean`);

    const doc2 = copyOfDocument();
    delete doc2.components.schemas.Readiness!.properties![first!];
    const report2 = await driftSeenBy(doc2, () => request(app.url).get('/readyz').expect(200));
    expect(report2).toContain('must NOT have unevaluated properties');
    expect(report2).toContain(first!);
  });

  it('fails on an undeclared content type, a missing required header and an undeclared header', async () => {
    const doc = copyOfDocument();
    const ok = (
      doc.paths['/healthz']!.get as unknown as {
        responses: Record<string, Record<string, unknown>>;
      }
    ).responses['200']!;
    ok.content = { 'text/plain': { schema: { type: 'string' } } };
    ok.headers = { 'X-Served-By': { required: true, schema: { type: 'string' } } };
    const report = await driftSeenBy(doc, () => request(app.url).get('/healthz').expect(200));
    expect(report).toContain('Content-Type application/json is not declared for GET /healthz 200');
    expect(report).toContain('required header x-served-by is missing');

    const report2 = await driftSeenBy(copyOfDocument(), () =>
      request(app.url).get('/v1/evidence').query({ stationId: 'x' }).set(bearer(app.keys.admin)),
    );
    expect(report2).toBe('');
    const doc3 = copyOfDocument();
    const unauthorized = (
      doc3.components as unknown as {
        responses: Record<string, { headers?: Record<string, unknown> }>;
      }
    ).responses.Unauthorized!;
    delete unauthorized.headers;
    const report3 = await driftSeenBy(doc3, () => request(app.url).get('/v1/evidence').expect(401));
    expect(report3).toContain('header www-authenticate is not declared for GET /v1/evidence 401');
  });

  it('holds unknown paths to 404 route_not_found and unknown methods to 405 with Allow', async () => {
    await request(app.url).get('/no/such/path').expect(404);
    await request(app.url)
      .put('/v1/evidence')
      .set(bearer(app.keys.admin))
      .expect(405)
      .expect('Allow', /POST/);
    app.openapi.assertClean();
  });

  // Issue 15 finding 7: statuses the service answered that the document did not declare.

  it('declares 400 for a repeated segment parameter', async () => {
    await request(app.url)
      .get(`/v1/evidence/${FAKE_ID}/content?segment=${FAKE_ID}&segment=${FAKE_ID}`)
      .set(bearer(app.keys.admin))
      .expect(400);
  });

  const jsonBodyOperations = Object.entries((openapi as unknown as Doc).paths).flatMap(
    ([path, item]) =>
      Object.entries(item)
        .filter(([, op]) => op.requestBody?.content?.['application/json'])
        .map(([method]) => [method.toUpperCase(), path] as const),
  );

  it.each(jsonBodyOperations)(
    'declares 413 for an oversized JSON body on %s %s',
    async (method, path) => {
      const res = await send(method, path, 'application/json', { padding: 'x'.repeat(70 * 1024) });
      expect(res.status).toBe(413);
      expect(res.body.code).toBe('body_too_large');
    },
  );

  it.each(jsonBodyOperations)(
    'answers a body that is not JSON on %s %s with a declared 4xx',
    async (method, path) => {
      const res = await send(method, path, 'text/plain', { reason: 'not JSON' });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      // afterEach: the status (400 for unreadable input, never an undeclared 415) is declared.
    },
  );

  /** The operation, with a made-up id in each path parameter, as the admin. */
  function send(method: string, path: string, type: string, body: unknown) {
    const agent = request(app.url);
    const url = path.replace(/\{[^}]+\}/g, FAKE_ID);
    const req =
      method === 'PUT' ? agent.put(url) : method === 'DELETE' ? agent.delete(url) : agent.post(url);
    return req.set(bearer(app.keys.admin)).set('Content-Type', type).send(JSON.stringify(body));
  }

  it('declares HEAD on bundle content and on share links', async () => {
    await request(app.url)
      .head(`/v1/bundles/${FAKE_ID}/content`)
      .set(bearer(app.keys.admin))
      .expect(404);
    await request(app.url).head('/s/not-a-real-token-at-all-0000000000000000000').expect(404);
    const paths = (openapi as unknown as Doc).paths;
    expect(paths['/v1/bundles/{bundleId}/content']!.head).toBeDefined();
    expect(paths['/s/{token}']!.head).toBeDefined();
  });

  it('declares 503 dependency_unavailable with Retry-After when the blob store is unreachable', async () => {
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'call_recording']], {
      filename: 'call.wav',
      content: fakeMedia('wav', 4096),
    });
    expect(res.status).toBe(201);
    failReads = true;
    const answer = await request(app.url)
      .get(`/v1/evidence/${res.json().id}/content`)
      .set(bearer(app.keys.admin));
    expect(answer.status).toBe(503);
    expect(answer.body.code).toBe('dependency_unavailable');
    expect(answer.headers['retry-after']).toMatch(/^\d+$/);
    // Nothing describing the bytes that were not sent is left on the problem.
    expect(answer.headers.etag).toBeUndefined();
    expect(answer.headers['content-disposition']).toBeUndefined();
    expect(answer.headers['repr-digest']).toBeUndefined();
  });

  it('declares 507 insufficient_storage when the disk is full', async () => {
    failWrites = true;
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'call_recording']], {
      filename: 'call.wav',
      content: fakeMedia('wav', 4096),
    });
    expect(res.status).toBe(507);
    expect(res.json().code).toBe('insufficient_storage');
  });
});
