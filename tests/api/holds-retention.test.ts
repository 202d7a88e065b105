import { sql } from 'kysely';
import request from 'supertest';
import type { AuditEventView } from '../../src/base/audit.service';
import { DeletionRepository } from '../../src/custody/deletion.repository';
import { DeletionService, type RetentionPolicy } from '../../src/custody/deletion.service';
import { HoldRepository } from '../../src/custody/hold.repository';
import { createDb, type Db } from '../../src/db/database';
import { EvidenceRepository } from '../../src/evidence/evidence.repository';
import { createLogger } from '../../src/base/logger';
import { bearer, DRIVERS, startTestApp, storedKeys, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

const DAY = 86_400_000;

async function archive(
  app: TestApp,
  fields: [string, string][],
  type: 'mp4' | 'wav' = 'mp4',
): Promise<{ id: string; sha256: string; blobKey: string }> {
  const kind = type === 'mp4' ? 'packing_video' : 'call_recording';
  const res = await upload(app.url, app.keys.ingest.key, [['kind', kind], ...fields], {
    filename: `x.${type}`,
    content: fakeMedia(type, 4000),
  });
  expect(res.status).toBe(201);
  const { id, sha256 } = res.json();
  return { id, sha256, blobKey: `sha256/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}` };
}

const trail = async (app: TestApp, id: string): Promise<AuditEventView[]> =>
  (
    await request(app.url)
      .get(`/v1/evidence/${id}/audit?limit=1000`)
      .set(bearer(app.keys.admin))
      .expect(200)
  ).body.events;

describe('complaints', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(() => app.close());

  it('creates with PUT (201), replaces with PUT (200), keeps the opening time, and audits both', async () => {
    const put = (body: object) =>
      request(app.url).put('/v1/complaints/CMP-1').set(bearer(app.keys.support)).send(body);
    const created = await put({
      status: 'open',
      customerPhone: '+44 20 7946 0958',
      orderIds: ['ORD-1', 'ORD-2', 'ORD-1'],
    });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe('/v1/complaints/CMP-1');
    expect(created.body).toMatchObject({
      id: 'CMP-1',
      status: 'open',
      customerPhoneE164: '+442079460958',
      orderIds: ['ORD-1', 'ORD-2'],
      closedAt: null,
    });
    const closed = await put({ status: 'closed', orderIds: ['ORD-1', 'ORD-2'] });
    expect(closed.status).toBe(200);
    expect(closed.body.openedAt).toBe(created.body.openedAt);
    expect(closed.body.closedAt).not.toBeNull();
    const again = await put({ status: 'closed', orderIds: ['ORD-1', 'ORD-2'] });
    expect(again.body.closedAt).toBe(closed.body.closedAt); // retention counts from the first close
    const reopened = await put({ status: 'open', orderIds: ['ORD-1'] });
    expect(reopened.body.closedAt).toBeNull();

    const got = await request(app.url).get('/v1/complaints/CMP-1').set(bearer(app.keys.support));
    expect(got.body).toMatchObject({ id: 'CMP-1', status: 'open', orderIds: ['ORD-1'] });
    await app.ctx.audit.settle(); // every event answered, linked
    const events = await app.ctx.db
      .selectFrom('audit_events')
      .select(['action', 'details'])
      .where('complaint_id', '=', 'CMP-1')
      .orderBy('seq')
      .execute();
    expect(events.map((e) => e.action)).toEqual([
      'complaint.write',
      'complaint.write',
      'complaint.write',
      'complaint.write',
      'complaint.view',
    ]);
    expect(events[1]!.details).toMatchObject({ status: 'closed', previousStatus: 'open' });
  });

  it.each([
    [{ status: 'pending' }, 'validation_failed'],
    [{ status: 'open', customerPhone: '12' }, 'invalid_phone_number'],
    [{ status: 'open', orderIds: ['ORD;drop'] }, 'validation_failed'],
    [{ status: 'open', extra: 1 }, 'validation_failed'],
    [{}, 'validation_failed'],
  ])('refuses %j with %s and stores nothing', async (body, code) => {
    const res = await request(app.url)
      .put('/v1/complaints/CMP-BAD')
      .set(bearer(app.keys.support))
      .send(body);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe(code);
    expect(res.headers['content-type']).toMatch(/problem\+json/);
    await request(app.url).get('/v1/complaints/CMP-BAD').set(bearer(app.keys.support)).expect(404);
  });

  it('lets an ingest key neither read nor write complaints', async () => {
    await request(app.url)
      .put('/v1/complaints/CMP-2')
      .set(bearer(app.keys.ingest))
      .send({ status: 'open' })
      .expect(403);
    await request(app.url).get('/v1/complaints/CMP-1').set(bearer(app.keys.ingest)).expect(403);
  });
});

