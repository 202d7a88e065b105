import request from 'supertest';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

describe('API keys and roles', () => {
  let app: TestApp;
  let ownId: string;
  let otherId: string;

  beforeAll(async () => {
    app = await startTestApp('fs');
    ownId = (
      await upload(
        app.url,
        app.keys.ingest.key,
        [
          ['kind', 'photo'],
          ['orderId', 'ACL-1'],
        ],
        { filename: 'a.png', content: fakeMedia('png') },
      )
    ).json().id;
    otherId = (
      await upload(
        app.url,
        app.keys.ingest2.key,
        [
          ['kind', 'photo'],
          ['orderId', 'ACL-1'],
        ],
        { filename: 'b.png', content: fakeMedia('png') },
      )
    ).json().id;
  });
  afterAll(() => app.close());

  it.each([
    ['no header', undefined],
    ['a wrong scheme', 'Basic dXNlcjpwYXNz'],
    ['a malformed key', 'Bearer not-a-key'],
    ['an unknown key', `Bearer eak_0000000000000000_${'A'.repeat(43)}`],
  ])('401 with %s', async (_label, authorization) => {
    const req = request(app.url).get('/v1/orders/ACL-1/evidence');
    if (authorization) req.set('Authorization', authorization);
    const res = await req;
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('unauthorized');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it('401 for a key whose secret is wrong even though its id exists', async () => {
    const forged = `eak_${app.keys.support.id}_${'B'.repeat(43)}`;
    const res = await request(app.url)
      .get('/v1/orders/ACL-1/evidence')
      .set('Authorization', `Bearer ${forged}`);
    expect(res.status).toBe(401);
  });

  it('an ingest key uploads and reads its own receipt, and nothing else', async () => {
    const own = await request(app.url).get(`/v1/evidence/${ownId}`).set(bearer(app.keys.ingest));
    expect(own.status).toBe(200);
    const checks = [
      request(app.url).get(`/v1/evidence/${otherId}`),
      request(app.url).get(`/v1/evidence/${ownId}/content`),
      request(app.url).head(`/v1/evidence/${ownId}/content`),
      request(app.url).get('/v1/evidence').query({ orderId: 'ACL-1' }),
      request(app.url).get('/v1/orders/ACL-1/evidence'),
      request(app.url).get('/v1/complaints/C-1/evidence'),
      request(app.url)
        .post(`/v1/evidence/${ownId}/links`)
        .send({ orderIds: ['X'] }),
    ];
    for (const req of checks) {
      const res = await req.set(bearer(app.keys.ingest));
      expect(res.status).toBe(403);
      if (res.body?.code) expect(res.body.code).toBe('forbidden');
    }
  });

  it('a support key reads, searches, downloads and links but cannot upload', async () => {
    const res = await upload(app.url, app.keys.support.key, [['kind', 'photo']], {
      filename: 'c.png',
      content: fakeMedia('png'),
    });
    expect(res.status).toBe(403);
    expect(
      (await request(app.url).get(`/v1/evidence/${otherId}/content`).set(bearer(app.keys.support)))
        .status,
    ).toBe(200);
    expect(
      (await request(app.url).get('/v1/orders/ACL-1/evidence').set(bearer(app.keys.support))).body
        .items,
    ).toHaveLength(2);
  });

  it('an admin key may do everything', async () => {
    const res = await upload(app.url, app.keys.admin.key, [['kind', 'photo']], {
      filename: 'd.png',
      content: fakeMedia('png'),
    });
    expect(res.status).toBe(201);
    expect(
      (
        await request(app.url)
          .get(`/v1/evidence/${res.json().id}/content`)
          .set(bearer(app.keys.admin))
      ).status,
    ).toBe(200);
  });

  it('a revoked key stops working', async () => {
    const key = await app.ctx.apiKeys.create('support', 'temp');
    expect((await request(app.url).get('/v1/orders/ACL-1/evidence').set(bearer(key))).status).toBe(
      200,
    );
    expect(await app.ctx.apiKeys.revoke(key.id)).toBe(true);
    expect((await request(app.url).get('/v1/orders/ACL-1/evidence').set(bearer(key))).status).toBe(
      401,
    );
  });

  it('stores only a hash of each key', async () => {
    const rows = await app.ctx.db.selectFrom('api_keys').selectAll().execute();
    const dump = JSON.stringify(rows);
    for (const k of Object.values(app.keys)) {
      const secret = k.key.slice(`eak_${k.id}_`.length);
      expect(secret).toHaveLength(43);
      expect(dump).not.toContain(secret);
    }
  });

  it('405 for a wrong method on a known path and 404 problem for unknown routes', async () => {
    const res = await request(app.url).patch(`/v1/evidence/${ownId}`).set(bearer(app.keys.admin));
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD, DELETE, OPTIONS');
    const missing = await request(app.url).get('/v2/nothing');
    expect({ status: missing.status, code: missing.body.code }).toEqual({
      status: 404,
      code: 'route_not_found',
    });
  });

  it('a path parameter that is not valid percent-encoding is a 404 problem, never a 500', async () => {
    for (const path of ['/v1/evidence/%E0', '/v1/evidence/%', '/v1/evidence/%E0%80/audit']) {
      const res = await request(app.url).get(path).set(bearer(app.keys.admin));
      expect({ path, status: res.status, code: res.body.code }).toEqual({
        path,
        status: 404,
        code: 'not_found',
      });
      expect(res.headers['content-type']).toContain('application/problem+json');
    }
  });

  it('health and readiness need no key', async () => {
    expect((await request(app.url).get('/healthz')).body).toEqual({ status: 'ok' });
    const ready = await request(app.url).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({
      status: 'ready',
      checks: { database: 'ok', storage: { driver: 'fs', status: 'ok' } },
    });
  });
});
