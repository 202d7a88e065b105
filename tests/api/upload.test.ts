import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { bearer, DRIVERS, itemCount, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';

describe.each(DRIVERS)('upload and retrieval (%s driver)', (driver) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(driver);
  });
  afterAll(() => app.close());

  const countRows = () => itemCount(app);

  /** A packing clip under an Idempotency-Key, from the first station. */
  const sendWithKey = (key: string, clip: Buffer) =>
    upload(
      app.url,
      app.keys.ingest.key,
      [['kind', 'packing_video']],
      { filename: 'r.mp4', content: clip },
      { 'Idempotency-Key': key },
    );

  it('archives a packing clip with the server-computed SHA-256 and serves the same bytes', async () => {
    const clip = fakeMedia('mp4', 300_000);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-1001'],
        ['orderId', 'ORD-1002'],
        ['stationId', 'PK-03'],
        ['operatorId', 'op-7'],
        ['trackingNumber', '1Z999'],
        ['capturedAt', '2026-11-02T14:03:00+01:00'],
        ['sha256', sha256(clip).toUpperCase()],
      ],
      { filename: 'clip\u202e.mp4', contentType: 'text/html', content: clip },
    );
    expect(res.status).toBe(201);
    const item = res.json();
    expect(res.headers.location).toBe(`/v1/evidence/${item.id}`);
    expect(item).toMatchObject({
      kind: 'packing_video',
      sha256: sha256(clip),
      size: clip.length,
      contentType: 'video/mp4', // sniffed, not the client's text/html
      originalFilename: 'clip.mp4',
      capturedAt: '2026-11-02T13:03:00.000Z',
      orderIds: ['ORD-1001', 'ORD-1002'],
      stationId: 'PK-03',
      operatorId: 'op-7',
      trackingNumber: '1Z999',
    });

    const got = await request(app.url)
      .get(`/v1/evidence/${item.id}/content`)
      .set(bearer(app.keys.support))
      .buffer(true)
      .parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });
    expect(got.status).toBe(200);
    expect(sha256(got.body as Buffer)).toBe(sha256(clip));
    expect(got.headers.etag).toBe(`"${sha256(clip)}"`);
    expect(got.headers['repr-digest']).toBe(
      `sha-256=:${Buffer.from(sha256(clip), 'hex').toString('base64')}:`,
    );
    expect(got.headers['x-content-type-options']).toBe('nosniff');
    expect(got.headers['accept-ranges']).toBe('bytes');
    expect(got.headers['content-disposition']).toBe(
      `attachment; filename="clip.mp4"; filename*=UTF-8''clip.mp4`,
    );
  });

  it('archives a call recording with phone numbers normalised to E.164 and finds it by phone', async () => {
    const wav = fakeMedia('wav');
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'call_recording'],
        ['orderId', 'ORD-2001'],
        ['callId', `call-${randomBytes(4).toString('hex')}`],
        ['fromNumber', '+44 20 7946 0958'],
        ['toNumber', 'anonymous'],
        ['agentId', 'agent-12'],
        ['direction', 'inbound'],
        ['source', 'asterisk-1'],
      ],
      { filename: 'call.wav', content: wav },
    );
    expect(res.status).toBe(201);
    expect(res.json()).toMatchObject({
      contentType: 'audio/wav',
      fromNumber: '+44 20 7946 0958',
      fromNumberE164: '+442079460958',
      toNumber: 'anonymous',
      toNumberE164: null,
      direction: 'inbound',
    });
    const found = await request(app.url)
      .get('/v1/evidence')
      .query({ phone: '+44 (0)20 7946 0958'.replace('(0)', '') })
      .set(bearer(app.keys.support));
    expect(found.status).toBe(200);
    expect(found.body.items.map((i: { id: string }) => i.id)).toEqual([res.json().id]);
  });

  it('returns the existing item with merged links when the same bytes arrive again', async () => {
    const clip = fakeMedia('mp4');
    const first = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'A-1'],
      ],
      {
        filename: 'a.mp4',
        content: clip,
      },
    );
    const before = await countRows();
    const again = await upload(
      app.url,
      app.keys.ingest2.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'A-2'],
        ['complaintId', 'C-9'],
      ],
      { filename: 'b.mp4', content: clip },
    );
    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.json().id).toBe(first.json().id);
    // The second station learns only what it sent (tests/api/dedupe-privacy.test.ts).
    expect(again.json()).toMatchObject({
      orderIds: ['A-2'],
      complaintIds: ['C-9'],
      duplicate: true,
    });
    expect(await countRows()).toBe(before);
    // The second station may read its receipt too; people see both stations' links.
    const receipt = await request(app.url)
      .get(`/v1/evidence/${first.json().id}`)
      .set(bearer(app.keys.ingest2));
    expect(receipt.status).toBe(200);
    expect(receipt.body).toEqual(again.json());
    const full = await request(app.url)
      .get(`/v1/evidence/${first.json().id}`)
      .set(bearer(app.keys.support));
    expect(full.body).toMatchObject({ orderIds: ['A-1', 'A-2'], complaintIds: ['C-9'] });
  });

  it('makes one item when the same bytes are uploaded concurrently', async () => {
    const clip = fakeMedia('mp4', 2_000_000);
    const before = await countRows();
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        upload(
          app.url,
          app.keys.ingest.key,
          [
            ['kind', 'packing_video'],
            ['orderId', `RACE-${i}`],
          ],
          {
            filename: 'race.mp4',
            content: clip,
          },
        ),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.json().id)).size).toBe(1);
    expect(await countRows()).toBe(before + 1);
    const item = await request(app.url)
      .get(`/v1/evidence/${results[0]!.json().id}`)
      .set(bearer(app.keys.support));
    expect(item.body.orderIds).toEqual(['RACE-0', 'RACE-1', 'RACE-2', 'RACE-3']);
  });

  it('replays the first response for a repeated Idempotency-Key without storing anything new', async () => {
    const clip = fakeMedia('mp4');
    const key = `retry-${randomBytes(4).toString('hex')}`;
    const fields: [string, string][] = [
      ['kind', 'packing_video'],
      ['orderId', 'IDEM-1'],
    ];
    const first = await upload(
      app.url,
      app.keys.ingest.key,
      fields,
      { filename: 'c.mp4', content: clip },
      { 'Idempotency-Key': key },
    );
    const second = await upload(
      app.url,
      app.keys.ingest.key,
      fields,
      { filename: 'c.mp4', content: clip },
      { 'Idempotency-Key': key },
    );
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.json()).toEqual(first.json());
    // Another key's Idempotency-Key space is separate.
    const other = await upload(
      app.url,
      app.keys.ingest2.key,
      fields,
      { filename: 'c.mp4', content: clip },
      { 'Idempotency-Key': key },
    );
    expect(other.status).toBe(200);
    expect(other.headers['idempotent-replayed']).toBeUndefined();
  });

  it('refuses a different file under a used Idempotency-Key and keeps nothing of it', async () => {
    const key = `reuse-${randomBytes(4).toString('hex')}`;
    const send = (clip: Buffer) => sendWithKey(key, clip);
    expect((await send(fakeMedia('mp4'))).status).toBe(201);
    const before = await countRows();
    const reused = await send(fakeMedia('mp4'));
    expect({ status: reused.status, code: reused.json().code }).toEqual({
      status: 422,
      code: 'idempotency_key_reused',
    });
    expect(await countRows()).toBe(before);
  });

  it('refuses a different file under a used Idempotency-Key when requests race', async () => {
    const key = `race-${randomBytes(4).toString('hex')}`;
    const send = (clip: Buffer) => sendWithKey(key, clip);
    const [a, b] = await Promise.all([
      send(fakeMedia('mp4', 1_000_000)),
      send(fakeMedia('mp4', 1_000_000)),
    ]);
    const statuses = [a.status, b.status].sort();
    // Either the loser saw the winner's stored response before sending (201 replay is impossible
    // for different bytes) or it lost the commit race and is refused.
    expect(statuses[0]).toBe(201);
    expect([201, 422]).toContain(statuses[1]);
    if (statuses[1] === 422)
      expect([a, b].find((r) => r.status === 422)!.json().code).toBe('idempotency_key_reused');
  });

  it('refuses a second recording with different bytes for the same call id', async () => {
    const callId = `CA${randomBytes(8).toString('hex')}`;
    const fields: [string, string][] = [
      ['kind', 'call_recording'],
      ['callId', callId],
      ['source', 'twilio'],
    ];
    const first = await upload(app.url, app.keys.ingest.key, fields, {
      filename: 'a.wav',
      content: fakeMedia('wav'),
    });
    const second = await upload(app.url, app.keys.ingest.key, fields, {
      filename: 'b.wav',
      content: fakeMedia('wav'),
    });
    expect(first.status).toBe(201);
    expect(second.status).toBe(409);
    expect(second.json().code).toBe('call_id_conflict');
  });

  it('links more orders and complaints to an item', async () => {
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'photo']], {
      filename: 'p.png',
      content: fakeMedia('png'),
    });
    const id = res.json().id;
    const linked = await request(app.url)
      .post(`/v1/evidence/${id}/links`)
      .set(bearer(app.keys.support))
      .send({ orderIds: ['L-1', 'L-1', '#1001/B'], complaintIds: ['CMP-1'] });
    expect(linked.status).toBe(200);
    expect(linked.body.orderIds).toEqual(['#1001/B', 'L-1']);
    const byOrder = await request(app.url)
      .get(`/v1/orders/${encodeURIComponent('#1001/B')}/evidence`)
      .set(bearer(app.keys.support));
    expect(byOrder.body.items.map((i: { id: string }) => i.id)).toEqual([id]);
    const byComplaint = await request(app.url)
      .get('/v1/complaints/CMP-1/evidence')
      .set(bearer(app.keys.support));
    expect(byComplaint.body).toMatchObject({ complaintId: 'CMP-1', items: [{ id }] });
  });
});