describe.each(DRIVERS)('legal holds and deletion (%s driver)', (driver) => {
  let app: TestApp;
  beforeEach(async () => {
    app = await startTestApp(driver);
  });
  afterEach(() => app.close());

  const del = (id: string, reason?: string) =>
    request(app.url)
      .delete(`/v1/evidence/${id}`)
      .set(bearer(app.keys.admin))
      .send(reason === undefined ? {} : { reason });
  const hold = (path: string, key = app.keys.admin) =>
    request(app.url).post(path).set(bearer(key)).send({ reason: 'claim 42 pending in court' });

  it('refuses to delete a held item by any path; after release, deletes the bytes and keeps a tombstone', async () => {
    const item = await archive(app, [['orderId', 'ORD-H1']]);
    await hold(`/v1/evidence/${item.id}/holds`, app.keys.support).expect(403);
    const placed = await hold(`/v1/evidence/${item.id}/holds`);
    expect(placed.status).toBe(201);
    expect(placed.body).toMatchObject({ itemIds: [item.id], hold: { active: true } });

    const refused = await del(item.id, 'customer asked');
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('legal_hold');
    // Not even the service's own database connection can tombstone it...
    await expect(
      sql`update evidence_items set deleted_at = now() where id = ${item.id}`.execute(app.ctx.db),
    ).rejects.toThrow(/legal hold/);
    // ...nor remove the rows or the hold.
    await expect(
      sql`delete from legal_holds where id = ${placed.body.hold.id}`.execute(app.ctx.db),
    ).rejects.toThrow(/permission denied|never deleted/);
    // Retention does not touch it either, however old.
    const farFuture = deletionAt(app, new Date(Date.now() + 10_000 * DAY));
    expect((await farFuture.expire(shortPolicy)).expired).toBe(0);
    expect(await storedKeys(app)).toContain(item.blobKey);

    await request(app.url)
      .post(`/v1/holds/${placed.body.hold.id}/release`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'case settled' })
      .expect(200);
    await request(app.url)
      .post(`/v1/holds/${placed.body.hold.id}/release`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'again' })
      .expect(404);

    expect((await del(item.id)).body.code).toBe('validation_failed'); // a reason is required
    const deleted = await del(item.id, 'customer asked');
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({
      id: item.id,
      sha256: item.sha256,
      status: 'deleted',
      deletionReason: 'customer asked',
    });
    expect(await storedKeys(app)).not.toContain(item.blobKey);
    const content = await request(app.url)
      .get(`/v1/evidence/${item.id}/content`)
      .set(bearer(app.keys.support));
    expect(content.status).toBe(410);
    expect(content.body.code).toBe('evidence_deleted');
    expect((await del(item.id, 'twice')).status).toBe(410);

    const actions = (await trail(app, item.id)).map((e) => `${e.action}:${e.outcome}`);
    expect(actions).toEqual(
      expect.arrayContaining([
        'evidence.create:success',
        'hold.place:denied',
        'hold.place:success',
        'evidence.delete:failed',
        'hold.release:success',
        'evidence.delete:success',
        'evidence.purge:success',
      ]),
    );
  });

  it('holds a whole complaint: items linked to it and to its orders, links and orders frozen', async () => {
    await request(app.url)
      .put('/v1/complaints/CMP-H')
      .set(bearer(app.keys.support))
      .send({ status: 'closed', orderIds: ['ORD-C1'] })
      .expect(201);
    const byComplaint = await archive(app, [['complaintId', 'CMP-H']]);
    const byOrder = await archive(app, [['orderId', 'ORD-C1']]);
    const unrelated = await archive(app, [['orderId', 'ORD-OTHER']]);
    await hold('/v1/complaints/NO-SUCH/holds').expect(404);
    const placed = await hold('/v1/complaints/CMP-H/holds');
    expect(placed.status).toBe(201);
    expect([...placed.body.itemIds].sort()).toEqual([byComplaint.id, byOrder.id].sort());

    for (const id of [byComplaint.id, byOrder.id]) {
      expect((await del(id, 'x')).body.code).toBe('legal_hold');
    }
    const unlink = await request(app.url)
      .delete(`/v1/evidence/${byComplaint.id}/links/complaints/CMP-H`)
      .set(bearer(app.keys.support));
    expect(unlink.body.code).toBe('legal_hold');
    const dropOrder = await request(app.url)
      .put('/v1/complaints/CMP-H')
      .set(bearer(app.keys.support))
      .send({ status: 'closed', orderIds: [] });
    expect(dropOrder.status).toBe(409);
    expect(dropOrder.body.code).toBe('legal_hold');

    const holds = await request(app.url)
      .get('/v1/holds?complaintId=CMP-H')
      .set(bearer(app.keys.admin))
      .expect(200);
    expect(holds.body.holds).toHaveLength(1);
    expect((await del(unrelated.id, 'not part of it')).status).toBe(200);
    // The hold's event is in each covered item's own custody history.
    expect((await trail(app, byOrder.id)).map((e) => e.action)).toContain('hold.place');
  });

  it('never revives deleted bytes as a new item', async () => {
    const content = fakeMedia('mp4', 3000);
    const first = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'a.mp4',
      content,
    });
    await del(first.json().id, 'wrong clip').expect(200);
    const again = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'a.mp4',
      content,
    });
    expect(again.status).toBe(410);
    expect(again.json().code).toBe('evidence_deleted');
  });
});

