import request from 'supertest';
import { sql } from 'kysely';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { getBytes, MediaFiles, probeBytes } from '../support/media-files';
import { sha256 } from '../support/media';
import { upload } from '../support/multipart';

jest.setTimeout(60_000);

describe('per-order segments of long recordings', () => {
  let app: TestApp;
  const files = new MediaFiles();

  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(async () => {
    await app.close();
    files.cleanup();
  });

  const archiveWithSegments = async (bytes: Buffer, kind: string, segments: unknown[]) => {
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', kind],
        ['stationId', 'PK-03'],
        ['segments', JSON.stringify(segments)],
      ],
      { filename: 'shift.mov', content: bytes },
    );
    expect(res.status).toBe(201);
    return res.json().id as string;
  };

  it('finds a station recording by each of its orders, with that order’s part, and serves the cut', async () => {
    const clip = files.mov(12, '640x360');
    const id = await archiveWithSegments(clip, 'packing_video', [
      { orderId: 'ORD-A', trackingNumber: '1Z999', startSec: 0, endSec: 4 },
      { orderId: 'ORD-B', startSec: 4, endSec: 8 },
      { orderId: 'ORD-C', startSec: 8, endSec: 30 }, // the station stopped recording early
    ]);
    const byB = await request(app.url)
      .get('/v1/orders/ORD-B/evidence')
      .set(bearer(app.keys.support));
    expect(byB.body.items).toHaveLength(1);
    const [segB] = byB.body.items[0].segments;
    expect(byB.body.items[0].segments).toHaveLength(1);
    expect(segB).toMatchObject({ orderId: 'ORD-B', startSec: 4, endSec: 8 });
    expect(segB.contentUrl).toBe(`/v1/evidence/${id}/content?segment=${segB.id}`);

    // Not cut yet.
    const early = await request(app.url).get(segB.contentUrl).set(bearer(app.keys.support));
    expect(early.status).toBe(404);
    expect(early.body.code).toBe('derivative_not_ready');

    expect(await app.ctx.media.process(id)).toBe('done');
    const cut = await getBytes(app, segB.contentUrl);
    expect(cut.status).toBe(200);
    expect(cut.headers['content-type']).toContain('video/quicktime');
    const probed = probeBytes(files.dir, cut.body);
    expect(Number(probed.format.duration)).toBeGreaterThan(3.5);
    expect(Number(probed.format.duration)).toBeLessThan(5);
    const ranged = await getBytes(app, segB.contentUrl, { Range: 'bytes=0-99' });
    expect(ranged.status).toBe(206);

    // The cut records its parent's hash and offsets; the last one was clamped to the clip's end.
    const { rows } = await sql<{
      source_sha256: string;
      params: { startSec: number; endSec: number; orderId: string };
    }>`
      select source_sha256, params from segment_cuts where item_id = ${id} order by params->>'startSec'`.execute(
      app.ctx.db,
    );
    expect(rows.map((r) => r.source_sha256)).toEqual([sha256(clip), sha256(clip), sha256(clip)]);
    const c = rows.find((r) => r.params.orderId === 'ORD-C')!;
    expect(c.params.endSec).toBeCloseTo(12, 0);

    // The read is in the custody trail, with the segment and the order.
    const trail = await request(app.url)
      .get(`/v1/evidence/${id}/audit`)
      .set(bearer(app.keys.admin));
    expect(
      trail.body.events.find(
        (e: { action: string; details: { segmentId?: string } }) =>
          e.action === 'derivative.download' && e.details.segmentId === segB.id,
      ),
    ).toMatchObject({
      details: { orderId: 'ORD-B', startSec: 4, endSec: 8, derivative: 'segment' },
    });

    // The item lists all its segments.
    const item = await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support));
    expect(item.body.segments.map((s: { orderId: string }) => s.orderId)).toEqual([
      'ORD-A',
      'ORD-B',
      'ORD-C',
    ]);
    expect(item.body.orderIds).toEqual(['ORD-A', 'ORD-B', 'ORD-C']);
  });

  it('takes segments added after the upload, from the station that uploaded it or from support', async () => {
    const id = await archiveWithSegments(files.mulawWav(6, 1), 'call_recording', []);
    const post = (key: string, body: object) =>
      request(app.url)
        .post(`/v1/evidence/${id}/segments`)
        .set('Authorization', `Bearer ${key}`)
        .send(body);
    expect(
      (await post(app.keys.ingest2.key, { segments: [{ orderId: 'X', startSec: 0, endSec: 1 }] }))
        .status,
    ).toBe(403);
    const bad = await post(app.keys.ingest.key, {
      segments: [{ orderId: 'X', startSec: 3, endSec: 1 }],
    });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('validation_failed');
    const ok = await post(app.keys.ingest.key, {
      segments: [{ orderId: 'ORD-CALL', startSec: 1, endSec: 3 }],
    });
    expect(ok.status).toBe(201);
    const late = await post(app.keys.support.key, {
      segments: [{ orderId: 'ORD-LATE', startSec: 10, endSec: 12 }],
    });
    expect(late.status).toBe(201);
    expect(late.body.segments).toHaveLength(2);

    // The call's cut is a WAV of its own part; a segment past the end fails, recorded on the item.
    expect(await app.ctx.media.process(id)).toBe('partial');
    const item = await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support));
    expect(item.body.media.detail).toMatch(
      /segment ORD-LATE 0:10: it starts at 0:10, after the recording ends/,
    );
    const seg = item.body.segments.find((s: { orderId: string }) => s.orderId === 'ORD-CALL');
    const cut = await getBytes(app, seg.contentUrl);
    expect(cut.headers['content-type']).toContain('audio/wav');
    expect(Number(probeBytes(files.dir, cut.body).format.duration)).toBeCloseTo(2, 0);
  });

  it('refuses segments on photos, malformed JSON, and unknown segment ids', async () => {
    const photo = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'photo'],
        ['segments', JSON.stringify([{ orderId: 'P', startSec: 0, endSec: 1 }])],
      ],
      { filename: 'p.jpg', content: await files.jpegWithExif() },
    );
    expect(photo.status).toBe(400);
    const malformed = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['segments', '[{"orderId": "A", "startSec": 0'],
      ],
      { filename: 'c.mov', content: files.mov(1) },
    );
    expect(malformed.status).toBe(400);
    expect(malformed.json().code).toBe('validation_failed');
    const id = await archiveWithSegments(files.mov(1), 'packing_video', []);
    const missing = await request(app.url)
      .get(`/v1/evidence/${id}/content?segment=00000000-0000-4000-8000-000000000000`)
      .set(bearer(app.keys.support));
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('not_found');
    // Two segment ids are a mistake, never a way to the whole original.
    const twice = await request(app.url)
      .get(`/v1/evidence/${id}/content?segment=a&segment=b`)
      .set(bearer(app.keys.support));
    expect(twice.status).toBe(400);
  });
});
