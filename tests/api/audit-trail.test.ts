import { sql } from 'kysely';
import pg from 'pg';
import request from 'supertest';
import type { AuditEventView } from '../../src/base/audit.service';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

/** Every action on evidence leaves an event naming who, what, which item, when and the outcome. */
describe('audit trail of every action', () => {
  let app: TestApp;
  let id: string;
  let clip: Buffer;

  beforeAll(async () => {
    app = await startTestApp('fs');
    clip = fakeMedia('mp4', 20_000);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'AUD-1'],
      ],
      { filename: 'clip.mp4', content: clip },
      { 'X-Request-Id': 'req-create-1' },
    );
    expect(res.status).toBe(201);
    id = res.json().id;
  });
  afterAll(() => app.close());

  const trail = async (itemId = id): Promise<AuditEventView[]> => {
    const res = await request(app.url)
      .get(`/v1/evidence/${itemId}/audit?limit=1000`)
      .set(bearer(app.keys.support));
    expect(res.status).toBe(200);
    return res.body.events;
  };
  const lastOf = async (action: string) =>
    (await trail()).filter((e) => e.action === action).at(-1);

  it('records the creation with the uploader, request id, client address and the hash', async () => {
    const created = await lastOf('evidence.create');
    expect(created).toMatchObject({
      outcome: 'success',
      actor: { keyId: app.keys.ingest.id, role: 'ingest', name: 'PK-03' },
      itemIds: [id],
      requestId: 'req-create-1',
      details: { size: clip.length, contentType: 'video/mp4', links: ['order:AUD-1'] },
    });
    expect(created!.clientIp).toMatch(/127\.0\.0\.1/);
    expect(created!.details.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('records a duplicate re-upload by another station', async () => {
    const res = await upload(app.url, app.keys.ingest2.key, [['kind', 'packing_video']], {
      filename: 'again.mp4',
      content: clip,
    });
    expect(res.status).toBe(200);
    expect(await lastOf('evidence.duplicate')).toMatchObject({
      actor: { keyId: app.keys.ingest2.id, name: 'PK-04' },
      outcome: 'success',
    });
  });

  it('records who viewed the metadata, looked it up by order, and searched', async () => {
    await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)).expect(200);
    await request(app.url)
      .get('/v1/orders/AUD-1/evidence')
      .set(bearer(app.keys.support))
      .expect(200);
    await request(app.url)
      .get('/v1/evidence?orderId=AUD-1')
      .set(bearer(app.keys.admin))
      .expect(200);
    const events = await trail();
    expect(events.find((e) => e.action === 'evidence.view')).toMatchObject({
      actor: { keyId: app.keys.support.id, role: 'support', name: 'Agent Ana' },
    });
    const lists = events.filter((e) => e.action === 'evidence.list');
    expect(lists.map((e) => e.actor.keyId)).toEqual([app.keys.support.id, app.keys.admin.id]);
    expect(lists[0]!.details).toMatchObject({ orderId: 'AUD-1', count: 1 });
  });

  it('records downloads with the byte range served', async () => {
    await request(app.url)
      .get(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.support))
      .set('Range', 'bytes=100-199')
      .expect(206);
    expect(await lastOf('evidence.download')).toMatchObject({
      outcome: 'success',
      details: { method: 'GET', status: 206, range: 'bytes=100-199' },
    });
  });

  it('records link and unlink', async () => {
    await request(app.url)
      .post(`/v1/evidence/${id}/links`)
      .set(bearer(app.keys.support))
      .send({ complaintIds: ['CMP-A'] })
      .expect(200);
    const unlinked = await request(app.url)
      .delete(`/v1/evidence/${id}/links/complaints/CMP-A`)
      .set(bearer(app.keys.support));
    expect(unlinked.status).toBe(200);
    expect(unlinked.body.complaintIds).toEqual([]);
    const events = await trail();
    expect(events.find((e) => e.action === 'evidence.link')!.details).toEqual({
      orderIds: [],
      complaintIds: ['CMP-A'],
    });
    expect(events.find((e) => e.action === 'evidence.unlink')!.details).toEqual({
      complaintId: 'CMP-A',
    });
  });

  it('survives hostile identifiers (NUL) in a refused request without failing reads batched with it', async () => {
    const [hostile, ...views] = await Promise.all([
      request(app.url).get('/v1/complaints/%00x/evidence'),
      ...Array.from({ length: 10 }, () =>
        request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)),
      ),
    ]);
    expect(hostile!.status).toBe(401);
    expect(views.map((v) => v.status)).toEqual(Array(10).fill(200));
    await app.ctx.audit.settle(); // every event answered, linked
    const { rows } = await sql<{ complaint_id: string }>`select complaint_id from audit_events
      where outcome = 'denied' and complaint_id like '%x' order by seq desc limit 1`.execute(
      app.ctx.db,
    );
    expect(rows[0]!.complaint_id).toBe('\uFFFDx');
  });

  it('records forbidden, unauthenticated and failed attempts with the client address', async () => {
    await request(app.url)
      .get(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.ingest))
      .expect(403);
    await request(app.url).get(`/v1/evidence/${id}/content`).expect(401);
    await request(app.url)
      .get(`/v1/evidence/${id}/content`)
      .set(bearer(app.keys.support))
      .set('Range', 'bytes=999999-')
      .expect(416);
    const failed = (await trail()).filter((e) => e.outcome !== 'success');
    expect(failed.map((e) => [e.action, e.outcome, e.actor.role, e.details.status])).toEqual([
      ['evidence.download', 'denied', 'ingest', 403],
      ['evidence.download', 'denied', 'anonymous', 401],
      ['evidence.download', 'failed', 'support', 416],
    ]);
    expect(failed.every((e) => e.clientIp && e.requestId)).toBe(true);
  });

  it('records key minting', async () => {
    const minted = await app.ctx.apiKeys.create('support', 'New agent');
    const res = await request(app.url).get('/v1/audit?limit=1000').set(bearer(app.keys.admin));
    expect(
      res.body.events.find(
        (e: AuditEventView) => e.action === 'key.create' && e.details.keyId === minted.id,
      ),
    ).toMatchObject({ actor: { role: 'system' }, details: { role: 'support', name: 'New agent' } });
  });

  it('lets only admins read the whole trail, paged by time and cursor, gap-free', async () => {
    await request(app.url).get('/v1/audit').set(bearer(app.keys.support)).expect(403);
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await request(app.url)
        .get(`/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ''}`)
        .set(bearer(app.keys.admin))
        .expect(200);
      seen.push(...res.body.events.map((e: AuditEventView) => e.seq));
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(seen.length).toBeGreaterThan(10);
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));

    const future = await request(app.url)
      .get('/v1/audit?from=2999-01-01T00:00:00Z')
      .set(bearer(app.keys.admin))
      .expect(200);
    expect(future.body.events).toEqual([]);
    await request(app.url).get('/v1/audit?from=yesterday').set(bearer(app.keys.admin)).expect(400);
    await request(app.url).get('/v1/audit?cursor=abc').set(bearer(app.keys.admin)).expect(400);
  });

  it('chains every event to the one before it, also under concurrent requests', async () => {
    await Promise.all(
      Array.from({ length: 40 }, () =>
        request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)).expect(200),
      ),
    );
    await app.ctx.audit.settle(); // every event answered, linked
    const rows = await app.ctx.db
      .selectFrom('audit_events')
      .select(['seq', 'prev_hash', 'hash'])
      .orderBy('seq')
      .execute();
    rows.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      if (i > 0) expect(r.prev_hash).toBe(rows[i - 1]!.hash);
    });
  });
});

