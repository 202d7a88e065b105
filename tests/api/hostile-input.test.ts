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
import { multipartBody, rawRequest, upload, type RawResponse } from '../support/multipart';

const LIMIT = 1024 * 1024;

describe.each(DRIVERS)('hostile and broken uploads (%s driver)', (driver) => {
  let app: TestApp;
  let baseline: { rows: number; keys: string[] };

  beforeAll(async () => {
    app = await startTestApp(driver, { MAX_UPLOAD_BYTES: String(LIMIT) });
  });
  afterAll(() => app.close());
  beforeEach(async () => {
    baseline = { rows: await itemCount(app), keys: await storedKeys(app) };
  });

  /** Nothing stored: no row, no blob, no staging leftover; and the server still answers. */
  async function expectNothingStored(): Promise<void> {
    expect(await settledStaging(app)).toEqual([]);
    expect(await itemCount(app)).toBe(baseline.rows);
    expect(await storedKeys(app)).toEqual(baseline.keys);
    expect((await request(app.url).get('/healthz')).status).toBe(200);
  }

  function expectProblem(res: RawResponse, status: number, code: string): void {
    expect({ status: res.status, code: res.json().code }).toEqual({ status, code });
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({
      type: expect.any(String),
      title: expect.any(String),
      status,
      detail: expect.any(String),
    });
  }

  const clip = { filename: 'clip.mp4', content: fakeMedia('mp4') };
  const send = (
    fields: [string, string][],
    file: Parameters<typeof upload>[3],
    headers?: Record<string, string>,
  ) => upload(app.url, app.keys.ingest.key, fields, file, headers);

  it('no file part', async () => {
    expectProblem(await send([['kind', 'packing_video']], undefined), 400, 'missing_file');
    await expectNothingStored();
  });

  it('two file parts', async () => {
    const second = { filename: 'b.mp4', content: fakeMedia('mp4') };
    expectProblem(await send([['kind', 'packing_video']], [clip, second]), 400, 'too_many_files');
    expectProblem(
      await send([['kind', 'packing_video']], [clip, { ...second, field: 'other' }]),
      400,
      'too_many_files',
    );
    await expectNothingStored();
  });

  it('empty file', async () => {
    expectProblem(
      await send([['kind', 'packing_video']], { filename: 'e.mp4', content: Buffer.alloc(0) }),
      422,
      'empty_file',
    );
    await expectNothingStored();
  });

  it('HTML declared as video/mp4', async () => {
    const html = Buffer.from('<!DOCTYPE html><html><script>alert(1)</script></html>');
    const res = await send([['kind', 'packing_video']], {
      filename: 'x.mp4',
      contentType: 'video/mp4',
      content: html,
    });
    expectProblem(res, 415, 'unsupported_media_type');
    expect(res.json().detectedType).toBe('text/html');
    await expectNothingStored();
  });

  it('a text playlist renamed .mp4', async () => {
    const m3u = Buffer.from('#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/secret.ts\n');
    expectProblem(
      await send([['kind', 'packing_video']], { filename: 'p.mp4', content: m3u }),
      415,
      'unsupported_media_type',
    );
    await expectNothingStored();
  });

  it('unknown kind, and no kind', async () => {
    expectProblem(await send([['kind', 'selfie']], clip), 400, 'validation_failed');
    const noKind = await send([['orderId', 'A']], clip);
    expectProblem(noKind, 400, 'validation_failed');
    expect(noKind.json().detail).toMatch(/kind/);
    await expectNothingStored();
  });

  it('audio sent as a packing video, and video as a call, whichever order the fields come in', async () => {
    expectProblem(
      await send([['kind', 'packing_video']], { filename: 'a.wav', content: fakeMedia('wav') }),
      415,
      'unsupported_media_type',
    );
    // kind after the file: refused once the whole file is in, still with nothing kept
    const { contentType, stream } = multipartBody([], [clip], [['kind', 'call_recording']]);
    const after = await rawRequest(
      `${app.url}/v1/evidence`,
      { method: 'POST', headers: { ...bearer(app.keys.ingest), 'Content-Type': contentType } },
      stream,
    );
    expectProblem(after, 415, 'unsupported_media_type');
    await expectNothingStored();
  });

  it('answers a wrong type after the first bytes instead of waiting for the whole body', async () => {
    let sent = 0;
    const total = 64 * 1024 * 1024;
    async function* htmlThenMore(): AsyncGenerator<Buffer> {
      for (; sent < total; sent += 64 * 1024) {
        yield Buffer.alloc(64 * 1024, '<html>');
        await new Promise((r) => setImmediate(r));
      }
    }
    const res = await send([['kind', 'packing_video']], {
      filename: 'x.mp4',
      content: htmlThenMore(),
    }).catch((err: Error) => err);
    // The client may see the refusal or, if it kept writing after the server closed, a reset (an
    // error of Node's own realm, which `instanceof Error` in the test's sandbox does not know).
    if ('status' in res) expectProblem(res, 415, 'unsupported_media_type');
    else expect((res as Error).message).toEqual(expect.any(String));
    expect(sent).toBeLessThan(total / 2);
    await expectNothingStored();
  });

  it('a file over MAX_UPLOAD_BYTES, streamed without Content-Length', async () => {
    const big = { filename: 'big.mp4', content: fakeMedia('mp4', LIMIT + 1) };
    expectProblem(await send([['kind', 'packing_video']], big), 413, 'file_too_large');
    await expectNothingStored();
  });

  it('a Content-Length far over the limit is refused before the body is read', async () => {
    const res = await rawRequest(`${app.url}/v1/evidence`, {
      method: 'POST',
      headers: {
        ...bearer(app.keys.ingest),
        'Content-Type': 'multipart/form-data; boundary=x',
        'Content-Length': String(50 * LIMIT),
      },
    });
    expectProblem(res, 413, 'file_too_large');
    await expectNothingStored();
  });

  /** Writes raw bytes on a socket and returns whatever the server answered before closing. */
  function rawExchange(payload: Buffer, opts: { end: boolean; waitMs: number }): Promise<string> {
    return new Promise((resolve) => {
      const { port } = new URL(app.url);
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(payload);
        if (opts.end) socket.end();
      });
      let received = '';
      socket.on('data', (d) => (received += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(received));
      setTimeout(() => socket.destroy(), opts.waitMs);
    });
  }

  async function bodyOf(fields: [string, string][], content: Buffer) {
    const { contentType, stream } = multipartBody(fields, [{ filename: 'c.mp4', content }]);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return { contentType, body: Buffer.concat(chunks) };
  }

  const head = (contentType: string, length: number) =>
    Buffer.from(
      `POST /v1/evidence HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${app.keys.ingest.key}\r\n` +
        `Content-Type: ${contentType}\r\nContent-Length: ${length}\r\n\r\n`,
    );

  it('a Content-Length larger than the body, then the client hangs up', async () => {
    const { contentType, body } = await bodyOf(
      [['kind', 'packing_video']],
      fakeMedia('mp4', 200_000),
    );
    const answer = await rawExchange(Buffer.concat([head(contentType, body.length + 5000), body]), {
      end: true,
      waitMs: 1500,
    });
    expect(answer).not.toMatch(/^HTTP\/1\.1 2/);
    await expectNothingStored();
  });

  it('a Content-Length smaller than the body', async () => {
    const { contentType, body } = await bodyOf(
      [['kind', 'packing_video']],
      fakeMedia('mp4', 200_000),
    );
    const answer = await rawExchange(Buffer.concat([head(contentType, body.length - 1000), body]), {
      end: false,
      waitMs: 1500,
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).not.toMatch(/HTTP\/1\.1 2\d\d/);
    await expectNothingStored();
  });

  it('a client that disconnects mid-upload', async () => {
    const { contentType, body } = await bodyOf(
      [['kind', 'packing_video']],
      fakeMedia('mp4', 600_000),
    );
    const answer = await rawExchange(
      Buffer.concat([head(contentType, body.length), body.subarray(0, 300_000)]),
      {
        end: false,
        waitMs: 300,
      },
    );
    expect(answer).toBe('');
    await expectNothingStored();
  });

  it('empty and huge field names, and 10,000 fields', async () => {
    expectProblem(
      await send(
        [
          ['', 'x'],
          ['kind', 'packing_video'],
        ],
        clip,
      ),
      400,
      'unknown_field',
    );
    expectProblem(
      await send(
        [
          ['x'.repeat(5000), 'x'],
          ['kind', 'packing_video'],
        ],
        clip,
      ),
      400,
      'field_name_too_long',
    );
    const many = Array.from({ length: 10_000 }, (_, i) => [`f${i}`, 'v'] as [string, string]);
    expectProblem(await send(many, clip), 400, 'too_many_fields');
    expectProblem(
      await send(
        [
          ['kind', 'packing_video'],
          ['orderID', 'typo'],
        ],
        clip,
      ),
      400,
      'unknown_field',
    );
    expectProblem(
      await send(
        [
          ['kind', 'packing_video'],
          ['stationId', 'a'],
          ['stationId', 'b'],
        ],
        clip,
      ),
      400,
      'validation_failed',
    );
    await expectNothingStored();
  });

  it.each([
    ['path traversal', '../../../etc/passwd.mp4'],
    ['a Windows path', 'C:\\Users\\pk\\clip.mp4'],
    ['NUL', 'clip\u0000.mp4'],
    ['CRLF as browsers escape it', 'clip%0D%0AX-Injected: 1.mp4'],
    ['raw CRLF', 'clip\r\nX-Injected: 1.mp4'],
    ['5,000 characters', `${'a'.repeat(5000)}.mp4`],
  ])('a filename with %s', async (_label, filename) => {
    const res = await send([['kind', 'packing_video']], { filename, content: fakeMedia('mp4') });
    expect(res.status).toBe(400);
    // A raw CRLF ends the part header early, so busboy sees no file at all.
    expect(['invalid_filename', 'invalid_multipart', 'missing_file']).toContain(res.json().code);
    await expectNothingStored();
  });

  it.each([
    'yesterday',
    '2026-13-45T99:00:00Z',
    '2026-11-02T14:03:00',
    '1700000000',
    '9999-01-01T00:00:00Z',
  ])('capturedAt %j', async (capturedAt) => {
    expectProblem(
      await send(
        [
          ['kind', 'packing_video'],
          ['capturedAt', capturedAt],
        ],
        clip,
      ),
      400,
      'validation_failed',
    );
    await expectNothingStored();
  });

  it.each(["1' OR '1'='1", 'ORD-1; DROP TABLE evidence_items;--', 'ORD"1', '\u0000'])(
    'order id %j',
    async (orderId) => {
      const res = await send(
        [
          ['kind', 'packing_video'],
          ['orderId', orderId],
        ],
        clip,
      );
      expectProblem(res, 400, 'validation_failed');
      expect(res.json().detail).toMatch(/orderId/);
      await expectNothingStored();
    },
  );

  it('a client sha256 that differs from the bytes', async () => {
    const res = await send(
      [
        ['kind', 'packing_video'],
        ['sha256', 'a'.repeat(64)],
      ],
      clip,
    );
    expectProblem(res, 422, 'checksum_mismatch');
    await expectNothingStored();
  });

  it('not multipart at all, and a malformed multipart body', async () => {
    const json = await rawRequest(
      `${app.url}/v1/evidence`,
      {
        method: 'POST',
        headers: { ...bearer(app.keys.ingest), 'Content-Type': 'application/json' },
      },
      (await import('node:stream')).Readable.from([Buffer.from('{"kind":"photo"}')]),
    );
    expectProblem(json, 415, 'multipart_required');
    const garbage = await rawRequest(
      `${app.url}/v1/evidence`,
      {
        method: 'POST',
        headers: {
          ...bearer(app.keys.ingest),
          'Content-Type': 'multipart/form-data; boundary=zzz',
        },
      },
      (await import('node:stream')).Readable.from([Buffer.from('this is not multipart')]),
    );
    expect(garbage.status).toBe(400);
    expect(['invalid_multipart', 'missing_file']).toContain(garbage.json().code);
    await expectNothingStored();
  });

  it('malformed JSON and unknown keys on links', async () => {
    const ok = await send([['kind', 'packing_video']], {
      filename: 'l.mp4',
      content: fakeMedia('mp4'),
    });
    baseline = { rows: await itemCount(app), keys: await storedKeys(app) };
    const id = ok.json().id;
    const bad = await request(app.url)
      .post(`/v1/evidence/${id}/links`)
      .set(bearer(app.keys.support))
      .type('json')
      .send('{"orderIds": [');
    expect({ status: bad.status, code: bad.body.code }).toEqual({
      status: 400,
      code: 'invalid_json',
    });
    const unknown = await request(app.url)
      .post(`/v1/evidence/${id}/links`)
      .set(bearer(app.keys.support))
      .send({ orderIds: ['A'], evil: 1 });
    expect({ status: unknown.status, code: unknown.body.code }).toEqual({
      status: 400,
      code: 'validation_failed',
    });
    const empty = await request(app.url)
      .post(`/v1/evidence/${id}/links`)
      .set(bearer(app.keys.support))
      .send({});
    expect(empty.status).toBe(400);
    await expectNothingStored();
  });
});