const shortPolicy: RetentionPolicy = {
  days: { packing_video: 180, call_recording: 365, photo: 365 },
  afterCloseDays: 90,
};

/** The deletion service of the app, over its real database and store, with its clock moved. */
function deletionAt(app: TestApp, now: Date, db: Db = app.ctx.db): DeletionService {
  return new DeletionService({
    db,
    repo: new DeletionRepository(),
    holds: new HoldRepository(),
    evidence: new EvidenceRepository(),
    store: app.ctx.blobStore,
    audit: app.ctx.audit,
    logger: createLogger('silent'),
    opts: { now: () => now },
  });
}

describe('retention', () => {
  let app: TestApp;
  beforeEach(async () => {
    app = await startTestApp('fs');
  });
  afterEach(() => app.close());

  it('expires by kind, never while an open complaint covers an item, and keeps closed complaints their extra days', async () => {
    const put = (id: string, status: string, orderIds: string[] = []) =>
      request(app.url)
        .put(`/v1/complaints/${id}`)
        .set(bearer(app.keys.support))
        .send({ status, orderIds })
        .expect((r) => expect(r.status).toBeLessThan(300));
    await put('CMP-OPEN', 'open', ['ORD-OPEN']);
    const plain = await archive(app, [['orderId', 'ORD-PLAIN']]);
    const linked = await archive(app, [['complaintId', 'CMP-OPEN']]);
    const viaOrder = await archive(app, [['orderId', 'ORD-OPEN']]);
    const unknownComplaint = await archive(app, [['complaintId', 'CMP-NOT-YET-FILED']]);
    const call = await archive(app, [['orderId', 'ORD-PLAIN']], 'wav');

    // 200 days on: packing clips are past 180 days, calls (365) are not.
    const day200 = deletionAt(app, new Date(Date.now() + 200 * DAY));
    expect(await day200.expire(shortPolicy)).toMatchObject({ expired: 1, purged: 1 });
    const state = async (id: string) =>
      (
        await app.ctx.db
          .selectFrom('evidence_items')
          .select('deleted_at')
          .where('id', '=', id)
          .executeTakeFirstOrThrow()
      ).deleted_at !== null;
    expect(await state(plain.id)).toBe(true);
    for (const kept of [linked, viaOrder, unknownComplaint, call]) {
      expect(await state(kept.id)).toBe(false);
    }
    const tombstone = await request(app.url)
      .get(`/v1/evidence/${plain.id}`)
      .set(bearer(app.keys.support))
      .expect(200);
    expect(tombstone.body).toMatchObject({ status: 'deleted', sha256: plain.sha256 });
    expect(tombstone.body.deletionReason).toMatch(/retention/);
    const expireEvent = (await trail(app, plain.id)).find((e) => e.action === 'evidence.expire');
    expect(expireEvent).toMatchObject({
      actor: { role: 'system', name: 'retention' },
      details: { sha256: plain.sha256 },
    });

    // The complaint closes now: its evidence is kept afterCloseDays from the close.
    await put('CMP-OPEN', 'closed', ['ORD-OPEN']);
    const keepYear = { ...shortPolicy, afterCloseDays: 365 };
    expect((await day200.expire(keepYear)).expired).toBe(0); // closed 200 days before "now"
    const day400 = deletionAt(app, new Date(Date.now() + 400 * DAY));
    expect((await day400.expire(keepYear)).expired).toBe(3); // linked, viaOrder, the call
    expect(await state(unknownComplaint.id)).toBe(false); // an unknown complaint may still be open
  });

  it('lets several instances run retention at once without touching an item twice', async () => {
    const items = [];
    for (let i = 0; i < 30; i++) items.push(await archive(app, [['orderId', `ORD-R${i}`]]));
    const later = new Date(Date.now() + 200 * DAY);
    // Each "instance" on its own connection pool, as separate processes would be.
    const pools = [createDb(app.databaseUrl, 3), createDb(app.databaseUrl, 3)];
    try {
      const services = pools.map((db) => deletionAt(app, later, db));
      const results = await Promise.all([
        ...services.map((s) => s.expire(shortPolicy)),
        ...services.map((s) => s.expire(shortPolicy)),
      ]);
      expect(results.reduce((n, r) => n + r.expired, 0)).toBe(30);
      expect(results.reduce((n, r) => n + r.purged, 0)).toBe(30);
    } finally {
      await Promise.all(pools.map((p) => p.destroy()));
    }
    await app.ctx.audit.settle(); // every event answered, linked
    const { rows } = await sql<{ action: string; n: string }>`
      select action, count(*) as n from audit_events, unnest(item_ids) as item
      where action in ('evidence.expire', 'evidence.purge') group by action, item
      having count(*) > 1`.execute(app.ctx.db);
    expect(rows).toEqual([]);
    expect((await storedKeys(app)).filter((k) => k.startsWith('sha256/'))).toEqual([]);
  });
});
