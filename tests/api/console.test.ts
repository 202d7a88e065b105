import request from 'supertest';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';

jest.setTimeout(60_000);

/** The web app's API: who is signed in, the media session cookie, one search box, keys admin. */
describe('console API (me, session, lookup, keys)', () => {
  let app: TestApp;
  let clipId: string;
  let callId: string;
  let longId: string;
  const clip = fakeMedia('mp4', 40_000);

  beforeAll(async () => {
    app = await startTestApp('fs', { DEFAULT_PHONE_REGION: 'GB' });
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-1001'],
        ['stationId', 'PK-03'],
        ['trackingNumber', '1Z999AA10123456784'],
        ['capturedAt', '2026-11-02T14:03:00+01:00'],
      ],
      { filename: 'clip.mp4', content: clip },
    );
    expect(res.status).toBe(201);
    clipId = res.json().id;
    const call = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'call_recording'],
        ['callId', 'c-1'],
        ['fromNumber', '+44 20 7946 0958'],
        ['toNumber', '+442071234567'],
        ['capturedAt', '2026-11-03T10:00:00Z'],
      ],
      { filename: 'call.wav', content: fakeMedia('wav', 20_000) },
    );
    expect(call.status).toBe(201);
    callId = call.json().id;
    const long = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['stationId', 'PK-05'],
        [
          'segments',
          JSON.stringify([
            { orderId: 'ORD-2001', trackingNumber: 'TRK-SEG-1', startSec: 0, endSec: 5 },
            { orderId: 'ORD-2002', startSec: 5, endSec: 9 },
          ]),
        ],
      ],
      { filename: 'shift.mp4', content: fakeMedia('mp4', 60_000) },
    );
    expect(long.status).toBe(201);
    longId = long.json().id;
    const complaint = await request(app.url)
      .put('/v1/complaints/CMP-77')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-1001'] });
    expect(complaint.status).toBe(201);
  });
  afterAll(() => app.close());

  const cookieOf = (res: request.Response) =>
    ([] as string[])
      .concat(res.headers['set-cookie'] ?? [])
      .find((c) => c.startsWith('eak_session='));

  describe('GET /v1/me', () => {
    it('says who the key is and what it may do', async () => {
      const res = await request(app.url).get('/v1/me').set(bearer(app.keys.support));
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toEqual({
        keyId: app.keys.support.id,
        name: 'Agent Ana',
        role: 'support',
        permissions: expect.arrayContaining(['evidence:read', 'evidence:verify']),
        sessions: expect.any(Array),
      });
      expect(res.body.permissions).not.toContain('key:manage');
      const ingest = await request(app.url).get('/v1/me').set(bearer(app.keys.ingest));
      expect(ingest.body).toMatchObject({
        role: 'ingest',
        permissions: ['evidence:create', 'evidence:receipt'],
        sessions: [],
      });
      expect((await request(app.url).get('/v1/me')).status).toBe(401);
    });
  });

  describe('session cookie', () => {
    /** A fresh sign-in's cookie (`eak_session=<token>`), as the browser would send it back. */
    const signIn = async () => {
      const res = await request(app.url).post('/v1/session').send({ key: app.keys.support.key });
      expect(res.status).toBe(200);
      return cookieOf(res)!.split(';')[0]!;
    };

    it('is set HttpOnly, SameSite=Strict, for /v1, for the browser session only', async () => {
      const res = await request(app.url).post('/v1/session').send({ key: app.keys.support.key });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ keyId: app.keys.support.id, role: 'support' });
      const cookie = cookieOf(res)!;
      expect(cookie).toBeDefined();
      expect(cookie).toMatch(/; Path=\/v1/);
      expect(cookie).toMatch(/; HttpOnly/);
      expect(cookie).toMatch(/; SameSite=Strict/);
      expect(cookie).not.toMatch(/Max-Age|Expires/i);
      expect(cookie).not.toMatch(/; Secure/); // plain http here; https requests get Secure
      // A session token, never the key (nor any part of its secret).
      expect(cookie).toMatch(/^eak_session=[A-Za-z0-9_-]{43};/);
      expect(cookie).not.toContain(app.keys.support.key.slice(-43));
    });

    it('stands in for the header on GET and HEAD: content with Range, as a media element asks', async () => {
      const cookie = await signIn();
      const res = await request(app.url)
        .get(`/v1/evidence/${clipId}/content?disposition=inline`)
        .set('Cookie', cookie)
        .set('Range', 'bytes=0-99');
      expect(res.status).toBe(206);
      expect(res.headers['content-range']).toBe(`bytes 0-99/${clip.length}`);
      const head = await request(app.url)
        .head(`/v1/evidence/${clipId}/content`)
        .set('Cookie', cookie);
      expect(head.status).toBe(200);
      // The read is audited as the key's holder, like any other.
      const audit = await request(app.url)
        .get(`/v1/evidence/${clipId}/audit`)
        .set(bearer(app.keys.admin));
      const downloads = audit.body.events.filter(
        (e: { action: string }) => e.action === 'evidence.download',
      );
      expect(downloads.at(-1)).toMatchObject({
        actor: { keyId: app.keys.support.id, name: 'Agent Ana' },
      });
    });

    it('is never enough for a state-changing request', async () => {
      const cookie = await signIn();
      const verify = await request(app.url)
        .post(`/v1/evidence/${clipId}/verify`)
        .set('Cookie', cookie);
      expect(verify.status).toBe(401);
      expect(verify.body.code).toBe('unauthorized');
      const link = await request(app.url)
        .post(`/v1/evidence/${clipId}/links`)
        .set('Cookie', cookie)
        .send({ orderIds: ['ORD-EVIL'] });
      expect(link.status).toBe(401);
      const item = await request(app.url)
        .get(`/v1/evidence/${clipId}`)
        .set(bearer(app.keys.support));
      expect(item.body.orderIds).not.toContain('ORD-EVIL');
    });

    it('is refused for an ingest key, and a key in the cookie is no session', async () => {
      const res = await request(app.url).post('/v1/session').send({ key: app.keys.ingest.key });
      expect(res.status).toBe(403);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.body.code).toBe('session_not_allowed');
      expect(cookieOf(res)).toBeUndefined();
      // What the cookie used to hold (the key itself) opens nothing now, whatever the key.
      for (const key of [app.keys.ingest.key, app.keys.support.key]) {
        const forged = await request(app.url)
          .get(`/v1/evidence/${clipId}`)
          .set('Cookie', `eak_session=${key}`);
        expect(forged.status).toBe(401);
        expect(forged.body.code).toBe('unauthorized');
      }
    });

    it('refuses a wrong key, and a header (even a bad one) always wins over the cookie', async () => {
      const bad = await request(app.url).post('/v1/session').send({ key: 'eak_nope' });
      expect(bad.status).toBe(401);
      expect(cookieOf(bad)).toBeUndefined();
      const res = await request(app.url)
        .get(`/v1/evidence/${clipId}`)
        .set('Cookie', await signIn())
        .set('Authorization', 'Bearer eak_invalid');
      expect(res.status).toBe(401);
      expect((await request(app.url).post('/v1/session').send({})).status).toBe(400);
    });

    it('DELETE clears it', async () => {
      const res = await request(app.url).delete('/v1/session');
      expect(res.status).toBe(204);
      const cookie = cookieOf(res)!;
      expect(cookie).toMatch(/^eak_session=;/);
      expect(cookie).toMatch(/Expires=Thu, 01 Jan 1970/);
      expect(cookie).toMatch(/; Path=\/v1/);
    });
  });

  describe('GET /v1/lookup', () => {
    const lookup = (q: string, extra: Record<string, string> = {}) =>
      request(app.url)
        .get('/v1/lookup')
        .query({ q, ...extra })
        .set(bearer(app.keys.support));

    it('finds an order, typed in any case, and a complaint for it', async () => {
      const res = await lookup('ord-1001');
      expect(res.status).toBe(200);
      expect(res.body.query).toBe('ord-1001');
      expect(res.body.matches).toEqual([
        expect.objectContaining({ type: 'order', value: 'ORD-1001' }),
      ]);
      expect(res.body.matches[0].items.map((i: { id: string }) => i.id)).toEqual([clipId]);
      const complaint = await lookup('CMP-77');
      expect(complaint.body.matches).toEqual([
        expect.objectContaining({ type: 'complaint', value: 'CMP-77' }),
      ]);
      // The complaint's evidence includes its orders' clips.
      expect(complaint.body.matches[0].items.map((i: { id: string }) => i.id)).toEqual([clipId]);
    });

    it('finds a tracking number on a clip and on a segment of a long recording', async () => {
      const own = await lookup('1Z999AA10123456784');
      expect(own.body.matches).toEqual([
        expect.objectContaining({ type: 'tracking_number', value: '1Z999AA10123456784' }),
      ]);
      expect(own.body.matches[0].items[0].id).toBe(clipId);
      const seg = await lookup('TRK-SEG-1');
      expect(seg.body.matches[0]).toMatchObject({ type: 'tracking_number', value: 'TRK-SEG-1' });
      expect(seg.body.matches[0].items[0]).toMatchObject({
        id: longId,
        segments: [expect.objectContaining({ orderId: 'ORD-2001', startSec: 0, endSec: 5 })],
      });
      const order = await lookup('ORD-2002');
      expect(order.body.matches[0].items[0].segments).toEqual([
        expect.objectContaining({ orderId: 'ORD-2002', startSec: 5 }),
      ]);
    });

    it.each([
      '+44 20 7946 0958',
      '0044 20 7946 0958',
      '(020) 7946-0958',
      '020 7946 0958',
      '+442079460958',
    ])('finds calls by the phone number written as %s', async (q) => {
      const res = await lookup(q);
      expect(res.status).toBe(200);
      expect(res.body.matches).toEqual([
        expect.objectContaining({ type: 'phone', value: '+442079460958' }),
      ]);
      expect(res.body.matches[0].items.map((i: { id: string }) => i.id)).toEqual([callId]);
    });

    it('applies the filters to every match, and answers an empty list for nothing', async () => {
      const video = await lookup('ORD-1001', { kind: 'call_recording' });
      expect(video.body.matches[0].items).toEqual([]);
      const station = await lookup('ORD-1001', { stationId: 'PK-99' });
      expect(station.body.matches[0].items).toEqual([]);
      const range = await lookup('ORD-1001', {
        from: '2026-11-02T00:00:00Z',
        to: '2026-11-03T00:00:00Z',
      });
      expect(range.body.matches[0].items).toHaveLength(1);
      const before = await lookup('ORD-1001', { to: '2026-11-01T00:00:00Z' });
      expect(before.body.matches[0].items).toEqual([]);
      const none = await lookup('NOTHING-HERE');
      expect(none.body).toEqual({ query: 'NOTHING-HERE', matches: [] });
    });

    it('is audited like a search, refused to ingest keys, and refuses hostile input', async () => {
      await lookup('ORD-1001');
      const trail = await request(app.url)
        .get(`/v1/evidence/${clipId}/audit`)
        .set(bearer(app.keys.admin));
      const listed = trail.body.events.filter(
        (e: { action: string; details: { lookup?: unknown } }) =>
          e.action === 'evidence.list' && e.details.lookup,
      );
      expect(listed.at(-1).details.lookup.matches).toEqual([
        { type: 'order', value: 'ORD-1001', count: 1 },
      ]);
      const ingest = await request(app.url)
        .get('/v1/lookup?q=ORD-1001')
        .set(bearer(app.keys.ingest));
      expect(ingest.status).toBe(403);
      for (const q of ['', "ORD'; drop table", 'x'.repeat(200)]) {
        const res = await lookup(q);
        expect(res.status).toBe(400);
        expect(res.body.code).toBe('validation_failed');
      }
      expect((await lookup('ORD-1001', { kind: 'movie' })).status).toBe(400);
      expect((await lookup('ORD-1001', { extra: '1' })).status).toBe(400);
    });
  });

  describe('keys admin', () => {
    it('lists keys with their last use, written at most once a minute per key', async () => {
      await request(app.url).get('/v1/me').set(bearer(app.keys.support));
      const res = await request(app.url).get('/v1/keys').set(bearer(app.keys.admin));
      expect(res.status).toBe(200);
      const support = res.body.keys.find((k: { id: string }) => k.id === app.keys.support.id);
      expect(support).toMatchObject({ name: 'Agent Ana', role: 'support', revokedAt: null });
      expect(Date.now() - new Date(support.lastUsedAt).getTime()).toBeLessThan(60_000);
      expect(JSON.stringify(res.body)).not.toContain(app.keys.support.key.slice(-43));
      // Used again within the minute: the row is not written again.
      const before = support.lastUsedAt;
      await new Promise((r) => setTimeout(r, 20));
      await request(app.url).get('/v1/me').set(bearer(app.keys.support));
      const again = await request(app.url).get('/v1/keys').set(bearer(app.keys.admin));
      expect(
        again.body.keys.find((k: { id: string }) => k.id === app.keys.support.id).lastUsedAt,
      ).toBe(before);
      expect((await request(app.url).get('/v1/keys').set(bearer(app.keys.support))).status).toBe(
        403,
      );
    });

    it('mints a key shown once that works at once, and revokes it (audited)', async () => {
      const minted = await request(app.url)
        .post('/v1/keys')
        .set(bearer(app.keys.admin))
        .send({ role: 'support', name: 'Temp Tom' });
      expect(minted.status).toBe(201);
      expect(minted.body).toMatchObject({ role: 'support', name: 'Temp Tom' });
      expect(minted.body.key).toMatch(/^eak_[0-9a-f]{16}_/);
      expect(minted.headers.location).toBe(`/v1/keys/${minted.body.id}`);
      const me = await request(app.url)
        .get('/v1/me')
        .set('Authorization', `Bearer ${minted.body.key}`);
      expect(me.body.name).toBe('Temp Tom');

      const revoked = await request(app.url)
        .delete(`/v1/keys/${minted.body.id}`)
        .set(bearer(app.keys.admin));
      expect(revoked.status).toBe(200);
      expect(revoked.body).toEqual({ id: minted.body.id, revoked: true });
      const after = await request(app.url)
        .get('/v1/me')
        .set('Authorization', `Bearer ${minted.body.key}`);
      expect(after.status).toBe(401);
      const again = await request(app.url)
        .delete(`/v1/keys/${minted.body.id}`)
        .set(bearer(app.keys.admin));
      expect(again.status).toBe(404);

      const trail = await request(app.url).get('/v1/audit?limit=1000').set(bearer(app.keys.admin));
      const keyEvents = trail.body.events.filter(
        (e: { action: string; details: { keyId?: string } }) =>
          e.action.startsWith('key.') && e.details.keyId === minted.body.id,
      );
      expect(
        keyEvents.map((e: { action: string; actor: { name: string } }) => [e.action, e.actor.name]),
      ).toEqual([
        ['key.create', 'Admin'],
        ['key.revoke', 'Admin'],
      ]);
    });

    it('refuses an admin revoking its own key, a support key, and bad input', async () => {
      const own = await request(app.url)
        .delete(`/v1/keys/${app.keys.admin.id}`)
        .set(bearer(app.keys.admin));
      expect(own.status).toBe(409);
      expect(own.body.code).toBe('own_key_revocation');
      expect((await request(app.url).get('/v1/me').set(bearer(app.keys.admin))).status).toBe(200);
      const bySupport = await request(app.url)
        .post('/v1/keys')
        .set(bearer(app.keys.support))
        .send({ role: 'admin', name: 'Escalate' });
      expect(bySupport.status).toBe(403);
      for (const body of [
        { role: 'root', name: 'x' },
        { role: 'support' },
        { role: 'support', name: 'a', x: 1 },
      ]) {
        const res = await request(app.url).post('/v1/keys').set(bearer(app.keys.admin)).send(body);
        expect(res.status).toBe(400);
      }
      expect(
        (await request(app.url).delete('/v1/keys/not-a-key').set(bearer(app.keys.admin))).status,
      ).toBe(404);
    });
  });

  it('answers a complaint’s hold status to support', async () => {
    const none = await request(app.url)
      .get('/v1/complaints/CMP-77/hold-status')
      .set(bearer(app.keys.support));
    expect(none.body).toEqual({ complaintId: 'CMP-77', onHold: false, holds: [] });
    const placed = await request(app.url)
      .post('/v1/complaints/CMP-77/holds')
      .set(bearer(app.keys.admin))
      .send({ reason: 'marketplace dispute 4471' });
    expect(placed.status).toBe(201);
    const held = await request(app.url)
      .get('/v1/complaints/CMP-77/hold-status')
      .set(bearer(app.keys.support));
    expect(held.body).toMatchObject({
      onHold: true,
      holds: [{ reason: 'marketplace dispute 4471' }],
    });
  });

  it('serves the web app at /app/ with a strict CSP (or says it is not built)', async () => {
    const root = await request(app.url).get('/');
    expect(root.status).toBe(302);
    expect(root.headers.location).toBe('/app/');
    const res = await request(app.url).get('/app/');
    if (res.status === 503) {
      expect(res.body.code).toBe('not_ready');
      return;
    }
    expect(res.status).toBe(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.text).not.toMatch(/<script>|<style>| style=/);
    const js = /src="(\/app\/app-[A-Z0-9]{8}\.js)"/.exec(res.text)![1]!;
    const asset = await request(app.url).get(js);
    expect(asset.status).toBe(200);
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(asset.headers['content-type']).toMatch(/javascript/);
    expect((await request(app.url).get('/app')).headers.location).toBe('/app/');
    expect(sha256(clip)).toHaveLength(64);
  });
});
