import http from 'node:http';
import net from 'node:net';
import { AppError } from '../../src/base/errors';
import type { ResumableStore } from '../../src/storage/resumable-store';
import {
  bearer,
  DRIVERS,
  settledStaging,
  startTestApp,
  storedKeys,
  type TestApp,
  itemView,
} from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { tusUpload } from '../support/tus';

/**
 * tus 1.0 (https://tus.io/protocols/resumable-upload) walked by hand over raw HTTP against the real
 * service: the statuses and headers the spec names, through our own route, store and locker around
 * @tus/server. Every refusal is problem+json with a stable code.
 */
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function send(
  app: TestApp,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, app.url), { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Two requests written at once on one kept-alive connection, and the raw bytes of what came back:
 * the first answer's body is exactly the bytes its Content-Length announces, or the second
 * answer's status line is read as (part of) it.
 */
function twoOnOneConnection(
  app: TestApp,
  first: { method: string; path: string; headers: Record<string, string> },
  second: { method: string; path: string },
): Promise<Buffer> {
  const head = (method: string, path: string, headers: Record<string, string>) =>
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`;
  const { port, hostname } = new URL(app.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(
        head(first.method, first.path, { ...first.headers, 'Content-Length': '0' }) +
          head(second.method, second.path, { Connection: 'close' }),
      );
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer in 10 s')));
  });
}

/** The first answer in `raw`: status, headers, the body its Content-Length announces, and the rest. */
function firstAnswer(raw: Buffer): Answer & { rest: string } {
  const end = raw.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: http.IncomingHttpHeaders = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  const body = raw.subarray(end + 4, end + 4 + length);
  return {
    status: Number(statusLine!.split(' ')[1]),
    headers,
    body: body.toString('utf8'),
    rest: raw.subarray(end + 4 + length).toString('latin1'),
  };
}

/** Any refusal (an AppError) the upload store still holds in one of its maps. */
function heldRefusals(store: object): AppError[] {
  return Object.values(store).flatMap((v: unknown) =>
    v instanceof Map ? [...v.values()].filter((x) => x instanceof AppError) : [],
  ) as AppError[];
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const OCTETS = 'application/offset+octet-stream';

/** A problem+json answer with this status and code. */
function expectProblem(res: Answer, status: number, code: string): Record<string, unknown> {
  expect({ status: res.status, type: res.headers['content-type'] }).toEqual({
    status,
    type: expect.stringContaining('application/problem+json'),
  });
  const body = JSON.parse(res.body) as Record<string, unknown>;
  expect(body).toMatchObject({ status, code, type: `urn:evidence-archive:problem:${code}` });
  return body;
}

describe.each(DRIVERS)('tus 1.0 conformance, by hand, on %s', (driver) => {
  let app: TestApp;
  let tus: Record<string, string>;
  const clip = fakeMedia('mp4', 300_000);
  const meta = `kind ${b64('packing_video')},orderId ${b64('ORD-TUS-1')},filename ${b64('c.mp4')}`;

  beforeAll(async () => {
    app = await startTestApp(driver);
    tus = { ...bearer(app.keys.ingest), 'Tus-Resumable': '1.0.0' };
  });
  afterAll(async () => {
    await app.close();
  });

  const create = async (length = clip.length, extra: Record<string, string> = {}) => {
    const res = await send(app, 'POST', '/v1/uploads', {
      ...tus,
      'Upload-Length': String(length),
      'Upload-Metadata': meta,
      ...extra,
    });
    expect(res.status).toBe(201);
    return res;
  };
  /** creation-with-upload: these bytes in the creating request, of an upload of `length`. */
  const createWith = (bytes: Buffer, length: string | number = clip.length) =>
    send(
      app,
      'POST',
      '/v1/uploads',
      { ...tus, 'Upload-Length': String(length), 'Upload-Metadata': meta, 'Content-Type': OCTETS },
      bytes,
    );
  const uploadRows = async () =>
    (await app.ctx.db.selectFrom('resumable_uploads').select('id').execute()).length;
  /** What the store holds of resumable uploads (disk: their files; S3: their tail objects). */
  const resumableObjects = async () =>
    (await storedKeys(app)).filter((k) => k.includes('resumable/'));

  it('OPTIONS: Tus-Version, Tus-Extension, Tus-Max-Size, with no key', async () => {
    for (const path of ['/v1/uploads', '/v1/uploads/0123456789abcdef']) {
      const res = await send(app, 'OPTIONS', path, {});
      expect(res.status).toBe(204);
      expect(String(res.headers['tus-version']).split(',')).toContain('1.0.0');
      expect(String(res.headers['tus-extension']).split(',').sort()).toEqual(
        ['creation', 'creation-with-upload', 'expiration', 'termination'].sort(),
      );
      expect(Number(res.headers['tus-max-size'])).toBe(app.ctx.config.maxUploadBytes);
    }
  });

  it('creation, HEAD, PATCH in two pieces: 201 with Location and Upload-Expires, 200 no-store, 204 with the new offset', async () => {
    const created = await create();
    expect(created.headers['tus-resumable']).toBe('1.0.0');
    expect(created.headers.location).toMatch(/^\/v1\/uploads\/[^/]+$/);
    const expires = Date.parse(created.headers['upload-expires'] as string);
    expect(expires).toBeGreaterThan(Date.now() + 71 * 3600_000);
    const url = created.headers.location!;

    const head = await send(app, 'HEAD', url, tus);
    expect(head.status).toBe(200);
    expect(head.headers['upload-offset']).toBe('0');
    expect(head.headers['upload-length']).toBe(String(clip.length));
    expect(head.headers['cache-control']).toBe('no-store');
    expect(head.headers['tus-resumable']).toBe('1.0.0');

    const first = await send(
      app,
      'PATCH',
      url,
      { ...tus, 'Upload-Offset': '0', 'Content-Type': OCTETS },
      clip.subarray(0, 100_000),
    );
    expect(first.status).toBe(204);
    expect(first.headers['upload-offset']).toBe('100000');
    expect(first.headers['tus-resumable']).toBe('1.0.0');
    expect(Date.parse(first.headers['upload-expires'] as string)).toBe(expires);

    // Offset mismatch: 409, nothing changed.
    const stale = await send(
      app,
      'PATCH',
      url,
      { ...tus, 'Upload-Offset': '0', 'Content-Type': OCTETS },
      clip.subarray(0, 100_000),
    );
    expectProblem(stale, 409, 'upload_offset_conflict');
    expect((await send(app, 'HEAD', url, tus)).headers['upload-offset']).toBe('100000');

    const last = await send(
      app,
      'PATCH',
      url,
      { ...tus, 'Upload-Offset': '100000', 'Content-Type': OCTETS },
      clip.subarray(100_000),
    );
    expect(last.status).toBe(204);
    expect(last.headers['upload-offset']).toBe(String(clip.length));
    const itemId = last.headers['evidence-item-id'] as string;
    const item = await itemView(app, itemId);
    expect(item).toMatchObject({ sha256: sha256(clip), originalFilename: 'c.mp4' });
  });

  it('creation-with-upload: part of the file (Upload-Offset, Upload-Expires) or all of it (archived at once)', async () => {
    const part = await createWith(clip.subarray(0, 5000));
    expect(part.status).toBe(201);
    expect(part.headers['upload-offset']).toBe('5000');
    expect(part.headers['upload-expires']).toBeDefined();
    expect((await send(app, 'DELETE', part.headers.location!, tus)).status).toBe(204);

    const other = fakeMedia('mp4', 20_000);
    const whole = await createWith(other, other.length);
    expect(whole.status).toBe(201);
    expect(whole.headers['upload-offset']).toBe(String(other.length));
    expect(whole.headers['evidence-item-status']).toBe('created');
    expect(whole.headers['repr-digest']).toBe(
      `sha-256=:${Buffer.from(sha256(other), 'hex').toString('base64')}:`,
    );
  });

  it('creation-with-upload of bytes the kind refuses: 415 unsupported_media_type, nothing kept or held', async () => {
    const rows = await uploadRows();
    const objects = await resumableObjects();
    const wav = fakeMedia('wav', 20_000);
    // All of the file in the creating request, or only its start.
    for (const length of [wav.length, wav.length + 5000]) {
      const res = await createWith(wav, length);
      expectProblem(res, 415, 'unsupported_media_type');
      expect(res.headers.location).toBeUndefined();
    }
    expect(await uploadRows()).toBe(rows);
    expect(await resumableObjects()).toEqual(objects);
    // The refusal went to its request's answer; the store keeps nothing of it.
    expect(heldRefusals(app.ctx.uploads)).toEqual([]);
  });

  it('hostile URLs: a query naming an upload, an undecodable id: 4xx problems, never a 500', async () => {
    const other = { ...bearer(app.keys.ingest2), 'Tus-Resumable': '1.0.0' };
    for (const query of ['?x=/v1/uploads/%E0', '?x=/v1/uploads/%', '?x=/v1/uploads/%E0%80']) {
      const res = await send(app, 'POST', `/v1/uploads${query}`, {
        ...other,
        'Upload-Metadata': meta,
      });
      expectProblem(res, 400, 'upload_length_required');
    }
    for (const id of ['%E0', '%', '%E0%80%80', '%00', 'a%00b', '%20', 'x'.repeat(300)]) {
      for (const method of ['HEAD', 'DELETE', 'PATCH']) {
        const res = await send(app, method, `/v1/uploads/${id}`, {
          ...tus,
          ...(method === 'PATCH' ? { 'Upload-Offset': '0', 'Content-Type': OCTETS } : {}),
        });
        // (The answer to say which request it was, if not a 4xx.)
        expect({
          id,
          method,
          status: res.status,
          clientError: res.status >= 400 && res.status < 500,
        }).toMatchObject({ clientError: true });
        if (method !== 'HEAD') expect(res.headers['content-type']).toMatch(/problem\+json/);
      }
    }
  });

  it('an unsupported or missing Tus-Resumable is 412 with Tus-Version, and nothing is created', async () => {
    const before = await uploadRows();
    for (const version of ['0.2.2', '2.0.0', '1.0', '']) {
      const res = await send(app, 'POST', '/v1/uploads', {
        ...bearer(app.keys.ingest),
        'Tus-Resumable': version,
        'Upload-Length': '10',
        'Upload-Metadata': meta,
      });
      expectProblem(res, 412, 'tus_version_unsupported');
      expect(res.headers['tus-version']).toBe('1.0.0');
    }
    const missing = await send(app, 'POST', '/v1/uploads', {
      ...bearer(app.keys.ingest),
      'Upload-Length': '10',
      'Upload-Metadata': meta,
    });
    expectProblem(missing, 412, 'tus_resumable_required');
    // Every answer but OPTIONS's carries Tus-Resumable, a refusal of the key too.
    const noKey = await send(app, 'POST', '/v1/uploads', { 'Tus-Resumable': '1.0.0' });
    expectProblem(noKey, 401, 'unauthorized');
    expect(noKey.headers['tus-resumable']).toBe('1.0.0');
    expect(missing.headers['tus-version']).toBe('1.0.0');
    // The same on an existing upload: not processed.
    const url = (await create()).headers.location!;
    const patch = await send(
      app,
      'PATCH',
      url,
      {
        ...bearer(app.keys.ingest),
        'Tus-Resumable': '0.2.2',
        'Upload-Offset': '0',
        'Content-Type': OCTETS,
      },
      clip.subarray(0, 1000),
    );
    expectProblem(patch, 412, 'tus_version_unsupported');
    expect((await send(app, 'HEAD', url, tus)).headers['upload-offset']).toBe('0');
    expect(await uploadRows()).toBe(before + 1);
    await send(app, 'DELETE', url, tus);
  });

  it('PATCH: a wrong Content-Type is 415; a missing Content-Type or Upload-Offset a clear problem, not a 403', async () => {
    const url = (await create()).headers.location!;
    const piece = clip.subarray(0, 1000);
    for (const type of [
      'application/octet-stream',
      'text/plain',
      'application/offset+octet-stream; x=1',
    ]) {
      const res = await send(
        app,
        'PATCH',
        url,
        { ...tus, 'Upload-Offset': '0', 'Content-Type': type },
        piece,
      );
      expectProblem(res, 415, 'upload_content_type_required');
    }
    const noType = await send(app, 'PATCH', url, { ...tus, 'Upload-Offset': '0' }, piece);
    expectProblem(noType, 415, 'upload_content_type_required');
    const noOffset = await send(app, 'PATCH', url, { ...tus, 'Content-Type': OCTETS }, piece);
    expectProblem(noOffset, 400, 'upload_offset_required');
    for (const offset of ['-1', 'abc', '1e3', '01']) {
      const res = await send(
        app,
        'PATCH',
        url,
        { ...tus, 'Upload-Offset': offset, 'Content-Type': OCTETS },
        piece,
      );
      expect(expectProblem(res, 400, 'invalid_tus_header')).toMatchObject({
        header: 'upload-offset',
      });
    }
    expect((await send(app, 'HEAD', url, tus)).headers['upload-offset']).toBe('0');
    await send(app, 'DELETE', url, tus);
  });

  it('creation refusals are problems: no Upload-Length, bad Upload-Metadata, too large, unsupported extensions', async () => {
    expectProblem(
      await send(app, 'POST', '/v1/uploads', { ...tus, 'Upload-Metadata': meta }),
      400,
      'upload_length_required',
    );
    const badMeta = await send(app, 'POST', '/v1/uploads', {
      ...tus,
      'Upload-Length': '10',
      'Upload-Metadata': 'kind not-base64!',
    });
    expect(expectProblem(badMeta, 400, 'invalid_tus_header')).toMatchObject({
      header: 'upload-metadata',
    });
    // tus 1.0: all keys MUST be unique.
    const twice = await send(app, 'POST', '/v1/uploads', {
      ...tus,
      'Upload-Length': '10',
      'Upload-Metadata': `${meta},name ${b64('a.mp4')},name ${b64('b.mp4')}`,
    });
    expect(expectProblem(twice, 400, 'invalid_tus_header')).toMatchObject({
      header: 'upload-metadata',
    });
    expectProblem(
      await send(app, 'POST', '/v1/uploads', {
        ...tus,
        'Upload-Length': String(app.ctx.config.maxUploadBytes + 1),
        'Upload-Metadata': meta,
      }),
      413,
      'file_too_large',
    );
    expectProblem(
      await send(app, 'POST', '/v1/uploads', {
        ...tus,
        'Upload-Defer-Length': '1',
        'Upload-Metadata': meta,
      }),
      501,
      'tus_extension_unsupported',
    );
    expectProblem(
      await send(app, 'POST', '/v1/uploads', {
        ...tus,
        'Upload-Concat': 'partial',
        'Upload-Length': '10',
      }),
      501,
      'tus_extension_unsupported',
    );
    // More bytes than Upload-Length in the creating request, with Content-Length and without
    // (chunked): 413 with no Location, and nothing kept, neither the row nor the stored bytes.
    const rows = await uploadRows();
    const objects = await resumableObjects();
    for (const framing of [{}, { 'Transfer-Encoding': 'chunked' }] as Record<string, string>[]) {
      const over = await send(
        app,
        'POST',
        '/v1/uploads',
        {
          ...tus,
          'Upload-Length': '5000',
          'Upload-Metadata': meta,
          'Content-Type': OCTETS,
          ...framing,
        },
        clip.subarray(0, 6000),
      );
      expectProblem(over, 413, 'upload_length_exceeded');
      expect(over.headers.location).toBeUndefined();
    }
    expect(await uploadRows()).toBe(rows);
    expect(await resumableObjects()).toEqual(objects);
    // The same in a PATCH, with Content-Length and without (chunked): nothing of it counts.
    const url = (await create(5000)).headers.location!;
    for (const framing of [{}, { 'Transfer-Encoding': 'chunked' }] as Record<string, string>[]) {
      const res = await send(
        app,
        'PATCH',
        url,
        { ...tus, 'Upload-Offset': '0', 'Content-Type': OCTETS, ...framing },
        clip.subarray(0, 6000),
      );
      expectProblem(res, 413, 'upload_length_exceeded');
      expect((await send(app, 'HEAD', url, tus)).headers['upload-offset']).toBe('0');
    }
    await send(app, 'DELETE', url, tus);
  });

  it('X-HTTP-Method-Override on a POST is honoured for PATCH, HEAD and DELETE, and only there', async () => {
    const url = (await create()).headers.location!;
    const patched = await send(
      app,
      'POST',
      url,
      { ...tus, 'X-HTTP-Method-Override': 'PATCH', 'Upload-Offset': '0', 'Content-Type': OCTETS },
      clip.subarray(0, 7000),
    );
    expect(patched.status).toBe(204);
    expect(patched.headers['upload-offset']).toBe('7000');
    const head = await send(app, 'POST', url, { ...tus, 'X-HTTP-Method-Override': 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['upload-offset']).toBe('7000');
    // Override or not, the upload is its creator's only.
    const foreign = await send(app, 'POST', url, {
      ...bearer(app.keys.ingest2),
      'Tus-Resumable': '1.0.0',
      'X-HTTP-Method-Override': 'DELETE',
    });
    expectProblem(foreign, 404, 'not_found');
    // A POST without an override, or overridden to something else, is not a tus request here.
    for (const override of [undefined, 'GET', 'PUT', 'POST']) {
      const res = await send(app, 'POST', url, {
        ...tus,
        ...(override ? { 'X-HTTP-Method-Override': override } : {}),
      });
      expectProblem(res, 405, 'method_not_allowed');
      expect(res.headers.allow).toContain('PATCH');
    }
    // On the collection, a POST stays a creation: no turning it into anything else.
    const onCollection = await send(app, 'POST', '/v1/uploads', {
      ...tus,
      'X-HTTP-Method-Override': 'DELETE',
      'Upload-Length': '10',
      'Upload-Metadata': meta,
    });
    expectProblem(onCollection, 405, 'method_not_allowed');
    // Nor does an OPTIONS (no key) become anything else.
    const options = await send(app, 'OPTIONS', url, { 'X-HTTP-Method-Override': 'DELETE' });
    expect(options.status).toBe(204);
    expect((await send(app, 'HEAD', url, tus)).headers['upload-offset']).toBe('7000');
    const deleted = await send(app, 'POST', url, { ...tus, 'X-HTTP-Method-Override': 'DELETE' });
    expect(deleted.status).toBe(204);
    expect((await send(app, 'HEAD', url, tus)).status).toBe(404);
  });

  it('a POST overridden to HEAD and refused before tus runs is answered as the POST it is: its body arrives as announced', async () => {
    const url = (await create()).headers.location!;
    const refusals: [Record<string, string>, number, string][] = [
      [{ 'Tus-Resumable': '1.0.0' }, 401, 'unauthorized'],
      [bearer(app.keys.ingest), 412, 'tus_resumable_required'],
      [{ ...tus, 'Upload-Offset': 'abc' }, 400, 'invalid_tus_header'],
    ];
    for (const [headers, status, code] of refusals) {
      const raw = await twoOnOneConnection(
        app,
        { method: 'POST', path: url, headers: { ...headers, 'X-HTTP-Method-Override': 'HEAD' } },
        { method: 'OPTIONS', path: url },
      );
      const first = firstAnswer(raw);
      expectProblem(first, status, code);
      // The next answer on the connection starts right after the announced body.
      expect(first.rest).toMatch(/^HTTP\/1\.1 204 /);
    }
    await send(app, 'DELETE', url, tus);
  });

  it('the session cookie never authenticates a POST, whatever method it is overridden to', async () => {
    const admin = { ...bearer(app.keys.admin), 'Tus-Resumable': '1.0.0' };
    const url = (await create(clip.length, bearer(app.keys.admin))).headers.location!;
    // A real session's cookie, as the web app's browser holds it.
    const signedIn = await fetch(`${app.url}/v1/session`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ key: app.keys.admin.key }),
    });
    expect(signedIn.status).toBe(200);
    const sessionCookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
    expect(sessionCookie).toMatch(/^eak_session=[A-Za-z0-9_-]{43}$/);
    const cookie = { Cookie: sessionCookie, 'Tus-Resumable': '1.0.0' };
    for (const override of ['HEAD', 'PATCH', 'DELETE']) {
      const patch = override === 'PATCH';
      const res = await send(
        app,
        'POST',
        url,
        {
          ...cookie,
          'X-HTTP-Method-Override': override,
          ...(patch ? { 'Upload-Offset': '0', 'Content-Type': OCTETS } : {}),
        },
        patch ? clip.subarray(0, 1000) : undefined,
      );
      expectProblem(res, 401, 'unauthorized');
    }
    const head = await send(app, 'HEAD', url, admin);
    expect({ status: head.status, offset: head.headers['upload-offset'] }).toEqual({
      status: 200,
      offset: '0',
    });
    expect((await send(app, 'DELETE', url, admin)).status).toBe(204);
  });

  it("tus-js-client's overridePatchMethod uploads through POST + X-HTTP-Method-Override", async () => {
    const bytes = fakeMedia('mp4', 90_000);
    const result = await tusUpload(
      app.url,
      app.keys.ingest,
      bytes,
      { kind: 'packing_video', orderId: 'ORD-OVERRIDE' },
      { chunkSize: 30_000, overridePatchMethod: true, retryDelays: null },
    );
    expect(result.status).toBe('created');
    const item = (await fetch(`${app.url}/v1/evidence/${result.itemId}`, {
      headers: bearer(app.keys.support),
    }).then((r) => r.json())) as { sha256: string };
    expect(item.sha256).toBe(sha256(bytes));
  });

  it('termination: DELETE is 204, then the upload is gone (404) and its bytes too', async () => {
    const created = await createWith(clip.subarray(0, 10_000));
    const url = created.headers.location!;
    // Where the store keeps its bytes (`resumable/<uuid>`, not named after the upload's id).
    const { storage_key: storageKey } = await app.ctx.db
      .selectFrom('resumable_uploads')
      .select('storage_key')
      .where('id', '=', url.split('/').pop()!)
      .executeTakeFirstOrThrow();
    expect((await storedKeys(app)).filter((k) => k.includes(storageKey))).not.toEqual([]);
    // Another key's DELETE: as if there were no such upload; an unknown id says the same.
    const foreign = await send(app, 'DELETE', url, {
      ...bearer(app.keys.ingest2),
      'Tus-Resumable': '1.0.0',
    });
    const unknown = await send(app, 'DELETE', '/v1/uploads/0123456789abcdef0123456789abcdef', {
      ...bearer(app.keys.ingest2),
      'Tus-Resumable': '1.0.0',
    });
    const { instance: _a, ...foreignBody } = expectProblem(foreign, 404, 'not_found');
    const { instance: _b, ...unknownBody } = expectProblem(unknown, 404, 'not_found');
    expect(foreignBody).toEqual(unknownBody);
    const del = await send(app, 'DELETE', url, tus);
    expect(del.status).toBe(204);
    expect(del.headers['tus-resumable']).toBe('1.0.0');
    const gone = await send(app, 'HEAD', url, tus);
    expect(gone.status).toBe(404);
    expect(gone.headers['upload-offset']).toBeUndefined();
    expectProblem(
      await send(
        app,
        'PATCH',
        url,
        { ...tus, 'Upload-Offset': '10000', 'Content-Type': OCTETS },
        Buffer.alloc(10),
      ),
      404,
      'not_found',
    );
    expectProblem(await send(app, 'DELETE', url, tus), 404, 'not_found');
    // A finished upload is evidence now: not terminated.
    const small = fakeMedia('mp4', 8000);
    const done = await createWith(small, small.length);
    expectProblem(await send(app, 'DELETE', done.headers.location!, tus), 409, 'upload_complete');
    await settledStaging(app);
    expect((await storedKeys(app)).filter((k) => k.includes(storageKey))).toEqual([]);
  });

  it('expiration: an expired upload is 410 Gone to HEAD and PATCH, a problem to PATCH', async () => {
    const url = (await create()).headers.location!;
    const id = url.split('/').pop()!;
    await app.ctx.db
      .updateTable('resumable_uploads')
      .set({
        created_at: new Date(Date.now() - 100 * 3600_000),
        expires_at: new Date(Date.now() - 1000),
      } as never)
      .where('id', '=', id)
      .execute();
    expect((await send(app, 'HEAD', url, tus)).status).toBe(410);
    // To another key it never existed: 404, not 410.
    const other = { ...bearer(app.keys.ingest2), 'Tus-Resumable': '1.0.0' };
    expect((await send(app, 'HEAD', url, other)).status).toBe(404);
    expectProblem(
      await send(
        app,
        'POST',
        url,
        {
          ...other,
          'X-HTTP-Method-Override': 'PATCH',
          'Upload-Offset': '0',
          'Content-Type': OCTETS,
        },
        clip.subarray(0, 10),
      ),
      404,
      'not_found',
    );
    expectProblem(
      await send(
        app,
        'PATCH',
        url,
        { ...tus, 'Upload-Offset': '0', 'Content-Type': OCTETS },
        clip.subarray(0, 10),
      ),
      410,
      'upload_expired',
    );
    // Once swept it is gone: 404.
    await app.ctx.uploads.deleteExpired();
    expect((await send(app, 'HEAD', url, tus)).status).toBe(404);
  });
});

describe('tus: a refusal belongs to the request whose bytes were refused', () => {
  let app: TestApp;
  /** The ids of the uploads whose bytes the store discarded, as it discarded them. */
  const discarded: string[] = [];

  beforeAll(async () => {
    app = await startTestApp(
      'fs',
      {},
      {
        wrapResumableStore: (store: ResumableStore) =>
          Object.assign(Object.create(store) as ResumableStore, {
            discardResumable: async (...args: Parameters<ResumableStore['discardResumable']>) => {
              const row = await app.ctx.db
                .selectFrom('resumable_uploads')
                .select('id')
                .where('storage_key', '=', args[0])
                .executeTakeFirst();
              if (row) discarded.push(row.id);
              return store.discardResumable(...args);
            },
          }),
      },
    );
  });
  afterAll(async () => {
    await app.close();
  });

  it("another key's request naming a refused upload in its query gets its own answer, not that refusal", async () => {
    const meta = `kind ${b64('packing_video')},orderId ${b64('ORD-TUS-2')}`;
    const wav = fakeMedia('wav', 20_000);
    // A creation-with-upload of bytes the kind refuses: the upload is discarded at once.
    const refused = await send(
      app,
      'POST',
      '/v1/uploads',
      {
        ...bearer(app.keys.ingest),
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(wav.length),
        'Upload-Metadata': meta,
        'Content-Type': OCTETS,
      },
      wav,
    );
    expectProblem(refused, 415, 'unsupported_media_type');
    expect(discarded).toHaveLength(1);
    for (const key of [app.keys.ingest2, app.keys.ingest]) {
      const other = await send(app, 'POST', `/v1/uploads?x=/v1/uploads/${discarded[0]}`, {
        ...bearer(key),
        'Tus-Resumable': '1.0.0',
        'Upload-Metadata': meta,
      });
      expectProblem(other, 400, 'upload_length_required');
    }
  });
});
