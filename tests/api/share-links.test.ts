import request from 'supertest';
import { sql } from 'kysely';
import { bearer, DRIVERS, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { MediaFiles } from '../support/media-files';
import { upload } from '../support/multipart';
import { createDb } from '../../src/db/database';

jest.setTimeout(60_000);

describe.each(DRIVERS)('share links (%s)', (driver) => {
  let app: TestApp;
  let itemId: string;
  const clip = fakeMedia('mp4', 50_000);

  beforeAll(async () => {
    app = await startTestApp(driver);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-SHARE'],
      ],
      { filename: 'packing.mp4', content: clip },
    );
    expect(res.status).toBe(201);
    itemId = res.json().id;
  });
  afterAll(async () => {
    await app.close();
    files.cleanup();
  });
  const files = new MediaFiles();

  const create = (body: unknown, key = app.keys.support) =>
    request(app.url)
      .post('/v1/share-links')
      .set(bearer(key))
      .send(body as object);
  const open = (path: string) => request(app.url).get(path).buffer(true).parse(binary);

  it('opens the item for someone without a key until it is revoked, recording every use', async () => {
    await request(app.url)
      .put('/v1/complaints/CMP-SHARE')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-SHARE'] });
    const made = await create({ itemId, complaintId: 'CMP-SHARE', note: 'Marketplace claim 42' });
    expect(made.status).toBe(201);
    expect(made.headers['cache-control']).toBe('no-store');
    const { token, url, id, expiresAt, createdAt } = made.body;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url).toBe(`/s/${token}`);
    expect(new Date(expiresAt).getTime() - new Date(createdAt).getTime()).toBe(7 * 86_400_000);
    expect(made.body).toMatchObject({
      target: { type: 'item', itemId },
      complaintId: 'CMP-SHARE',
      status: 'active',
      useCount: 0,
    });

    const whole = await open(url).set('X-Forwarded-For', '203.0.113.9');
    expect(whole.status).toBe(200);
    expect(sha256(whole.body)).toBe(sha256(clip));
    expect(whole.headers['content-disposition']).toMatch(/^inline/);
    expect(whole.headers['cache-control']).toBe('private, no-store');
    expect(whole.headers['referrer-policy']).toBe('no-referrer');
    expect(whole.headers['x-robots-tag']).toBe('noindex, nofollow');
    const part = await open(url).set('Range', 'bytes=100-199');
    expect(part.status).toBe(206);
    expect(part.body.equals(clip.subarray(100, 200))).toBe(true);
    expect((await open(`${url}?download`)).headers['content-disposition']).toMatch(/^attachment/);

    // The token is nowhere in the database: only its SHA-256.
    const { rows: leaks } = await sql<{ n: number }>`
      select count(*)::int as n from share_links where token_sha256 = ${token}
        or note like ${`%${token}%`}`.execute(app.ctx.db);
    expect(leaks[0]!.n).toBe(0);

    await app.ctx.audit.settle(); // every event answered, linked
    const uses = await sql<{ client_ip: string | null; actor_role: string; details: unknown }>`
      select client_ip, actor_role, details from audit_events
      where action = 'share_link.use' and outcome = 'success' order by seq`.execute(app.ctx.db);
    expect(uses.rows).toHaveLength(3);
    expect(uses.rows[0]).toMatchObject({
      actor_role: 'share_link',
      details: expect.objectContaining({ shareLinkId: id, itemId }),
    });
    expect(uses.rows.every((r) => r.client_ip)).toBe(true);
    expect(
      (await request(app.url).get(`/v1/share-links/${id}`).set(bearer(app.keys.support))).body,
    ).toMatchObject({ useCount: 3 });

    const listed = await request(app.url)
      .get('/v1/share-links?complaintId=CMP-SHARE')
      .set(bearer(app.keys.support));
    expect(listed.body.items.map((l: { id: string }) => l.id)).toEqual([id]);
    expect(JSON.stringify(listed.body)).not.toContain(token);

    const revoked = await request(app.url)
      .delete(`/v1/share-links/${id}`)
      .set(bearer(app.keys.support));
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    const after = await open(url);
    expect(after.status).toBe(410);
    expect(JSON.parse(after.body.toString()).code).toBe('share_link_revoked');
    // The refusal is recorded too, naming the link but never the token.
    await app.ctx.audit.settle(); // every event answered, linked
    const { rows: refused } = await sql<{ details: { path: string; shareLinkId: string } }>`
      select details from audit_events where action = 'share_link.use' and outcome <> 'success'`.execute(
      app.ctx.db,
    );
    expect(refused.at(-1)!.details).toMatchObject({ path: '/s/[token]', shareLinkId: id });
    const { rows: all } = await sql<{ n: number }>`
      select count(*)::int as n from audit_events where details::text like ${`%${token}%`}`.execute(
      app.ctx.db,
    );
    expect(all[0]!.n).toBe(0);
  });

  it('shares one order’s cut of a long recording, once it is made', async () => {
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        [
          'segments',
          JSON.stringify([
            { orderId: 'ORD-S1', startSec: 0, endSec: 2 },
            { orderId: 'ORD-S2', startSec: 2, endSec: 4 },
          ]),
        ],
      ],
      { filename: 'shift.mov', content: files.mov(4) },
    );
    expect(res.status).toBe(201);
    const shift = res.json().id as string;
    const item = await request(app.url).get(`/v1/evidence/${shift}`).set(bearer(app.keys.support));
    const segment = item.body.segments.find((s: { orderId: string }) => s.orderId === 'ORD-S2');
    const made = await create({ segmentId: segment.id });
    expect(made.status).toBe(201);
    expect(made.body.target).toEqual({
      type: 'segment',
      itemId: shift,
      segmentId: segment.id,
      bundleId: null,
    });
    const early = await open(made.body.url);
    expect(early.status).toBe(404);
    expect(JSON.parse(early.body.toString()).code).toBe('derivative_not_ready');

    expect(await app.ctx.media.process(shift)).toBe('done');
    const direct = await request(app.url)
      .get(segment.contentUrl)
      .set(bearer(app.keys.support))
      .buffer(true)
      .parse(binary);
    const shared = await open(made.body.url);
    expect(shared.status).toBe(200);
    expect(shared.headers['content-disposition']).toMatch(/^inline; filename="shift\.ORD-S2\./);
    expect(sha256(shared.body)).toBe(sha256(direct.body));
    expect(shared.headers.etag).toBe(direct.headers.etag);
  });

  it('hands a bundle to someone without a key: the same ZIP support downloads', async () => {
    const linked = await request(app.url)
      .post('/v1/complaints/CMP-SHARE-B/suggestions/accept')
      .set(bearer(app.keys.support))
      .send({ itemIds: [itemId] });
    expect(linked.status).toBe(404); // no complaint yet
    await request(app.url)
      .put('/v1/complaints/CMP-SHARE-B')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-SHARE'] });
    await request(app.url)
      .post('/v1/complaints/CMP-SHARE-B/suggestions/accept')
      .set(bearer(app.keys.support))
      .send({ itemIds: [itemId] });
    const bundle = await request(app.url)
      .post('/v1/complaints/CMP-SHARE-B/bundles')
      .set(bearer(app.keys.support))
      .send({});
    expect(bundle.status).toBe(201);
    const made = await create({ bundleId: bundle.body.id });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ complaintId: 'CMP-SHARE-B', target: { type: 'bundle' } });
    const direct = await request(app.url)
      .get(bundle.body.downloadUrl)
      .set(bearer(app.keys.support))
      .buffer(true)
      .parse(binary);
    const shared = await open(made.body.url);
    expect(shared.status).toBe(200);
    expect(shared.headers['content-type']).toBe('application/zip');
    expect(shared.headers['cache-control']).toBe('private, no-store');
    expect(sha256(shared.body)).toBe(sha256(direct.body));
    await app.ctx.audit.settle(); // every event answered, linked
    const { rows } = await sql<{ action: string; details: { via?: { shareLinkId: string } } }>`
      select action, details from audit_events
      where action in ('share_link.use', 'bundle.download') and outcome = 'success'
        and details->>'bundleId' = ${bundle.body.id}
         or details->'via'->>'shareLinkId' = ${made.body.id}
      order by seq`.execute(app.ctx.db);
    // Support's own download, then the download the link made and its use (recorded once the
    // answer is served, so a refused one is not a use).
    expect(rows.map((r) => r.action)).toEqual([
      'bundle.download',
      'bundle.download',
      'share_link.use',
    ]);
    expect(rows[0]!.details.via).toBeUndefined();
    expect(rows[1]!.details.via?.shareLinkId).toBe(made.body.id);
    await request(app.url).delete(`/v1/share-links/${made.body.id}`).set(bearer(app.keys.support));
    expect((await open(made.body.url)).status).toBe(410);
  });

  it('stops working once the item is deleted', async () => {
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'photo']], {
      filename: 'p.png',
      content: fakeMedia('png', 3_333),
    });
    const made = await create({ itemId: res.json().id });
    expect((await open(made.body.url)).status).toBe(200);
    const deleted = await request(app.url)
      .delete(`/v1/evidence/${res.json().id}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'uploaded by mistake' });
    expect(deleted.status).toBe(200);
    const after = await open(made.body.url);
    expect(after.status).toBe(410);
    expect(JSON.parse(after.body.toString()).code).toBe('evidence_deleted');
  });

  it('stops working once expired', async () => {
    const made = await create({ itemId, expiresInDays: 1 });
    expect(made.status).toBe(201);
    // The service's own role may not lengthen or shorten a link's life...
    await expect(
      sql`update share_links set expires_at = now() + interval '1 year'
        where id = ${made.body.id}`.execute(app.ctx.db),
    ).rejects.toThrow(/permission denied/);
    // ...so the clock is moved on a day and a bit by the database's owner.
    const owner = createDb(app.databaseUrl, 1);
    try {
      await sql`update share_links set created_at = now() - interval '2 days',
        expires_at = now() - interval '1 hour' where id = ${made.body.id}`.execute(owner);
    } finally {
      await owner.destroy();
    }
    const res = await open(made.body.url);
    expect(res.status).toBe(410);
    expect(JSON.parse(res.body.toString()).code).toBe('share_link_expired');
    expect(
      (await request(app.url).get(`/v1/share-links/${made.body.id}`).set(bearer(app.keys.support)))
        .body.status,
    ).toBe('expired');
  });

  it('refuses what is not a link, and what may not be shared', async () => {
    for (const path of ['/s/short', `/s/${'A'.repeat(43)}`, `/s/${'A'.repeat(42)}%2F`]) {
      const res = await open(path);
      expect(res.status).toBe(404);
    }
    const cases: [unknown, number, string][] = [
      [{}, 400, 'validation_failed'],
      [{ itemId, segmentId: itemId }, 400, 'validation_failed'],
      [{ itemId, expiresInDays: 31 }, 400, 'validation_failed'],
      [{ itemId, expiresInDays: 0 }, 400, 'validation_failed'],
      [{ itemId, expiresInDays: 1.5 }, 400, 'validation_failed'],
      [{ itemId, note: 'x'.repeat(501) }, 400, 'validation_failed'],
      [{ itemId, token: 'mine' }, 400, 'validation_failed'],
      // Listed under a complaint only when the evidence is that complaint's.
      [{ itemId, complaintId: 'CMP-SOMEONE-ELSE' }, 400, 'validation_failed'],
      [{ itemId: 'nope' }, 404, 'not_found'],
      [{ itemId: '00000000-0000-4000-8000-000000000000' }, 404, 'not_found'],
      [{ segmentId: '00000000-0000-4000-8000-000000000000' }, 404, 'not_found'],
      [{ bundleId: '00000000-0000-4000-8000-000000000000' }, 404, 'not_found'],
    ];
    for (const [body, status, code] of cases) {
      const res = await create(body);
      expect([res.status, res.body.code]).toEqual([status, code]);
    }
    expect((await create({ itemId }, app.keys.ingest)).status).toBe(403);
    expect((await request(app.url).post('/v1/share-links').send({ itemId })).status).toBe(401);
    expect((await request(app.url).get('/v1/share-links')).status).toBe(401);
    expect(
      (await request(app.url).delete('/v1/share-links/nope').set(bearer(app.keys.support))).status,
    ).toBe(404);
    expect((await request(app.url).post(`/s/${'A'.repeat(43)}`)).status).toBe(405);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from share_links
      where created_by_key_id <> ${app.keys.support.id}`.execute(app.ctx.db);
    expect(rows[0]!.n).toBe(0);
  });
});

function binary(res: request.Response, done: (err: Error | null, body: Buffer) => void) {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}
