import { rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import request from 'supertest';
import {
  auditEvents,
  bearer,
  DRIVERS,
  startTestApp,
  storedKeys,
  tamperWithBlob,
  type TestApp,
} from '../support/harness';
import { tusUpload } from '../support/tus';
import {
  down as downDamaged,
  up as upDamaged,
} from '../../migrations/2026-12-03T06-00-00_damaged-evidence';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { repairLockKey } from '../../src/evidence/evidence.repository';
import { fakeMedia, sha256 } from '../support/media';
import { getBytes, MediaFiles } from '../support/media-files';
import { upload } from '../support/multipart';

jest.setTimeout(120_000);

const keyOf = (hex: string) => `sha256/${hex.slice(0, 2)}/${hex.slice(2, 4)}/${hex}`;

/** A GET whose body is read to the end or to the cut: what a client really received. */
function rawGet(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; complete: boolean }> {
  return new Promise((resolve) => {
    const req = http.get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      const done = () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(chunks),
          complete: res.complete,
        });
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    // A connection cut before the response's head: status 0, nothing received.
    req.on('error', () =>
      resolve({ status: 0, headers: {}, body: Buffer.alloc(0), complete: false }),
    );
  });
}

const flipOne = (bytes: Buffer, at = Math.floor(bytes.length / 2)) => {
  const flipped = Buffer.from(bytes);
  flipped[at] = flipped[at]! ^ 0x01;
  return flipped;
};

/**
 * Finding 3 of issue 14: bytes known not to hash to the archived SHA-256 are never handed out as
 * the evidence (content, ranges, derivatives, share links, bundles); the genuine bytes uploaded
 * again repair the blob, and the item is served again.
 */
