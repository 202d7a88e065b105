import request from 'supertest';
import { bearer, DRIVERS, startTestApp, tamperWithBlob, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';

const binary = (res: request.Response, cb: (err: Error | null, body: Buffer) => void) => {
  const stream = res as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => cb(null, Buffer.concat(chunks)));
};

describe.each(DRIVERS)('downloads and lookups (%s driver)', (driver) => {
  let app: TestApp;
  let clip: Buffer;
  let id: string;

  beforeAll(async () => {
    app = await startTestApp(driver);
    clip = fakeMedia('mp4', 100_000);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'R-1'],
      ],
      {
        filename: 'Commande n°42 %22final%22.mp4', // a browser's escaping of the quotes
        content: clip,
      },
    );
    id = res.json().id;
  });
  afterAll(() => app.close());

  const get = (headers: Record<string, string> = {}, path = `/v1/evidence/${id}/content`) =>
    request(app.url)
      .get(path)
      .set(bearer(app.keys.support))
      .set(headers)
      .buffer(true)
      .parse(binary);

  it.each([
    ['bytes=0-0', 0, 0],
    ['bytes=0-99', 0, 99],
    ['bytes=99990-', 99990, 99999],
    ['bytes=-10', 99990, 99999],
    ['bytes=-1', 99999, 99999],
    ['bytes=-500000', 0, 99999],
    ['bytes=50000-9999999', 50000, 99999],
    ['bytes=12345-12345', 12345, 12345],
  ])('Range %s gives 206 with exactly those bytes', async (range, start, end) => {
    const res = await get({ Range: range });
    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/${clip.length}`);
    expect(Number(res.headers['content-length'])).toBe(end - start + 1);
    expect((res.body as Buffer).equals(clip.subarray(start, end + 1))).toBe(true);
  });

  it.each(['bytes=100000-', 'bytes=100000-100001', 'bytes=-0'])(
    'Range %s is unsatisfiable: 416',
    async (range) => {
      const res = await get({ Range: range });
      expect(res.status).toBe(416);
      expect(res.headers['content-range']).toBe(`bytes */${clip.length}`);
      expect(res.headers['content-type']).toMatch(/problem\+json/);
    },
  );

  it.each(['bytes=5-1', 'items=0-5', 'bytes=0-1,5-9', 'bytes=abc'])(
    'Range %s is ignored: the whole file',
    async (range) => {
      const res = await get({ Range: range });
      expect(res.status).toBe(200);
      expect(sha256(res.body as Buffer)).toBe(sha256(clip));
    },
  );

  it('answers If-None-Match with 304 and If-Range with a stale tag with the whole file', async () => {
    const etag = `"${sha256(clip)}"`;
    expect((await get({ 'If-None-Match': etag })).status).toBe(304);
    expect((await get({ 'If-None-Match': `W/${etag}, "other"` })).status).toBe(304);
    expect((await get({ 'If-None-Match': '"other"' })).status).toBe(200);
    const stale = await get({ Range: 'bytes=0-9', 'If-Range': '"stale"' });
    expect(stale.status).toBe(200);
    const fresh = await get({ Range: 'bytes=0-9', 'If-Range': etag });
    expect(fresh.status).toBe(206);
  });

  it('answers HEAD with headers and no body', async () => {
    const res = await request(app.url)
      .head(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.support));
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(clip.length));
    expect(res.headers.etag).toBe(`"${sha256(clip)}"`);
    const ranged = await request(app.url)
      .head(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.support))
      .set('Range', 'bytes=-10');
    // Range is for GET only (RFC 9110 §14.2): a HEAD describes the whole.
    expect(ranged.status).toBe(200);
    expect(ranged.headers['content-length']).toBe(String(clip.length));
    expect(ranged.headers['content-range']).toBeUndefined();
    const outside = await request(app.url)
      .head(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.support))
      .set('Range', `bytes=${clip.length + 100}-`);
    expect(outside.status).toBe(200);
    expect(outside.headers['content-length']).toBe(String(clip.length));
  });

  it('names the download safely and can ask for inline display', async () => {
    const res = await get();
    expect(res.headers['content-disposition']).toBe(
      `attachment; filename="Commande n_42 _final_.mp4"; filename*=UTF-8''Commande%20n%C2%B042%20%22final%22.mp4`,
    );
    expect(res.headers['content-type']).toBe('video/mp4');
    const inline = await get({}, `/v1/evidence/${id}/content?disposition=inline`);
    expect(inline.headers['content-disposition']).toMatch(/^inline; /);
  });

  it('refuses to serve bytes that no longer have the archived size', async () => {
    const damaged = fakeMedia('mp4', 10_000);
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'd.mp4',
      content: damaged,
    });
    const row = await app.ctx.db
      .selectFrom('evidence_items')
      .select('blob_key')
      .where('id', '=', res.json().id)
      .executeTakeFirstOrThrow();
    await tamperWithBlob(app, row.blob_key, damaged.subarray(0, 5000));
    for (const range of [undefined, 'bytes=0-99']) {
      const got = await get(range ? { Range: range } : {}, `/v1/evidence/${res.json().id}/content`);
      expect({ status: got.status, type: got.headers['content-type'] }).toEqual({
        status: 500,
        type: 'application/problem+json; charset=utf-8',
      });
      expect(JSON.parse((got.body as Buffer).toString()).code).toBe('evidence_unavailable');
    }
  });

  it('returns item metadata, and 404 for unknown or malformed ids', async () => {
    const meta = await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support));
    expect(meta.body).toMatchObject({ id, sha256: sha256(clip), orderIds: ['R-1'] });
    for (const bad of ['00000000-0000-4000-8000-000000000000', 'nope', "1' or 1=1--"]) {
      const res = await request(app.url)
        .get(`/v1/evidence/${encodeURIComponent(bad)}`)
        .set(bearer(app.keys.support));
      expect({ status: res.status, code: res.body.code }).toEqual({
        status: 404,
        code: 'not_found',
      });
      const content = await request(app.url)
        .get(`/v1/evidence/${encodeURIComponent(bad)}/content`)
        .set(bearer(app.keys.support));
      expect(content.status).toBe(404);
    }
  });

  it('lists an order oldest capture first and an unknown order as empty', async () => {
    const times = ['2026-10-03T10:00:00Z', '2026-10-01T10:00:00Z', '2026-10-02T10:00:00Z'];
    for (const capturedAt of times) {
      await upload(
        app.url,
        app.keys.ingest.key,
        [
          ['kind', 'photo'],
          ['orderId', 'ORD-SORT'],
          ['capturedAt', capturedAt],
        ],
        {
          filename: 'p.jpg',
          content: fakeMedia('jpeg'),
        },
      );
    }
    const res = await request(app.url)
      .get('/v1/orders/ORD-SORT/evidence')
      .set(bearer(app.keys.support));
    expect(res.body.orderId).toBe('ORD-SORT');
    expect(res.body.items.map((i: { capturedAt: string }) => i.capturedAt)).toEqual(
      [...times].sort().map((t) => t.replace('Z', '.000Z')),
    );
    const none = await request(app.url)
      .get('/v1/orders/NOPE/evidence')
      .set(bearer(app.keys.support));
    expect(none.body).toEqual({ orderId: 'NOPE', items: [] });
  });

  it('pages through search results with a cursor, newest first, without gaps or repeats', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const res = await upload(
        app.url,
        app.keys.ingest.key,
        [
          ['kind', 'packing_video'],
          ['stationId', 'PK-PAGE'],
          ['capturedAt', `2026-09-0${i + 1}T08:00:00Z`],
        ],
        { filename: 'v.mp4', content: fakeMedia('mp4') },
      );
      ids.push(res.json().id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await request(app.url)
        .get('/v1/evidence')
        .query({ stationId: 'PK-PAGE', limit: 3, ...(cursor ? { cursor } : {}) })
        .set(bearer(app.keys.support));
      expect(res.status).toBe(200);
      seen.push(...res.body.items.map((i: { id: string }) => i.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    const window = await request(app.url)
      .get('/v1/evidence')
      .query({
        stationId: 'PK-PAGE',
        from: '2026-09-02T00:00:00Z',
        to: '2026-09-04T00:00:00Z',
        kind: 'packing_video',
      })
      .set(bearer(app.keys.support));
    expect(window.body.items.map((i: { id: string }) => i.id)).toEqual([ids[2], ids[1]]);
  });

  it('refuses bad search parameters with clear codes', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ cursor: 'garbage' }, 'invalid_cursor'],
      [{ phone: '12' }, 'invalid_phone_number'],
      [{ limit: '0' }, 'validation_failed'],
      [{ limit: '5000' }, 'validation_failed'],
      [{ kind: 'selfie' }, 'validation_failed'],
      [{ from: 'last week' }, 'validation_failed'],
      [{ colour: 'red' }, 'validation_failed'],
    ];
    for (const [query, code] of cases) {
      const res = await request(app.url)
        .get('/v1/evidence')
        .query(query)
        .set(bearer(app.keys.support));
      expect({ query, status: res.status, code: res.body.code }).toEqual({
        query,
        status: 400,
        code,
      });
    }
    const twice = await request(app.url)
      .get('/v1/evidence?orderId=a&orderId=b')
      .set(bearer(app.keys.support));
    expect(twice.status).toBe(400);
  });
});