describe('the database keeps the trail append-only', () => {
  let app: TestApp;
  let superuser: pg.Client;

  beforeAll(async () => {
    app = await startTestApp('fs');
    superuser = new pg.Client({ connectionString: app.databaseUrl });
    await superuser.connect();
  });
  afterAll(async () => {
    await superuser.end();
    await app.close();
  });

  it.each([
    ['update', `update audit_events set action = 'x'`],
    ['delete', 'delete from audit_events'],
    ['truncate', 'truncate audit_events'],
  ])('refuses %s even to the table owner (trigger)', async (_op, statement) => {
    await expect(superuser.query(statement)).rejects.toThrow(/append-only/);
  });

  it("refuses the service's own connections by privilege, not only by trigger", async () => {
    const service = app.ctx.db;
    await expect(
      service.updateTable('audit_events').set({ action: 'x' }).execute(),
    ).rejects.toThrow(/permission denied/);
    await expect(service.deleteFrom('audit_events').execute()).rejects.toThrow(/permission denied/);
    // Not the owner, so it cannot switch the trigger off either.
    await expect(
      sql`alter table audit_events disable trigger user`.execute(service),
    ).rejects.toThrow(/must be owner/);
    await expect(sql`delete from evidence_items`.execute(service)).rejects.toThrow(
      /permission denied/,
    );
  });

  it('lets neither the service nor the owner rewrite what was recorded at ingest', async () => {
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'c.mp4',
      content: fakeMedia('mp4', 1000),
    });
    const id = res.json().id;
    for (const column of ['captured_at', 'station_id', 'kind', 'created_by_key_id']) {
      await expect(
        sql`update evidence_items set ${sql.ref(column)} = ${column === 'captured_at' ? new Date(0) : column === 'kind' ? 'photo' : 'x'} where id = ${id}`.execute(
          app.ctx.db,
        ),
      ).rejects.toThrow(/permission denied/);
      await expect(
        superuser.query(`update evidence_items set ${column} = $1 where id = $2`, [
          column === 'captured_at' ? new Date(0) : column === 'kind' ? 'photo' : app.keys.admin.id,
          id,
        ]),
      ).rejects.toThrow(/immutable/);
    }
  });
});