describe.each(DRIVERS)('damaged evidence (%s store)', (driver) => {
  let app: TestApp;
  const files = new MediaFiles();
  let clip: Buffer;
  let item: { id: string; sha256: string };

  beforeEach(async () => {
    app = await startTestApp(driver);
    clip = files.mov(6, '320x240');
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['complaintId', 'CMP-DMG'],
        ['segments', JSON.stringify([{ orderId: 'ORD-DMG', startSec: 0, endSec: 3 }])],
      ],
      { filename: 'clip.mov', content: clip },
    );
    expect(res.status).toBe(201);
    item = res.json();
  });
  afterEach(async () => {
    await app.close();
  });
  afterAll(() => files.cleanup());

  const support = () => bearer(app.keys.support);
  const verify = () => request(app.url).post(`/v1/evidence/${item.id}/verify`).set(support());
  const damage = () => tamperWithBlob(app, keyOf(item.sha256), flipOne(clip));
  const itemView = async () =>
    (await request(app.url).get(`/v1/evidence/${item.id}`).set(support())).body;
  const content = (headers: Record<string, string> = {}) =>
    getBytes(app, `/v1/evidence/${item.id}/content`, headers);
  const events = (action: string) => auditEvents(app, action);
  const expectDamaged = (res: {
    status: number;
    headers: Record<string, string>;
    body: unknown;
  }) => {
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = Buffer.isBuffer(res.body) ? JSON.parse(res.body.toString()) : res.body;
    expect(body.code).toBe('evidence_damaged');
    expect(res.headers.etag).toBeUndefined();
    expect(res.headers['repr-digest']).toBeUndefined();
  };

  it('once verification finds a flipped byte, content, ranges and HEAD are refused (audited) and the item says damaged', async () => {
    expect((await itemView()).integrity).toBe('unverified');
    await damage();
    expect((await verify()).body.status).toBe('mismatch');
    const view = await itemView();
    expect(view.integrity).toBe('damaged');
    expect(view.damagedAt).toEqual(expect.any(String));

    expectDamaged(await content());
    expectDamaged(await content({ Range: 'bytes=0-99' }));
    expectDamaged(await content({ Range: 'bytes=-10' }));
    const head = await request(app.url).head(`/v1/evidence/${item.id}/content`).set(support());
    expect(head.status).toBe(500);
    expect(head.headers.etag).toBeUndefined();

    const refusals = (await events('evidence.download')).filter((e) => e.outcome === 'failed');
    expect(refusals.length).toBeGreaterThanOrEqual(3);
    expect(refusals.at(-1)).toMatchObject({
      item_ids: [item.id],
      details: expect.objectContaining({ code: 'evidence_damaged', status: 500 }),
    });
    // No download of the item was recorded as a success after the damage was found.
    expect((await events('evidence.download')).filter((e) => e.outcome === 'success')).toEqual([]);
  });

  it('refuses share links to the damaged item and to a cut of it', async () => {
    expect(await app.ctx.media.process(item.id)).toBe('done');
    const seg = (await request(app.url).get('/v1/orders/ORD-DMG/evidence').set(support())).body
      .items[0].segments[0];
    const itemLink = await request(app.url)
      .post('/v1/share-links')
      .set(support())
      .send({ itemId: item.id });
    const segLink = await request(app.url)
      .post('/v1/share-links')
      .set(support())
      .send({ segmentId: seg.id });
    expect(itemLink.status).toBe(201);
    expect(segLink.status).toBe(201);
    expect((await request(app.url).get(itemLink.body.url)).status).toBe(200);

    // Not verified: the stranger's full read through the link is what finds the damage.
    await damage();
    const cut = await rawGet(`${app.url}${itemLink.body.url}`, {});
    expect(cut.complete).toBe(false);
    expect(cut.body.length).toBeLessThan(clip.length);
    expect((await itemView()).integrity).toBe('damaged');
    expect((await events('evidence.verify')).at(-1)!.details).toMatchObject({
      status: 'mismatch',
      via: 'share_link',
    });
    for (const url of [itemLink.body.url, segLink.body.url]) {
      expectDamaged(await request(app.url).get(url));
      expectDamaged(await request(app.url).get(url).set('Range', 'bytes=0-9'));
    }
    const refused = (await events('share_link.use')).filter((e) => e.outcome === 'failed');
    expect(refused).toHaveLength(5);
    expect(refused.map((e) => (e.details as { code: string }).code)).toEqual(
      Array(5).fill('evidence_damaged'),
    );
    expect(refused[1]!.details).toMatchObject({ shareLinkId: itemLink.body.id });
    // The answer to a stranger names no item.
    const answer = await request(app.url).get(itemLink.body.url);
    expect(JSON.stringify(answer.body)).not.toContain(item.id);
  });

  it('refuses derivatives and segment cuts made from the damaged bytes', async () => {
    expect(await app.ctx.media.process(item.id)).toBe('done');
    const seg = (await request(app.url).get('/v1/orders/ORD-DMG/evidence').set(support())).body
      .items[0].segments[0];
    expect((await getBytes(app, `/v1/evidence/${item.id}/poster`)).status).toBe(200);
    expect((await getBytes(app, seg.contentUrl)).status).toBe(200);

    await damage();
    await verify();
    for (const path of ['poster', 'contact-sheet', 'preview']) {
      expectDamaged(await getBytes(app, `/v1/evidence/${item.id}/${path}`));
    }
    expectDamaged(await getBytes(app, seg.contentUrl));
    expectDamaged(await getBytes(app, seg.contentUrl, { Range: 'bytes=0-9' }));
    const refused = (await events('derivative.download')).filter((e) => e.outcome === 'failed');
    expect(refused.at(-1)!.details).toMatchObject({ code: 'evidence_damaged' });
  });

  it('makes no bundle with the damaged item and serves no bundle made before', async () => {
    await request(app.url)
      .put('/v1/complaints/CMP-DMG')
      .set(support())
      .send({ status: 'open', orderIds: ['ORD-DMG'] });
    const before = await request(app.url)
      .post('/v1/complaints/CMP-DMG/bundles')
      .set(support())
      .send({ itemIds: [item.id] });
    expect(before.status).toBe(201);
    expect((await getBytes(app, `/v1/bundles/${before.body.id}/content`)).status).toBe(200);

    await damage();
    await verify();
    for (const body of [{ itemIds: [item.id] }, {}]) {
      const made = await request(app.url)
        .post('/v1/complaints/CMP-DMG/bundles')
        .set(support())
        .send(body);
      expect(made.status).toBe(500);
      expect(made.body).toMatchObject({ code: 'evidence_damaged', itemIds: [item.id] });
    }
    expectDamaged(await getBytes(app, `/v1/bundles/${before.body.id}/content`));
    const link = await request(app.url)
      .post('/v1/share-links')
      .set(support())
      .send({ bundleId: before.body.id });
    expectDamaged(await request(app.url).get(link.body.url));
    expect(
      (await events('bundle.create')).filter((e) => e.outcome === 'failed').at(-1)!.details,
    ).toMatchObject({ code: 'evidence_damaged' });
    expect(
      (await events('bundle.download')).filter((e) => e.outcome === 'failed').at(-1)!.details,
    ).toMatchObject({ code: 'evidence_damaged' });
  });

  it('a bundle download whose file hashes wrong is cut before that file ends, and marks the item', async () => {
    const made = await request(app.url)
      .post('/v1/complaints/CMP-DMG/bundles')
      .set(support())
      .send({ itemIds: [item.id] });
    expect(made.status).toBe(201);
    await damage();
    const cut = await rawGet(`${app.url}/v1/bundles/${made.body.id}/content`, support());
    expect(cut.complete).toBe(false);
    expect(cut.body.length).toBeLessThan(made.body.zipBytes);
    expect((await itemView()).integrity).toBe('damaged');
    expect((await events('evidence.verify')).at(-1)!.details).toMatchObject({
      status: 'mismatch',
      via: 'bundle',
    });
    expectDamaged(await getBytes(app, `/v1/bundles/${made.body.id}/content`));
  });

  it('the scheduled scrub marks the item damaged', async () => {
    await damage();
    const report = await app.ctx.scrub.run({
      intervalMinutes: 60,
      fullPassDays: 30,
      stagingGraceHours: 24,
    });
    expect(report.failures).toEqual([
      expect.objectContaining({ itemId: item.id, status: 'mismatch' }),
    ]);
    expect((await itemView()).integrity).toBe('damaged');
    expectDamaged(await content());
    const status = await request(app.url).get('/v1/custody/status').set(bearer(app.keys.admin));
    expect(status.body.items.damaged).toBe(1);
    const metrics = await request(app.url).get('/metrics').set(bearer(app.keys.admin));
    expect(metrics.text).toContain('evidence_items{state="damaged"} 1');
  });

  it('a full read that hashes wrong is cut before its last bytes, and marks the item damaged', async () => {
    await damage();
    const cut = await rawGet(`${app.url}/v1/evidence/${item.id}/content`, support());
    // Cut before the last chunk: after the head and some bytes, or (one chunk) before the head.
    expect([0, 200]).toContain(cut.status);
    expect(cut.complete).toBe(false);
    expect(cut.body.length).toBeLessThan(clip.length);
    const view = await itemView();
    expect(view.integrity).toBe('damaged');
    expect(view.lastVerification.status).toBe('mismatch');
    const found = (await events('evidence.verify')).at(-1)!;
    expect(found).toMatchObject({ outcome: 'failed', item_ids: [item.id] });
    expect(found.details).toMatchObject({
      status: 'mismatch',
      via: 'download',
      computedSha256: sha256(flipOne(clip)),
    });
    expectDamaged(await content());

    // Several MB arrive in several chunks: the head and the first of them go out, never the last.
    const big = fakeMedia('mp4', 5_000_000);
    const bigItem = (
      await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'big.mp4',
        content: big,
      })
    ).json();
    await tamperWithBlob(app, keyOf(bigItem.sha256), flipOne(big, 10));
    const partial = await rawGet(`${app.url}/v1/evidence/${bigItem.id}/content`, support());
    expect(partial.status).toBe(200);
    expect(partial.headers['content-length']).toBe(String(big.length));
    expect(partial.complete).toBe(false);
    expect(partial.body.length).toBeLessThan(big.length);
    const bigView = (await request(app.url).get(`/v1/evidence/${bigItem.id}`).set(support())).body;
    expect(bigView.integrity).toBe('damaged');
    // The cut download is recorded as a failed one.
    expect(
      (await events('evidence.download')).filter((e) => e.outcome === 'failed').at(-1),
    ).toMatchObject({
      item_ids: [bigItem.id],
      details: expect.objectContaining({ code: 'evidence_damaged' }),
    });

    // An intact item read in full is served whole.
    const other = files.mov(2, '160x120');
    const ok = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'other.mov',
      content: other,
    });
    const whole = await rawGet(`${app.url}/v1/evidence/${ok.json().id}/content`, support());
    expect(whole.complete).toBe(true);
    expect(whole.body.equals(other)).toBe(true);
  });

  it('a Range covering the whole file (a player, bytes=0-) is checked like a full read and marks the item', async () => {
    const link = await request(app.url)
      .post('/v1/share-links')
      .set(support())
      .send({ itemId: item.id });
    expect(link.status).toBe(201);
    const big = fakeMedia('mp4', 3_000_000);
    const bigItem = (
      await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'big.mp4',
        content: big,
      })
    ).json();
    await tamperWithBlob(app, keyOf(bigItem.sha256), flipOne(big, 10));
    for (const range of ['bytes=0-', `bytes=0-${big.length - 1}`]) {
      const cut = await rawGet(`${app.url}/v1/evidence/${bigItem.id}/content`, {
        ...support(),
        Range: range,
      });
      // Either refused (marked by the first) or cut before its last bytes, never served whole.
      if (cut.status === 206) {
        expect(cut.complete).toBe(false);
        expect(cut.body.length).toBeLessThan(big.length);
      } else {
        expect(cut.status).toBe(500);
      }
    }
    const bigView = (await request(app.url).get(`/v1/evidence/${bigItem.id}`).set(support())).body;
    expect(bigView.integrity).toBe('damaged');
    expect((await events('evidence.verify')).at(-1)!.details).toMatchObject({ via: 'download' });

    // The share link's inline player, with bytes=0-<size-1>.
    await damage();
    const viaLink = await rawGet(`${app.url}${link.body.url}`, {
      Range: `bytes=0-${clip.length - 1}`,
    });
    expect(viaLink.complete).toBe(false);
    expect(viaLink.body.length).toBeLessThan(clip.length);
    expect((await itemView()).integrity).toBe('damaged');
    expect((await events('evidence.verify')).at(-1)!.details).toMatchObject({
      via: 'share_link',
    });
  });

  it('a part of an item not verified recently queues its verification', async () => {
    await damage();
    const part = await content({ Range: 'bytes=10-19' });
    expect(part.status).toBe(206); // a part cannot be checked as it goes out
    await app.ctx.integrity.drain();
    expect((await itemView()).integrity).toBe('damaged');
    expectDamaged(await content({ Range: 'bytes=10-19' }));
    expect((await events('evidence.verify')).at(-1)).toMatchObject({
      outcome: 'failed',
      actor_name: 'range-read',
    });
  });

  it('when the damage mark cannot be written, the held-back tail is not served on resume', async () => {
    const big = fakeMedia('mp4', 3_000_000);
    const bigItem = (
      await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'big.mp4',
        content: big,
      })
    ).json();
    await tamperWithBlob(app, keyOf(bigItem.sha256), flipOne(big, 10));
    const dba = createDb(app.databaseUrl, 1);
    try {
      // The mark fails as it would with the database gone.
      await sql`create function refuse_mark() returns trigger language plpgsql as $$
        begin raise exception 'no marks today'; end $$`.execute(dba);
      await sql`create trigger refuse_mark before update of damaged_at on evidence_items
        for each row when (new.damaged_at is not null) execute function refuse_mark()`.execute(dba);
      const cut = await rawGet(`${app.url}/v1/evidence/${bigItem.id}/content`, support());
      expect(cut.complete).toBe(false);
      expect(cut.body.length).toBeGreaterThan(0);
      const view = () => request(app.url).get(`/v1/evidence/${bigItem.id}`).set(support());
      expect((await view()).body.integrity).toBe('unverified'); // not marked
      const resumed = await getBytes(app, `/v1/evidence/${bigItem.id}/content`, {
        Range: `bytes=${cut.body.length}-`,
        'If-Range': `"${bigItem.sha256}"`,
      });
      expectDamaged(resumed);
      await app.ctx.integrity.drain();
      await sql`drop trigger refuse_mark on evidence_items`.execute(dba);
      // Once the database takes marks again, the queued verification records it.
      expectDamaged(await getBytes(app, `/v1/evidence/${bigItem.id}/content`));
      await app.ctx.integrity.drain();
      expect((await view()).body.integrity).toBe('damaged');
    } finally {
      await dba.destroy();
    }
  });

  it('uploading the genuine bytes again repairs the blob (audited), and the item is served again', async () => {
    await damage();
    await verify();
    expectDamaged(await content());
    const again = await upload(app.url, app.keys.ingest2.key, [['kind', 'packing_video']], {
      filename: 'clip-again.mov',
      content: clip,
    });
    expect(again.status).toBe(200);
    expect(again.json().id).toBe(item.id);
    const view = await itemView();
    expect(view.integrity).toBe('ok');
    expect(view.damagedAt).toBeNull();
    const served = await content();
    expect(served.status).toBe(200);
    expect(served.headers.etag).toBe(`"${item.sha256}"`);
    expect(Buffer.compare(served.body as Buffer, clip)).toBe(0);
    const range = await content({ Range: 'bytes=10-19' });
    expect(range.status).toBe(206);
    expect(Buffer.compare(range.body as Buffer, clip.subarray(10, 20))).toBe(0);
    const [repair] = await events('evidence.repair');
    expect(repair).toMatchObject({
      outcome: 'success',
      item_ids: [item.id],
      actor_key_id: app.keys.ingest2.id,
    });
    expect(repair!.details).toMatchObject({
      sha256: item.sha256,
      size: clip.length,
      verified: true,
    });
    expect((await verify()).body.status).toBe('ok');
    // The genuine bytes a second time are a plain duplicate: nothing more to repair.
    const third = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'clip.mov',
      content: clip,
    });
    expect(third.status).toBe(200);
    expect(await events('evidence.repair')).toHaveLength(1);
  });

  it('a resumable (tus) upload of the genuine bytes repairs it too', async () => {
    await damage();
    await verify();
    const result = await tusUpload(app.url, app.keys.ingest, clip, {
      filename: 'clip.mov',
      kind: 'packing_video',
    });
    expect(result.itemId).toBe(item.id);
    expect((await itemView()).integrity).toBe('ok');
    expect(Buffer.compare((await content()).body as Buffer, clip)).toBe(0);
    expect(await events('evidence.repair')).toHaveLength(1);
    expect((await storedKeys(app)).filter((k) => !k.startsWith('sha256/'))).toEqual([]);
  });

  it('a resumable upload whose repair failed to commit finishes on retry and repairs the item', async () => {
    await damage();
    await verify();
    const dba = createDb(app.databaseUrl, 1);
    try {
      // The repair's commit fails after the store wrote the genuine copy (a database blip).
      await sql`create function refuse_clear() returns trigger language plpgsql as $$
        begin raise exception 'no commits today'; end $$`.execute(dba);
      await sql`create trigger refuse_clear before update of damaged_at on evidence_items
        for each row when (new.damaged_at is null and old.damaged_at is not null)
        execute function refuse_clear()`.execute(dba);
      const failed = await tusUpload(
        app.url,
        app.keys.ingest,
        clip,
        { filename: 'clip.mov', kind: 'packing_video' },
        { retryDelays: null },
      ).catch((err: unknown) => err);
      expect(failed).toBeInstanceOf(Error);
      expect((await itemView()).integrity).toBe('damaged');
      await sql`drop trigger refuse_clear on evidence_items`.execute(dba);
    } finally {
      await dba.destroy();
    }
    const [upload] = await app.ctx.db.selectFrom('resumable_uploads').select('id').execute();
    // The client's HEAD to resume: the upload is complete, so it is archived now.
    const head = await fetch(`${app.url}/v1/uploads/${upload!.id}`, {
      method: 'HEAD',
      headers: { ...bearer(app.keys.ingest), 'Tus-Resumable': '1.0.0' },
    });
    expect(head.status).toBe(200);
    expect(head.headers.get('evidence-item-id')).toBe(item.id);
    expect((await itemView()).integrity).toBe('ok');
    expect(Buffer.compare((await content()).body as Buffer, clip)).toBe(0);
    expect(await events('evidence.repair')).toHaveLength(1);
    expect((await storedKeys(app)).filter((k) => !k.startsWith('sha256/'))).toEqual([]);
  });

  it('a retry with the original Idempotency-Key repairs the damaged item and replays the answer', async () => {
    const data = fakeMedia('mp4', 40_000);
    const send = () =>
      upload(
        app.url,
        app.keys.ingest.key,
        [['kind', 'packing_video']],
        { filename: 'idem.mp4', content: data },
        { 'Idempotency-Key': 'idem-repair-1' },
      );
    const first = await send();
    expect(first.status).toBe(201);
    const id = first.json().id as string;
    await tamperWithBlob(app, keyOf(sha256(data)), flipOne(data));
    await request(app.url).post(`/v1/evidence/${id}/verify`).set(support()).expect(200);
    const view = async () => (await request(app.url).get(`/v1/evidence/${id}`).set(support())).body;
    expect((await view()).integrity).toBe('damaged');
    const retry = await send();
    expect(retry.status).toBe(201); // the stored answer, replayed
    expect(retry.json().id).toBe(id);
    expect((await view()).integrity).toBe('ok');
    const served = await getBytes(app, `/v1/evidence/${id}/content`);
    expect(served.status).toBe(200);
    expect(Buffer.compare(served.body as Buffer, data)).toBe(0);
    expect(await events('evidence.repair')).toHaveLength(1);
    expect((await storedKeys(app)).filter((k) => k.startsWith('staging/'))).toEqual([]);
  });

  it('concurrent repairs leave one genuine blob and one repair event', async () => {
    await damage();
    await verify();
    const results = await Promise.all(
      [app.keys.ingest, app.keys.ingest2, app.keys.ingest].map((k, i) =>
        upload(app.url, k.key, [['kind', 'packing_video']], {
          filename: `clip-${i}.mov`,
          content: clip,
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(await events('evidence.repair')).toHaveLength(1);
    expect((await itemView()).integrity).toBe('ok');
    expect((await verify()).body.status).toBe('ok');
    expect((await storedKeys(app)).filter((k) => k.startsWith('staging/'))).toEqual([]);
  });

  it('an upload of the genuine bytes while a repair is in progress answers at once as a duplicate, without waiting for it', async () => {
    await damage();
    await verify();
    const dba = createDb(app.databaseUrl, 1);
    try {
      await dba.transaction().execute(async (tx) => {
        // A repair of the item in progress elsewhere (it holds the item's repair lock).
        await sql`select pg_advisory_xact_lock(${repairLockKey(item.id)}::bigint)`.execute(tx);
        const started = Date.now();
        const res = await upload(app.url, app.keys.ingest2.key, [['kind', 'packing_video']], {
          filename: 'clip-again.mov',
          content: clip,
        });
        expect(res.status).toBe(200);
        expect(res.json().id).toBe(item.id);
        expect(Date.now() - started).toBeLessThan(5000);
      });
    } finally {
      await dba.destroy();
    }
    expect(await events('evidence.repair')).toEqual([]);
    expect((await storedKeys(app)).filter((k) => k.startsWith('staging/'))).toEqual([]);
    // Once no repair is in progress, the next upload of them repairs it.
    await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'clip.mov',
      content: clip,
    });
    expect((await itemView()).integrity).toBe('ok');
  });

  it('a check that read the old bytes before a repair does not mark the repaired item again', async () => {
    await damage();
    await verify();
    const readStartedAt = new Date();
    await new Promise((r) => setTimeout(r, 20));
    await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'clip.mov',
      content: clip,
    });
    // That read finishing now, with the damaged bytes it had opened before the repair.
    await app.ctx.integrity.recordReadMismatch(
      item,
      { keyId: app.keys.support.id, role: 'support', name: 'Agent Ana' },
      { sha256: sha256(flipOne(clip)), size: clip.length },
      readStartedAt,
      'download',
    );
    expect((await itemView()).integrity).toBe('ok');
    expect((await content()).status).toBe(200);
    // A read that began after the repair and still hashed wrong would mark it again.
    await app.ctx.integrity.recordReadMismatch(
      item,
      { keyId: app.keys.support.id, role: 'support', name: 'Agent Ana' },
      { sha256: sha256(flipOne(clip)), size: clip.length },
      new Date(),
      'download',
    );
    expect((await itemView()).integrity).toBe('damaged');
  });

  it("a verification that began before a repair does not overwrite the repair's result", async () => {
    await damage();
    const dba = createDb(app.databaseUrl, 2);
    try {
      let check: Promise<{ status: number; body: { status: string; notes: string[] } }> | undefined;
      await dba.transaction().execute(async (tx) => {
        // Holding the row: the check reads the damaged bytes, then waits to record its result.
        await sql`select id from evidence_items where id = ${item.id} for update`.execute(tx);
        check = verify().then((r) => ({ status: r.status, body: r.body }));
        for (let i = 0; i < 200; i++) {
          const { rows } = await sql<{ n: string }>`select count(*) as n from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock'`.execute(dba);
          if (Number(rows[0]!.n) > 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        // Meanwhile a repair writes the genuine bytes and records them verified.
        await tamperWithBlob(app, keyOf(item.sha256), clip);
        await sql`update evidence_items set repaired_at = clock_timestamp(), verified_at = clock_timestamp(),
          verify_status = 'ok' where id = ${item.id}`.execute(tx);
      });
      const result = await check!;
      expect(result.status).toBe(200);
      expect(result.body.status).toBe('mismatch'); // what it read
      expect(result.body.notes.join(' ')).toMatch(/superseded/);
    } finally {
      await dba.destroy();
    }
    const view = await itemView();
    expect(view.integrity).toBe('ok');
    expect((await events('evidence.verify')).filter((e) => e.outcome === 'failed')).toEqual([]);
    expect((await content()).status).toBe(200);
  });

  it('bytes matching a row whose hash was edited after arrival are damaged, and repair nothing', async () => {
    const forged = fakeMedia('mp4', 30_000);
    const forgedHash = sha256(forged);
    await tamperWithBlob(app, keyOf(forgedHash), forged);
    const dba = createDb(app.databaseUrl, 1);
    try {
      await sql`alter table evidence_items disable trigger user`.execute(dba);
      await sql`update evidence_items set sha256 = ${forgedHash}, blob_key = ${keyOf(forgedHash)},
        size_bytes = ${forged.length} where id = ${item.id}`.execute(dba);
      await sql`alter table evidence_items enable trigger user`.execute(dba);
    } finally {
      await dba.destroy();
    }
    expect((await verify()).body.status).toBe('mismatch');
    expect((await itemView()).integrity).toBe('damaged');
    const again = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'forged.mp4',
      content: forged,
    });
    expect(again.status).toBe(200);
    expect((await itemView()).integrity).toBe('damaged');
    expect(await events('evidence.repair')).toEqual([]);
    expect((await storedKeys(app)).filter((k) => k.startsWith('staging/'))).toEqual([]);
  });

  it('reads racing a repair get the genuine bytes or a refusal, never the damaged bytes', async () => {
    await damage();
    await verify();
    const reads = Array.from({ length: 12 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i * 15));
      return rawGet(`${app.url}/v1/evidence/${item.id}/content`, support());
    });
    const repair = upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'clip.mov',
      content: clip,
    });
    const results = await Promise.all(reads);
    expect((await repair).status).toBe(200);
    for (const r of results) {
      if (r.status === 200 && r.complete) expect(r.body.equals(clip)).toBe(true);
      else if (r.status !== 200)
        expect(JSON.parse(r.body.toString()).code).toBe('evidence_damaged');
    }
    expect((await itemView()).integrity).toBe('ok');
    const after = await rawGet(`${app.url}/v1/evidence/${item.id}/content`, support());
    expect(after.complete).toBe(true);
    expect(after.body.equals(clip)).toBe(true);
  });
});

