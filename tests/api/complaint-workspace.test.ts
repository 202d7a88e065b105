import request from 'supertest';
import { sql } from 'kysely';
import { bearer, startTestApp, tamperWithBlob, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

jest.setTimeout(60_000);

const DAY = 86_400_000;

describe('complaint workspace, suggestions and coverage', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(async () => {
    await app.close();
  });

  const archive = async (fields: [string, string][], bytes: Buffer, filename = 'f.bin') => {
    const res = await upload(app.url, app.keys.ingest.key, fields, { filename, content: bytes });
    expect(res.status).toBe(201);
    return res.json().id as string;
  };
  const put = (id: string, body: object) =>
    request(app.url).put(`/v1/complaints/${id}`).set(bearer(app.keys.support)).send(body);
  const get = (path: string) => request(app.url).get(path).set(bearer(app.keys.support));

  it('keeps what support records of a complaint and refuses what is not one', async () => {
    const res = await put('CMP-FIELDS', {
      status: 'open',
      orderIds: ['ORD-F1'],
      trackingNumbers: ['1ZF1'],
      customerPhone: '+44 20 7946 0958',
      channel: 'review_site',
      topic: 'packing',
      claimUrl: 'https://reviews.example/r/123',
      description: 'Says the box was half empty.',
      openedAt: '2026-11-01T09:00:00Z',
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      id: 'CMP-FIELDS',
      trackingNumbers: ['1ZF1'],
      channel: 'review_site',
      topic: 'packing',
      claimUrl: 'https://reviews.example/r/123',
      description: 'Says the box was half empty.',
      openedAt: '2026-11-01T09:00:00.000Z',
      customerPhoneE164: '+442079460958',
    });
    // A rewrite without openedAt keeps the first one.
    const again = await put('CMP-FIELDS', { status: 'closed', orderIds: ['ORD-F1'] });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ openedAt: '2026-11-01T09:00:00.000Z', channel: null });

    for (const [body, field] of [
      [{ status: 'open', channel: 'twitter' }, 'channel'],
      [{ status: 'open', topic: 'vibes' }, 'topic'],
      [{ status: 'open', claimUrl: 'javascript:alert(1)' }, 'claimUrl'],
      [{ status: 'open', claimUrl: 'https://user:pw@example.com/x' }, 'claimUrl'],
      [{ status: 'open', description: 'x'.repeat(10_001) }, 'description'],
      [{ status: 'open', trackingNumbers: ['ok', ''] }, 'trackingNumbers'],
      [{ status: 'open', openedAt: 'yesterday' }, 'openedAt'],
      [{ status: 'open', surprise: 1 }, undefined],
    ] as const) {
      const bad = await put('CMP-BAD', body);
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('validation_failed');
      if (field) expect(bad.body.field).toBe(field);
    }
    expect((await get('/v1/complaints/CMP-BAD')).status).toBe(404);
  });

  describe('a complaint with its story in the archive', () => {
    const ids = {} as Record<
      | 'clip'
      | 'shift'
      | 'byTracking'
      | 'callIn'
      | 'callOut'
      | 'callLongBefore'
      | 'callStranger'
      | 'photo',
      string
    >;
    const opened = new Date(Date.now() - 3 * DAY);
    const at = (offsetDays: number) => new Date(opened.getTime() + offsetDays * DAY).toISOString();

    beforeAll(async () => {
      ids.clip = await archive(
        [
          ['kind', 'packing_video'],
          ['orderId', 'ORD-W1'],
          ['stationId', 'PK-01'],
          ['capturedAt', at(-2)],
        ],
        fakeMedia('mp4', 20_000),
      );
      ids.shift = await archive(
        [
          ['kind', 'packing_video'],
          ['stationId', 'PK-02'],
          ['capturedAt', at(-2.5)],
          [
            'segments',
            JSON.stringify([
              { orderId: 'ORD-OTHER', startSec: 0, endSec: 10 },
              { orderId: 'ORD-W2', trackingNumber: '1ZW2', startSec: 10, endSec: 25 },
            ]),
          ],
        ],
        fakeMedia('mov', 30_000),
      );
      ids.byTracking = await archive(
        [
          ['kind', 'packing_video'],
          ['trackingNumber', '1ZW3'],
          ['capturedAt', at(-1)],
        ],
        fakeMedia('mp4', 21_000),
      );
      ids.callIn = await archive(
        [
          ['kind', 'call_recording'],
          ['fromNumber', '+44 20-7946-0958'],
          ['toNumber', '+4930123456'],
          ['direction', 'inbound'],
          ['capturedAt', at(0.5)],
        ],
        fakeMedia('wav', 8_000),
      );
      ids.callOut = await archive(
        [
          ['kind', 'call_recording'],
          ['fromNumber', '+4930123456'],
          ['toNumber', '+442079460958'],
          ['direction', 'outbound'],
          ['capturedAt', at(1)],
        ],
        fakeMedia('wav', 8_001),
      );
      ids.callLongBefore = await archive(
        [
          ['kind', 'call_recording'],
          ['fromNumber', '+442079460958'],
          ['capturedAt', at(-60)],
        ],
        fakeMedia('wav', 8_002),
      );
      ids.callStranger = await archive(
        [
          ['kind', 'call_recording'],
          ['fromNumber', '+442079460000'],
          ['capturedAt', at(0)],
        ],
        fakeMedia('wav', 8_003),
      );
      ids.photo = await archive(
        [
          ['kind', 'photo'],
          ['complaintId', 'CMP-W'],
          ['capturedAt', at(0.2)],
        ],
        fakeMedia('png', 5_000),
      );
      const res = await put('CMP-W', {
        status: 'open',
        orderIds: ['ORD-W1', 'ORD-W2'],
        trackingNumbers: ['1ZW3'],
        customerPhone: '+44 20 7946 0958',
        topic: 'packing',
        openedAt: opened.toISOString(),
      });
      expect(res.status).toBe(201);
    });

    it('shows its evidence and a timeline of its orders’ clips, segments and calls', async () => {
      const res = await get('/v1/complaints/CMP-W');
      expect(res.status).toBe(200);
      expect(res.body.evidence.map((i: { id: string }) => i.id)).toEqual([ids.photo]);
      const timeline = res.body.timeline as {
        at: string;
        type: string;
        item: { id: string };
        segment?: { orderId: string; startSec: number };
        linkedToComplaint: boolean;
        orderIds: string[];
        via: string[];
      }[];
      expect(timeline.map((e) => [e.type, e.item.id])).toEqual([
        ['segment', ids.shift], // 2.5 days before, +10 s
        ['packing_video', ids.clip],
        ['photo', ids.photo],
        ['call_recording', ids.callIn], // the customer's calls, linked or not
        ['call_recording', ids.callOut],
      ]);
      expect(timeline.map((e) => e.via)).toEqual([
        ['order'],
        ['order'],
        ['complaint'],
        ['customer_phone'],
        ['customer_phone'],
      ]);
      const segment = timeline[0]!;
      expect(segment.segment).toMatchObject({ orderId: 'ORD-W2', startSec: 10 });
      expect(segment.orderIds).toEqual(['ORD-W2']);
      expect(new Date(segment.at).getTime()).toBe(new Date(at(-2.5)).getTime() + 10_000);
      expect(timeline.map((e) => e.linkedToComplaint)).toEqual([false, false, true, false, false]);
      // Sorted by time.
      expect([...timeline].sort((a, b) => a.at.localeCompare(b.at))).toEqual(timeline);
    });

    it('suggests unlinked evidence with its reasons, and accepting links it (audited)', async () => {
      const res = await get('/v1/complaints/CMP-W/suggestions');
      expect(res.status).toBe(200);
      const byId = new Map<string, { reasons: { code: string }[]; segments: unknown[] }>(
        res.body.suggestions.map((s: { item: { id: string } }) => [s.item.id, s]),
      );
      expect(new Set(byId.keys())).toEqual(
        new Set([ids.clip, ids.shift, ids.byTracking, ids.callIn, ids.callOut]),
      );
      const codes = (id: string) =>
        byId
          .get(id)!
          .reasons.map((r) => r.code)
          .sort();
      expect(codes(ids.clip)).toEqual(['order']);
      // Its segment's order became a link of the clip too.
      expect(codes(ids.shift)).toEqual(['order', 'order_segment']);
      expect(byId.get(ids.shift)!.segments).toHaveLength(1);
      expect(codes(ids.byTracking)).toEqual(['tracking_number']);
      expect(byId.get(ids.callIn)!.reasons).toEqual([
        expect.objectContaining({ code: 'customer_phone', direction: 'from_customer' }),
      ]);
      expect(byId.get(ids.callOut)!.reasons).toEqual([
        expect.objectContaining({ code: 'customer_phone', direction: 'to_customer' }),
      ]);
      // Outside the window around the complaint and its orders' clips: not suggested.
      expect(byId.has(ids.callLongBefore)).toBe(false);
      expect(byId.has(ids.callStranger)).toBe(false);
      expect(byId.has(ids.photo)).toBe(false); // already linked
      expect(res.body.callWindow.from < at(-2.5)).toBe(true);

      const accept = await request(app.url)
        .post('/v1/complaints/CMP-W/suggestions/accept')
        .set(bearer(app.keys.support))
        .send({ itemIds: [ids.clip, ids.callIn, ids.photo] });
      expect(accept.status).toBe(200);
      expect(accept.body).toEqual({
        complaintId: 'CMP-W',
        linked: [ids.clip, ids.callIn],
        alreadyLinked: [ids.photo],
      });
      const after = await get('/v1/complaints/CMP-W/suggestions');
      const left = after.body.suggestions.map((s: { item: { id: string } }) => s.item.id);
      expect(left).not.toContain(ids.clip);
      expect(left).not.toContain(ids.callIn);
      const complaint = await get('/v1/complaints/CMP-W');
      expect(complaint.body.evidence.map((i: { id: string }) => i.id).sort()).toEqual(
        [ids.clip, ids.callIn, ids.photo].sort(),
      );
      await app.ctx.audit.settle(); // every event answered, linked
      const { rows } = await sql<{ details: { suggested: Record<string, string[]> } }>`
        select details from audit_events
        where action = 'evidence.link' and complaint_id = 'CMP-W' and outcome = 'success'`.execute(
        app.ctx.db,
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]!.details.suggested).toEqual({
        [ids.clip]: ['order'],
        [ids.callIn]: ['customer_phone'],
      });
    });

    it('refuses to link what does not exist, and keys that may not link', async () => {
      const accept = (body: unknown, key = app.keys.support, id = 'CMP-W') =>
        request(app.url)
          .post(`/v1/complaints/${id}/suggestions/accept`)
          .set(bearer(key))
          .send(body as object);
      const cases: [unknown, number, string][] = [
        [{ itemIds: [] }, 400, 'validation_failed'],
        [{ itemIds: ['nope'] }, 404, 'not_found'],
        [{ itemIds: ['00000000-0000-4000-8000-000000000000'] }, 404, 'not_found'],
        [{ itemIds: Array.from({ length: 101 }, () => ids.clip) }, 400, 'validation_failed'],
        [{ itemIds: ids.clip }, 400, 'validation_failed'],
        [{ itemIds: [ids.clip], extra: true }, 400, 'validation_failed'],
      ];
      for (const [body, status, code] of cases) {
        const res = await accept(body);
        expect([res.status, res.body.code]).toEqual([status, code]);
      }
      expect((await accept({ itemIds: [ids.clip] }, app.keys.ingest)).status).toBe(403);
      expect((await accept({ itemIds: [ids.clip] }, app.keys.support, 'CMP-NONE')).status).toBe(
        404,
      );
      const anonymous = await request(app.url)
        .post('/v1/complaints/CMP-W/suggestions/accept')
        .send({ itemIds: [ids.clip] });
      expect(anonymous.status).toBe(401);
      expect((await get('/v1/complaints/CMP-NONE/suggestions')).status).toBe(404);
    });
  });

  it('reports complaints without the evidence they need, as JSON and CSV', async () => {
    const opened = new Date(Date.now() - DAY).toISOString();
    await put('CMP-COV-1', {
      status: 'open',
      orderIds: ['ORD-COV-HAS', 'ORD-COV-NONE'],
      openedAt: opened,
    });
    await put('CMP-COV-2', {
      status: 'open',
      topic: 'call',
      customerPhone: '+1 212 555 0100',
      openedAt: opened,
    });
    await put('@CMP-COV-3', { status: 'open', orderIds: ['ORD-COV-NONE'], openedAt: opened });
    await archive(
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-COV-HAS'],
      ],
      fakeMedia('mp4', 12_345),
    );
    // A clip whose stored bytes no longer match: verification fails.
    const broken = await archive(
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-COV-BROKEN'],
      ],
      fakeMedia('mp4', 12_346),
    );
    const row = await app.ctx.db
      .selectFrom('evidence_items')
      .select('blob_key')
      .where('id', '=', broken)
      .executeTakeFirstOrThrow();
    await tamperWithBlob(app, row.blob_key, Buffer.alloc(12_346, 7));
    const verify = await request(app.url)
      .post(`/v1/evidence/${broken}/verify`)
      .set(bearer(app.keys.support));
    expect(verify.body.status).not.toBe('ok');

    const from = new Date(Date.now() - 2 * DAY).toISOString();
    const to = new Date(Date.now() + DAY).toISOString();
    const json = await get(`/v1/reports/coverage?from=${from}&to=${to}`);
    expect(json.status).toBe(200);
    const noVideo = json.body.complaintsWithoutPackingVideo;
    expect(noVideo).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ complaintId: 'CMP-COV-1', ordersWithoutVideo: ['ORD-COV-NONE'] }),
        expect.objectContaining({ complaintId: '@CMP-COV-3' }),
      ]),
    );
    expect(json.body.callComplaintsWithoutRecording).toEqual(
      expect.arrayContaining([expect.objectContaining({ complaintId: 'CMP-COV-2' })]),
    );
    expect(json.body.ordersWithFailedVerification).toEqual([
      expect.objectContaining({ orderId: 'ORD-COV-BROKEN', itemId: broken }),
    ]);

    const csv = await request(app.url)
      .get(`/v1/reports/coverage?from=${from}&to=${to}`)
      .set(bearer(app.keys.support))
      .set('Accept', 'text/csv');
    expect(csv.status).toBe(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    const lines = csv.text.trimEnd().split('\r\n');
    expect(lines[0]).toBe('finding,complaint_id,order_id,item_id,opened_at,status,detail');
    expect(lines).toContain(
      `no_packing_video,CMP-COV-1,ORD-COV-NONE,,${new Date(opened).toISOString()},open,no packing video for this order`,
    );
    // A complaint id a spreadsheet would run as a formula is quoted, not executed.
    expect(csv.text).toContain(`"'@CMP-COV-3"`);
    expect(lines.some((l) => l.startsWith(`failed_verification,,ORD-COV-BROKEN,${broken}`))).toBe(
      true,
    );

    for (const query of ['from=yesterday', `from=${to}&to=${from}`, 'format=xml', 'x=1']) {
      const bad = await get(`/v1/reports/coverage?${query}`);
      expect([bad.status, bad.body.code]).toEqual([400, 'validation_failed']);
    }
    expect(
      (await request(app.url).get('/v1/reports/coverage').set(bearer(app.keys.ingest))).status,
    ).toBe(403);
  });
});
