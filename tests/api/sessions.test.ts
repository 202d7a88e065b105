import { createHash } from 'node:crypto';
import request from 'supertest';
import type { MintedKey } from '../../src/access/api-key.service';
import { loadConfig } from '../../src/base/config';
import { createLogger } from '../../src/base/logger';
import { AppContext } from '../../src/context';
import { createApp } from '../../src/http/app';
import { startServer, type RunningServer } from '../../src/http/server';
import { auditEvents, bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

jest.setTimeout(60_000);

const MINUTE = 60_000;
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Web app sessions (issue 20): POST /v1/session trades a support or admin key for a session whose
 * tokens are not the key; sign-out, the key's revocation, the idle timeout and the absolute
 * lifetime end it at once, on every instance; GET /v1/me lists a person's sessions and ends them;
 * all of it, and every key listing, is in the audit trail. The clock is the context's `now`.
 */
describe('web app sessions', () => {
  let app: TestApp;
  let clock = Date.now();
  let clipId: string;
  /** A second instance on the same database, with a long key cache. */
  let other: { ctx: AppContext; server: RunningServer; url: string };

  beforeAll(async () => {
    app = await startTestApp(
      'fs',
      { SESSION_IDLE_MINUTES: '30', SESSION_MAX_HOURS: '12', AUTH_CACHE_TTL_MS: '300000' },
      { now: () => new Date(clock) },
    );
    const config = loadConfig({
      DATABASE_URL: app.databaseUrl,
      DATA_DIR: app.dataDir,
      PORT: '0',
      LOG_LEVEL: 'silent',
      DATABASE_POOL_SIZE: '3',
      AUTH_CACHE_TTL_MS: '300000',
    });
    const ctx = await AppContext.fromConfig(
      config,
      { migrate: false, mediaTools: false },
      { logger: createLogger('silent'), now: () => new Date(clock) },
    );
    const server = await startServer(createApp(ctx), config);
    other = { ctx, server, url: server.url };
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-S1'],
      ],
      { filename: 'clip.mp4', content: fakeMedia('mp4', 8_000) },
    );
    expect(res.status).toBe(201);
    clipId = res.json().id;
  });
  afterAll(async () => {
    await other.server.close(0);
    await other.ctx.close();
    await app.close();
  });

  interface Signed {
    id: string;
    token: string;
    /** `eak_session=<token>`, as the browser sends it back. */
    cookie: string;
    setCookie: string;
    body: { session: { createdAt: string; endsAt: string } } & Record<string, unknown>;
  }

  async function signIn(key: MintedKey, userAgent = 'jest-browser/1.0'): Promise<Signed> {
    const res = await request(app.url)
      .post('/v1/session')
      .set('User-Agent', userAgent)
      .send({ key: key.key });
    expect(res.status).toBe(200);
    const setCookie = ([] as string[])
      .concat(res.headers['set-cookie'] ?? [])
      .find((c) => c.startsWith('eak_session='))!;
    return {
      id: res.body.session.id,
      token: res.body.session.token,
      cookie: setCookie.split(';')[0]!,
      setCookie,
      body: res.body,
    };
  }

  /** A media element's read through the cookie, on either instance. */
  const viaCookie = (s: Signed, url = app.url) =>
    request(url).get(`/v1/evidence/${clipId}/content`).set('Cookie', s.cookie);
  const viaToken = (s: Signed, url = app.url) =>
    request(url).get('/v1/me').set('Authorization', `Bearer ${s.token}`);

  async function mintSupport(name: string): Promise<MintedKey> {
    const res = await request(app.url)
      .post('/v1/keys')
      .set(bearer(app.keys.admin))
      .send({ role: 'support', name });
    expect(res.status).toBe(201);
    return res.body;
  }

  const ends = async (sessionId: string) =>
    (await auditEvents(app, 'session.end')).filter((e) => e.details.sessionId === sessionId);

  it('does not let a session mint a key without the key itself: a stolen session cannot outlive itself', async () => {
    const s = await signIn(app.keys.admin);
    const mint = (body: { confirmKey?: string }) =>
      request(app.url)
        .post('/v1/keys')
        .set('Authorization', `Bearer ${s.token}`)
        .send({ role: 'admin', name: 'Backdoor', ...body });
    for (const body of [{}, { confirmKey: app.keys.support.key }, { confirmKey: 'eak_nope' }]) {
      const refused = await mint(body);
      expect([refused.status, refused.body.code]).toEqual([403, 'key_confirmation_required']);
    }
    expect(
      await app.ctx.db.selectFrom('api_keys').select('id').where('name', '=', 'Backdoor').execute(),
    ).toEqual([]);
    const confirmed = await mint({ confirmKey: app.keys.admin.key });
    expect(confirmed.status).toBe(201);
    // With the key itself (a script, the CLI's way), no confirmation is asked.
    await request(app.url)
      .post('/v1/keys')
      .set(bearer(app.keys.admin))
      .send({ role: 'support', name: 'Scripted' })
      .expect(201);
  });

  it('never puts the key in the cookie or the answer, and stores only hashes of the tokens', async () => {
    const s = await signIn(app.keys.support);
    const secret = app.keys.support.key.slice('eak_'.length + 16 + 1); // (base64url: may hold '_')
    expect(secret).toHaveLength(43);
    expect(s.setCookie).toMatch(
      /^eak_session=[A-Za-z0-9_-]{43}; Path=\/v1; HttpOnly; SameSite=Strict$/,
    );
    expect(s.setCookie).not.toContain(secret);
    expect(JSON.stringify(s.body)).not.toContain(secret);
    expect(s.token).toMatch(/^eas_[A-Za-z0-9_-]{43}$/);
    const cookieToken = s.cookie.slice('eak_session='.length);
    expect(cookieToken).not.toBe(s.token.slice(4)); // two tokens: the cookie's is not the app's
    expect(s.body).toMatchObject({
      keyId: app.keys.support.id,
      role: 'support',
      session: { id: s.id, idleMinutes: 30 },
    });
    expect(
      new Date(s.body.session.endsAt).getTime() - new Date(s.body.session.createdAt).getTime(),
    ).toBe(12 * 60 * MINUTE);

    const row = await app.ctx.db
      .selectFrom('sessions')
      .selectAll()
      .where('id', '=', s.id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      key_id: app.keys.support.id,
      token_hash: sha256(s.token),
      cookie_hash: sha256(cookieToken),
      user_agent: 'jest-browser/1.0',
      ended_at: null,
    });
    const stored = JSON.stringify(row);
    for (const plain of [s.token, cookieToken, secret]) expect(stored).not.toContain(plain);

    // Both tokens act as the key's holder: the header for anything, the cookie for reads.
    expect((await viaCookie(s)).status).toBe(200);
    const put = await request(app.url)
      .put('/v1/complaints/CMP-S1')
      .set('Authorization', `Bearer ${s.token}`)
      .send({ status: 'open', orderIds: ['ORD-S1'] });
    expect(put.status).toBe(201);
    const writes = await auditEvents(app, 'complaint.write');
    expect(writes.at(-1)).toMatchObject({
      actor_key_id: app.keys.support.id,
      actor_name: 'Agent Ana',
    });
  });

  it('signing out ends the session at once, on every instance: a copied cookie stops working', async () => {
    const s = await signIn(app.keys.support);
    expect((await viaCookie(s, other.url)).status).toBe(200);
    expect((await viaToken(s, other.url)).status).toBe(200);

    const out = await request(app.url)
      .delete('/v1/session')
      .set('Authorization', `Bearer ${s.token}`);
    expect(out.status).toBe(204);
    for (const url of [app.url, other.url]) {
      const copied = await viaCookie(s, url);
      expect([copied.status, copied.body.code]).toEqual([401, 'unauthorized']);
      expect((await viaToken(s, url)).status).toBe(401);
    }
    const closes = (await auditEvents(app, 'session.close')).filter(
      (e) => e.details.sessionId === s.id,
    );
    expect(closes).toHaveLength(1);
    expect(closes[0]).toMatchObject({ outcome: 'success', actor_key_id: app.keys.support.id });

    // Signing out with the cookie alone (a media-only client) ends it too.
    const c = await signIn(app.keys.support);
    expect((await request(app.url).delete('/v1/session').set('Cookie', c.cookie)).status).toBe(204);
    expect((await viaCookie(c)).status).toBe(401);
    expect((await viaToken(c)).status).toBe(401);
  });

  it('revoking the key ends all its sessions at once, on every instance, despite the key cache', async () => {
    const key = await mintSupport('Revoked Rita');
    const a = await signIn(key);
    const b = await signIn(key);
    // Both instances have seen the sessions (and the key itself is in their key caches).
    for (const url of [app.url, other.url]) {
      expect((await viaCookie(a, url)).status).toBe(200);
      expect((await viaToken(b, url)).status).toBe(200);
      expect((await request(url).get('/v1/me').set(bearer(key))).status).toBe(200);
    }
    const revoked = await request(app.url).delete(`/v1/keys/${key.id}`).set(bearer(app.keys.admin));
    expect(revoked.status).toBe(200);
    for (const url of [other.url, app.url]) {
      for (const s of [a, b]) {
        expect((await viaCookie(s, url)).status).toBe(401);
        expect((await viaToken(s, url)).status).toBe(401);
      }
    }
    for (const s of [a, b]) {
      expect(await ends(s.id)).toEqual([
        expect.objectContaining({
          actor_key_id: app.keys.admin.id,
          details: { sessionId: s.id, keyId: key.id, reason: 'key_revoked' },
        }),
      ]);
    }
    const revocation = (await auditEvents(app, 'key.revoke')).at(-1)!;
    expect(revocation.details).toEqual({ keyId: key.id, sessionsEnded: 2 });
    // The other instance still has the key in its cache, yet opens no new session with it.
    const again = await request(other.url).post('/v1/session').send({ key: key.key });
    expect([again.status, again.body.code]).toEqual([401, 'unauthorized']);
    expect(again.headers['set-cookie']).toBeUndefined();
    expect((await auditEvents(app, 'session.open')).at(-1)).toMatchObject({
      outcome: 'denied',
      actor_key_id: key.id,
    });
  });

  it('refuses a session whose key was revoked behind its back (an older instance, by hand in SQL)', async () => {
    const key = await mintSupport('Hand Revoked');
    const s = await signIn(key);
    expect((await viaCookie(s, other.url)).status).toBe(200);
    // Not through ApiKeyService: nothing ended the session rows. Each use checks the key itself.
    await app.ctx.db
      .updateTable('api_keys')
      .set({ revoked_at: new Date(clock) })
      .where('id', '=', key.id)
      .execute();
    expect((await viaCookie(s, other.url)).status).toBe(401);
    expect((await viaToken(s)).status).toBe(401);
    expect(await ends(s.id)).toEqual([
      expect.objectContaining({
        actor_role: 'system',
        details: { sessionId: s.id, keyId: key.id, reason: 'key_revoked' },
      }),
    ]);
  });

  it('ends a session after SESSION_IDLE_MINUTES without use, and audits it when noticed', async () => {
    const s = await signIn(app.keys.support);
    clock += 29 * MINUTE;
    expect((await viaCookie(s)).status).toBe(200); // used: the idle timeout starts again
    clock += 29 * MINUTE;
    expect((await viaToken(s)).status).toBe(200);
    clock += 30 * MINUTE + 1_000;
    const copied = await viaCookie(s);
    expect([copied.status, copied.body.code]).toEqual([401, 'unauthorized']);
    expect((await viaToken(s)).status).toBe(401);
    expect(await ends(s.id)).toEqual([
      expect.objectContaining({
        actor_role: 'system',
        details: { sessionId: s.id, keyId: app.keys.support.id, reason: 'idle' },
      }),
    ]);
  });

  it('ends a session SESSION_MAX_HOURS after sign-in, however busy', async () => {
    const s = await signIn(app.keys.support);
    const start = clock;
    while (clock + 20 * MINUTE < start + 12 * 60 * MINUTE) {
      clock += 20 * MINUTE;
      expect((await viaToken(s)).status).toBe(200);
    }
    clock = start + 12 * 60 * MINUTE;
    expect((await viaCookie(s)).status).toBe(401);
    expect((await viaToken(s)).status).toBe(401);
    expect(await ends(s.id)).toEqual([
      expect.objectContaining({
        details: { sessionId: s.id, keyId: app.keys.support.id, reason: 'lifetime' },
      }),
    ]);
  });

  it("GET /v1/me lists the person's own open sessions; each ends its own, never another's", async () => {
    const ana = await mintSupport('Ana Again');
    const bob = await mintSupport('Bob');
    const laptop = await signIn(ana, 'laptop');
    clock += 1_000; // listed oldest first
    const phone = await signIn(ana, 'phone');
    const bobs = await signIn(bob, 'bob');

    const me = await viaToken(laptop);
    expect(me.status).toBe(200);
    expect(me.headers['cache-control']).toBe('no-store');
    expect(me.body.sessions).toEqual([
      expect.objectContaining({ id: laptop.id, userAgent: 'laptop', current: true }),
      expect.objectContaining({ id: phone.id, userAgent: 'phone', current: false }),
    ]);
    const listed = me.body.sessions[0];
    expect(Object.keys(listed).sort()).toEqual(
      [
        'clientIp',
        'createdAt',
        'current',
        'endsAt',
        'expiresAt',
        'id',
        'lastUsedAt',
        'userAgent',
      ].sort(),
    );
    expect(JSON.stringify(me.body)).not.toContain(laptop.token);
    // The key itself sees the same list; none of them is its request.
    const byKey = await request(app.url).get('/v1/me').set(bearer(ana));
    expect(byKey.body.sessions.map((x: { current: boolean }) => x.current)).toEqual([false, false]);

    // Ana cannot end Bob's session: 404, audited as a failed attempt, and it still works.
    const foreign = await request(app.url)
      .delete(`/v1/me/sessions/${bobs.id}`)
      .set('Authorization', `Bearer ${laptop.token}`);
    expect([foreign.status, foreign.body.code]).toEqual([404, 'not_found']);
    expect((await viaCookie(bobs)).status).toBe(200);
    const refused = (await auditEvents(app, 'session.end')).at(-1)!;
    expect(refused).toMatchObject({ outcome: 'failed', actor_key_id: ana.id });
    // Nor through a cookie: a state-changing request is never a cookie's.
    const byCookie = await request(app.url)
      .delete(`/v1/me/sessions/${phone.id}`)
      .set('Cookie', laptop.cookie);
    expect(byCookie.status).toBe(401);

    // From her laptop, she ends the phone's session: at once, on every instance.
    const end = await request(app.url)
      .delete(`/v1/me/sessions/${phone.id}`)
      .set('Authorization', `Bearer ${laptop.token}`);
    expect(end.status).toBe(204);
    expect((await viaCookie(phone, other.url)).status).toBe(401);
    expect((await viaToken(phone)).status).toBe(401);
    expect((await viaToken(laptop)).status).toBe(200);
    expect(
      (
        await request(app.url)
          .delete(`/v1/me/sessions/${phone.id}`)
          .set('Authorization', `Bearer ${laptop.token}`)
      ).status,
    ).toBe(404); // once
    expect(await ends(phone.id)).toEqual([
      expect.objectContaining({
        outcome: 'success',
        actor_key_id: ana.id,
        details: { sessionId: phone.id, keyId: ana.id, reason: 'ended_by_holder' },
      }),
    ]);
    expect((await viaToken(laptop)).body.sessions.map((x: { id: string }) => x.id)).toEqual([
      laptop.id,
    ]);
  });

  it('refuses to sign in a device key (403) or a wrong key (401), and audits both as denied', async () => {
    const ingest = await request(app.url).post('/v1/session').send({ key: app.keys.ingest.key });
    expect([ingest.status, ingest.body.code]).toEqual([403, 'session_not_allowed']);
    expect(ingest.headers['set-cookie']).toBeUndefined();
    const wrong = await request(app.url)
      .post('/v1/session')
      .send({ key: `eak_${app.keys.support.id}_${'A'.repeat(43)}` });
    expect(wrong.status).toBe(401);
    const opens = await auditEvents(app, 'session.open');
    expect(opens.slice(-2)).toEqual([
      expect.objectContaining({
        outcome: 'denied',
        actor_key_id: app.keys.ingest.id,
        actor_role: 'ingest',
        details: expect.objectContaining({ status: 403, code: 'session_not_allowed' }),
      }),
      expect.objectContaining({
        outcome: 'denied',
        actor_key_id: null,
        details: expect.objectContaining({ status: 401, code: 'unauthorized' }),
      }),
    ]);
    // And a successful sign-in, with the session it opened.
    const s = await signIn(app.keys.support);
    expect((await auditEvents(app, 'session.open')).at(-1)).toMatchObject({
      outcome: 'success',
      actor_key_id: app.keys.support.id,
      details: { sessionId: s.id, userAgent: 'jest-browser/1.0' },
    });
  });

  it('audits every key listing, and a refused one', async () => {
    const before = (await auditEvents(app, 'key.list')).length;
    const list = await request(app.url).get('/v1/keys').set(bearer(app.keys.admin));
    expect(list.status).toBe(200);
    const s = await signIn(app.keys.support);
    const refused = await request(app.url)
      .get('/v1/keys')
      .set('Authorization', `Bearer ${s.token}`);
    expect(refused.status).toBe(403);
    const listings = (await auditEvents(app, 'key.list')).slice(before);
    expect(listings).toEqual([
      expect.objectContaining({
        outcome: 'success',
        actor_key_id: app.keys.admin.id,
        details: { keys: list.body.keys.length },
      }),
      expect.objectContaining({ outcome: 'denied', actor_key_id: app.keys.support.id }),
    ]);
  });

  it('a sign-in from a browser that still holds a session ends that one', async () => {
    const first = await signIn(app.keys.support);
    const again = await request(app.url)
      .post('/v1/session')
      .set('Cookie', first.cookie)
      .send({ key: app.keys.support.key });
    expect(again.status).toBe(200);
    expect((await viaCookie(first)).status).toBe(401);
    expect((await viaToken(first)).status).toBe(401);
  });
});