describe('damage found before the mark existed (migration)', () => {
  it('marks the items whose recorded verification found their bytes damaged, and no others', async () => {
    const app = await startTestApp('fs');
    const dba = createDb(app.databaseUrl, 1);
    try {
      const archive = async (content: Buffer) =>
        (
          await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
            filename: 'a.mp4',
            content,
          })
        ).json() as { id: string; sha256: string };
      const bad = fakeMedia('mp4', 20_000);
      const good = fakeMedia('mp4', 20_000);
      const [damagedItem, intactItem, missingItem] = [
        await archive(bad),
        await archive(good),
        await archive(fakeMedia('mp4', 20_000)),
      ];
      await tamperWithBlob(app, keyOf(damagedItem.sha256), flipOne(bad));
      await rm(path.join(app.dataDir, 'blobs', keyOf(missingItem.sha256)));
      for (const it of [damagedItem, intactItem, missingItem]) {
        await request(app.url).post(`/v1/evidence/${it.id}/verify`).set(bearer(app.keys.support));
      }
      // As a database migrated before the mark existed: the verifications are all it holds.
      await downDamaged(dba);
      await upDamaged(dba);
      const view = async (id: string) =>
        (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support))).body;
      expect((await view(damagedItem.id)).integrity).toBe('damaged');
      expect((await view(intactItem.id)).integrity).toBe('ok');
      expect((await view(missingItem.id)).integrity).toBe('problem');
      const res = await request(app.url)
        .get(`/v1/evidence/${damagedItem.id}/content`)
        .set(bearer(app.keys.support));
      expect(res.body.code).toBe('evidence_damaged');
    } finally {
      await dba.destroy();
      await app.close();
    }
  });
});
