import http from 'node:http';
import { Readable } from 'node:stream';
import request from 'supertest';
import {
  bearer,
  DRIVERS,
  itemCount,
  settledStaging,
  startTestApp,
  storedKeys,
  type Driver,
  type TestApp,
} from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { rawRequest } from '../support/multipart';

/** A PUT of raw bytes, as a PBX's curl does it. */
function push(
  app: TestApp,
  callId: string,
  body: Buffer,
  opts: { query?: string; headers?: Record<string, string>; key?: string } = {},
) {
  return rawRequest(
    `${app.url}/v1/calls/${encodeURIComponent(callId)}/recording${opts.query ? `?${opts.query}` : ''}`,
    {
      method: 'PUT',
      headers: {
        Authorization: `Bearer ${opts.key ?? app.keys.ingest.key}`,
        'Content-Type': 'audio/wav',
        'Content-Length': String(body.length),
        ...opts.headers,
      },
    },
    Readable.from([body]),
  );
}

const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

describe.each(DRIVERS)('phone systems push recordings (%s store)', (driver: Driver) => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp(driver, { MAX_UPLOAD_BYTES: String(2 * 1024 * 1024) });
  });
  afterAll(async () => {
    await app.close();
  });

  it('archives the raw body with metadata from the query, and a retry answers with the same item', async () => {
    const wav = fakeMedia('wav');
    const query =
      'source=asterisk-1&fromNumber=%2B442079460958&toNumber=%2B442071234567&direction=inbound&orderId=ORD-1&orderId=ORD-2&capturedAt=2026-11-02T14:03:00Z';
    const first = await push(app, '1700000000.42', wav, { query });
    expect(first.status).toBe(201);
    const item = first.json();
    expect(item).toMatchObject({
      kind: 'call_recording',
      sha256: sha256(wav),
      size: wav.length,
      contentType: 'audio/wav',
      callId: '1700000000.42',
      source: 'asterisk-1',
      fromNumberE164: '+442079460958',
      direction: 'inbound',
      orderIds: ['ORD-1', 'ORD-2'],
      capturedAt: '2026-11-02T14:03:00.000Z',
    });
    expect(first.headers.location).toBe(`/v1/evidence/${item.id}`);

    // The PBX retries (a timeout on its side): same bytes, same call, same item.
    const retry = await push(app, '1700000000.42', wav, { query });
    expect(retry.status).toBe(200);
    expect(retry.json().id).toBe(item.id);

    // Searchable by order like any upload, and queued for the media pipeline.
    const found = await request(app.url)
      .get('/v1/orders/ORD-2/evidence')
      .set(bearer(app.keys.support));
    expect(found.body.items.map((i: { id: string }) => i.id)).toContain(item.id);
    const meta = await request(app.url)
      .get(`/v1/evidence/${item.id}`)
      .set(bearer(app.keys.support));
    expect(meta.body.media.status).toBe('pending');
  });

  it('refuses different bytes for a call that already has a recording, storing nothing', async () => {
    const before = await itemCount(app);
    const a = await push(app, 'call-77', fakeMedia('wav'), { query: 'source=pbx-2' });
    expect(a.status).toBe(201);
    const other = fakeMedia('wav');
    const b = await push(app, 'call-77', other, { query: 'source=pbx-2' });
    expect(b.status).toBe(409);
    expect(b.json().code).toBe('call_id_conflict');
    expect(await itemCount(app)).toBe(before + 1);
    expect(await settledStaging(app)).toEqual([]);
    // Refused before its bytes were promoted: no blob without an item.
    expect((await storedKeys(app)).some((k) => k.endsWith(sha256(other)))).toBe(false);
    // The same call id from another source is another call.
    const c = await push(app, 'call-77', fakeMedia('wav'), { query: 'source=pbx-3' });
    expect(c.status).toBe(201);
  });

  it('lets no other key claim a call first: its junk is its own item, the real recording still lands', async () => {
    const junk = await push(app, 'PBX-1700000009.1', fakeMedia('wav'), {
      query: 'source=asterisk-1',
      key: app.keys.ingest2.key,
    });
    expect(junk.status).toBe(201);
    const real = await push(app, 'PBX-1700000009.1', fakeMedia('wav'), {
      query: 'source=asterisk-1',
    });
    expect(real.status).toBe(201);
    expect(real.json().id).not.toBe(junk.json().id);
  });

  it('refuses the exact bytes of another call’s recording rather than answer with that call', async () => {
    const wav = fakeMedia('wav');
    expect((await push(app, 'greeting-1', wav, { query: 'source=pbx-5' })).status).toBe(201);
    const again = await push(app, 'greeting-2', wav, { query: 'source=pbx-5' });
    expect(again.status).toBe(409);
    expect(again.json().code).toBe('recording_of_another_call');
  });

  it('takes the metadata from headers, with the digest as RFC 9530 Repr-Digest', async () => {
    const wav = fakeMedia('wav');
    const res = await push(app, 'hdr-1', wav, {
      headers: {
        'X-Call-Source': 'freepbx',
        'X-Call-From': '+44 20 7946 0958',
        'X-Call-Direction': 'outbound',
        'X-Order-Id': 'ORD-9, ORD-10',
        'Repr-Digest': `sha-256=:${b64(sha256(wav))}:`,
        'Content-Disposition': 'attachment; filename="hdr-1.wav"',
      },
    });
    expect(res.status).toBe(201);
    expect(res.json()).toMatchObject({
      source: 'freepbx',
      fromNumberE164: '+442079460958',
      direction: 'outbound',
      orderIds: ['ORD-10', 'ORD-9'],
      originalFilename: 'hdr-1.wav',
    });
  });

  it.each([
    [
      'a digest that does not match',
      { headers: { 'Repr-Digest': `sha-256=:${b64('0'.repeat(64))}:` } },
      422,
      'checksum_mismatch',
    ],
    [
      'a malformed digest',
      { headers: { 'Content-Digest': 'md5=:abc:' } },
      400,
      'validation_failed',
    ],
    [
      'a field given differently in query and header',
      { query: 'source=a', headers: { 'X-Call-Source': 'b' } },
      400,
      'validation_failed',
    ],
    ['a misspelt field', { query: 'fromNumbr=%2B44' }, 400, 'unknown_field'],
    ['the kind in the query', { query: 'kind=photo' }, 400, 'unknown_field'],
    ['a control character in the call id', { callId: 'bad\u0001id' }, 400, 'validation_failed'],
    [
      'a non-audio Content-Type',
      { headers: { 'Content-Type': 'application/octet-stream' } },
      415,
      'unsupported_media_type',
    ],
    ['a support key', { key: 'support' }, 403, 'forbidden'],
  ] as const)('refuses %s, storing nothing', async (_name, opts, status, code) => {
    const before = await itemCount(app);
    const o = opts as {
      query?: string;
      headers?: Record<string, string>;
      key?: string;
      callId?: string;
    };
    const res = await push(app, o.callId ?? `refused-${Math.random()}`, fakeMedia('wav'), {
      query: o.query,
      headers: o.headers,
      key: o.key === 'support' ? app.keys.support.key : undefined,
    });
    expect(res.status).toBe(status);
    expect(res.json().code).toBe(code);
    expect(await itemCount(app)).toBe(before);
    expect(await settledStaging(app)).toEqual([]);
  });

  it('sniffs the bytes, not the header: a video sent as audio/wav is refused', async () => {
    const res = await push(app, 'video-as-audio', fakeMedia('mp4'));
    expect(res.status).toBe(415);
    expect(res.json()).toMatchObject({ code: 'unsupported_media_type', detectedType: 'video/mp4' });
  });

  it('refuses an empty body and a body over the limit', async () => {
    const empty = await push(app, 'empty', Buffer.alloc(0));
    expect(empty.status).toBe(422);
    expect(empty.json().code).toBe('empty_file');
    const big = await push(app, 'big', fakeMedia('wav', 3 * 1024 * 1024));
    expect(big.status).toBe(413);
    expect(big.json().code).toBe('file_too_large');
    expect(await settledStaging(app)).toEqual([]);
  });

  it('keeps nothing of a push cut off mid-body, and serves the next one', async () => {
    const before = await itemCount(app);
    const wav = fakeMedia('wav', 512 * 1024);
    await new Promise<void>((resolve) => {
      const req = http.request(`${app.url}/v1/calls/cut-1/recording`, {
        method: 'PUT',
        headers: {
          Authorization: `Bearer ${app.keys.ingest.key}`,
          'Content-Type': 'audio/wav',
          'Content-Length': String(wav.length),
        },
      });
      req.on('error', () => resolve());
      req.write(wav.subarray(0, 200 * 1024), () => setTimeout(() => req.destroy(), 200));
      req.on('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(await itemCount(app)).toBe(before);
    expect(await settledStaging(app)).toEqual([]);
    expect((await push(app, 'cut-1', wav)).status).toBe(201);
  });

  it('makes one item of five concurrent retries of the same push', async () => {
    const wav = fakeMedia('wav');
    const results = await Promise.all(
      Array.from({ length: 5 }, () => push(app, 'storm-1', wav, { query: 'source=pbx-9' })),
    );
    const ids = new Set(results.map((r) => r.json().id));
    expect(ids.size).toBe(1);
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
  });

  it('records the push and the refusal in the custody trail', async () => {
    const wav = fakeMedia('wav');
    const res = await push(app, 'audited-1', wav);
    const trail = await request(app.url)
      .get(`/v1/evidence/${res.json().id}/audit`)
      .set(bearer(app.keys.support));
    expect(trail.body.events[0]).toMatchObject({
      action: 'evidence.create',
      actor: { keyId: app.keys.ingest.id, role: 'ingest' },
      details: { sha256: sha256(wav) },
    });
  });
});
