import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import {
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import request from 'supertest';
import { loadConfig } from '../../src/base/config';
import { blobKeyFor } from '../../src/storage/blob-store';
import { S3BlobStore } from '../../src/storage/blob-store.s3';
import { S3CustodyRecordStore } from '../../src/storage/record-store.s3';
import { createS3Client } from '../../src/storage/s3-client';
import { WormLedger } from '../../src/storage/worm';
import { cephBucket, cephClient, cephForTests, retentionOf } from '../support/ceph';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';
import type { TestS3 } from '../support/s3-server';

/*
 * Review findings 5 and 6 on Ceph (radosgw 16.2): a retention counts as in force only when it
 * reaches the configured one (a shorter bucket default is extended), an item whose retain-until
 * passed is not shown as in force, and the /readyz WORM latch clears itself once the store shows
 * the lock again.
 */
const ceph = cephForTests();
const describeCeph = ceph.ok ? describe : describe.skip;
const DAY = 86_400_000;

const chunked = (buf: Buffer): Readable => Readable.from([buf]);

const expectDaysAhead = (until: Date | null | undefined, days: number) =>
  expect(Math.abs(until!.getTime() - (Date.now() + days * DAY))).toBeLessThan(10 * 60_000);

/** A bucket whose default retention (1 day) is shorter than the configured one (3 days). */
async function bucketWithShortDefault(raw: S3Client): Promise<TestS3> {
  const bucket = await cephBucket(ceph as Extract<typeof ceph, { ok: true }>);
  await raw.send(
    new PutObjectLockConfigurationCommand({
      Bucket: bucket.bucket,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } },
      },
    }),
  );
  return bucket;
}

describeCeph('finding 5: the configured retention, not just any retention, is in force', () => {
  let raw: S3Client;
  let bucket: TestS3;
  let store: S3BlobStore;
  let records: S3CustodyRecordStore;
  const worm = new WormLedger();

  beforeAll(async () => {
    if (!ceph.ok) return;
    raw = cephClient(ceph);
    bucket = await bucketWithShortDefault(raw);
    const cfg = loadConfig({
      ...bucket.env,
      S3_OBJECT_LOCK_MODE: 'GOVERNANCE',
      S3_OBJECT_LOCK_RETENTION_DAYS: '3',
    });
    if (cfg.storage.driver !== 's3') throw new Error('unreachable');
    const client = createS3Client(cfg.storage.s3);
    store = new S3BlobStore(client, cfg.storage.s3, { worm });
    records = new S3CustodyRecordStore(client, cfg.storage.s3, { worm });
  });
  afterAll(async () => {
    raw?.destroy();
    await store?.close();
  });

  it('a bucket default retention shorter than the configured one is extended to it (promotion, dedupe, checkpoint record)', async () => {
    // An object written without its own retention gets the bucket's default: 1 day.
    const probe = Buffer.from('probe');
    await raw.send(
      new PutObjectCommand({
        Bucket: bucket.bucket,
        Key: 'probe',
        Body: probe,
        ContentMD5: createHash('md5').update(probe).digest('base64'),
      }),
    );
    expectDaysAhead((await retentionOf(raw, bucket.bucket, 'probe'))?.until, 1);

    // Promotion: Ceph ignores the copy's lock headers, so the copy gets the 1-day default.
    const data = fakeMedia('mp4', 1000);
    const promoted = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(promoted.worm.status).toBe('in_force');
    expectDaysAhead(promoted.worm.retainUntil, 3);
    expectDaysAhead((await retentionOf(raw, bucket.bucket, promoted.key))?.until, 3);

    // An existing blob with the shorter default retention: the same bytes again extend it.
    const old = fakeMedia('wav', 1500);
    await raw.send(
      new PutObjectCommand({
        Bucket: bucket.bucket,
        Key: blobKeyFor(sha256(old)),
        Body: old,
        ContentMD5: createHash('md5').update(old).digest('base64'),
      }),
    );
    expectDaysAhead((await retentionOf(raw, bucket.bucket, blobKeyFor(sha256(old))))?.until, 1);
    const dedupe = await store.promote(
      await store.writeStaging(chunked(old)),
      sha256(old),
      old.length,
    );
    expect(dedupe).toMatchObject({ created: false, worm: { status: 'in_force' } });
    expectDaysAhead(dedupe.worm.retainUntil, 3);
    expectDaysAhead((await retentionOf(raw, bucket.bucket, dedupe.key))?.until, 3);
    // A longer retention than configured is kept as it is (never shortened).
    const longer = (await retentionOf(raw, bucket.bucket, dedupe.key))!.until!;
    const again = await store.promote(
      await store.writeStaging(chunked(old)),
      sha256(old),
      old.length,
    );
    expect(again.worm.retainUntil!.getTime()).toBeGreaterThanOrEqual(longer.getTime());

    // A checkpoint record (PutObject with the headers, honoured) is written for 3 days.
    const record = await records.putRecord('custody/checkpoints/7.json', Buffer.from('{}'));
    expect(record.status).toBe('in_force');
    expectDaysAhead(record.retainUntil, 3);
    expect(worm.snapshot().status).toBe('in_force');
  });
});

describeCeph('findings 5 and 6 through the service on Ceph', () => {
  let raw: S3Client;
  let lockedBucket: TestS3;
  let locked: TestApp;
  let unlocked: TestApp;
  const env = { S3_OBJECT_LOCK_MODE: 'GOVERNANCE', S3_OBJECT_LOCK_RETENTION_DAYS: '3' };

  beforeAll(async () => {
    if (!ceph.ok) return;
    raw = cephClient(ceph);
    lockedBucket = await bucketWithShortDefault(raw);
    locked = await startTestApp('fs', { ...lockedBucket.env, ...env });
    unlocked = await startTestApp('fs', {
      ...(await cephBucket(ceph, { objectLock: false })).env,
      ...env,
    });
  });
  afterAll(async () => {
    raw?.destroy();
    await locked?.close();
    await unlocked?.close();
  });

  const archive = async (app: TestApp, content: Buffer) => {
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'p.mp4',
      content,
    });
    expect([200, 201]).toContain(res.status);
    return res.json() as { id: string; sha256: string };
  };
  const item = async (app: TestApp, id: string) =>
    (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.admin)).expect(200)).body;
  const scrub = (app: TestApp) =>
    app.ctx.scrub.run({ intervalMinutes: 10, fullPassDays: 1, stagingGraceHours: 24, limit: 0 });

  it('an upload to a bucket whose default retention is shorter gets the configured retention, in force', async () => {
    const { id, sha256: hash } = await archive(locked, fakeMedia('mp4', 4000));
    const view = await item(locked, id);
    expect(view.worm.status).toBe('in_force');
    expectDaysAhead(new Date(view.worm.retainUntil), 3);
    expectDaysAhead((await retentionOf(raw, lockedBucket.bucket, blobKeyFor(hash)))?.until, 3);
  });

  it('an item whose retain-until passed is not shown as in force; the scrub revisits it', async () => {
    const data = fakeMedia('mp4', 4100);
    const { id, sha256: hash } = await archive(locked, data);
    const blob = blobKeyFor(hash);
    // A version of the blob whose own retention ends in 2 seconds (as one archived long ago).
    const soon = new Date(Date.now() + 2000);
    await raw.send(
      new PutObjectCommand({
        Bucket: lockedBucket.bucket,
        Key: blob,
        Body: data,
        ContentMD5: createHash('md5').update(data).digest('base64'),
        ObjectLockMode: 'GOVERNANCE',
        ObjectLockRetainUntilDate: soon,
      }),
    );
    await locked.ctx.db
      .updateTable('evidence_items')
      .set({ worm_status: 'in_force', worm_mode: 'GOVERNANCE', worm_retain_until: soon })
      .where('id', '=', id)
      .execute();
    expect((await item(locked, id)).worm.status).toBe('in_force');
    await new Promise((r) => setTimeout(r, 3500));
    const view = await item(locked, id);
    expect(view.worm).toMatchObject({ status: 'expired', mode: 'GOVERNANCE' });
    expect(new Date(view.worm.retainUntil).getTime()).toBeLessThan(Date.now());
    const metrics = (
      await request(locked.url).get('/metrics').set(bearer(locked.keys.admin)).expect(200)
    ).text;
    expect(metrics).toMatch(/evidence_worm_items\{status="expired"\} 1/);

    // The scrub revisits the lapsed item: the store confirms the retention ended, recorded as
    // expired (not re-locked: the configured retention counts from archiving); once only.
    const report = await scrub(locked);
    expect(report.worm).toMatchObject({ checked: 1, expired: 1 });
    expect((await item(locked, id)).worm.status).toBe('expired');
    expect((await scrub(locked)).worm.checked).toBe(0);
    // Uploading the same bytes again locks them anew for the configured retention.
    await archive(locked, data);
    const relocked = await item(locked, id);
    expect(relocked.worm.status).toBe('in_force');
    expectDaysAhead(new Date(relocked.worm.retainUntil), 3);
  });

  it('a repair (a new version of the blob) is read back and extended to the configured retention', async () => {
    const data = fakeMedia('mp4', 4400);
    const { id, sha256: hash } = await archive(locked, data);
    const blob = blobKeyFor(hash);
    // Damaged bytes as a new current version (the bucket default gives it 1 day), found by a check.
    const flipped = Buffer.from(data);
    flipped[100] = flipped[100]! ^ 0xff;
    await raw.send(
      new PutObjectCommand({
        Bucket: lockedBucket.bucket,
        Key: blob,
        Body: flipped,
        ContentMD5: createHash('md5').update(flipped).digest('base64'),
      }),
    );
    await request(locked.url)
      .post(`/v1/evidence/${id}/verify`)
      .set(bearer(locked.keys.support))
      .expect((r) => expect(r.status).toBeLessThan(500));
    expect((await item(locked, id)).integrity).toBe('damaged');
    // The genuine bytes again: the repair's copy (Ceph drops its lock headers, the 1-day default
    // applies) ends up under the configured 3 days, read back.
    await archive(locked, data);
    const view = await item(locked, id);
    expect(view.integrity).toBe('ok');
    expect(view.worm.status).toBe('in_force');
    expectDaysAhead(new Date(view.worm.retainUntil), 3);
    expectDaysAhead((await retentionOf(raw, lockedBucket.bucket, blob))?.until, 3);
  });

  it('/readyz: a one-off WORM failure clears itself once the object shows the lock', async () => {
    const { sha256: hash } = await archive(locked, fakeMedia('mp4', 4200));
    expect((await request(locked.url).get('/readyz').expect(200)).body.checks.worm.status).toBe(
      'in_force',
    );
    // A transient failure: the read-back of that write found no retention (e.g. a timeout
    // answered as missing), while the object does carry it.
    locked.ctx.worm.observe('evidence', blobKeyFor(hash), 'not_in_force');
    const started = Date.now();
    const ready = await request(locked.url).get('/readyz');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(ready.status).toBe(200);
    expect(ready.body.checks.worm.status).toBe('in_force');
    // The problem stays visible as history.
    expect(ready.body.checks.worm.lastProblem).toMatchObject({ key: blobKeyFor(hash) });
  });

  it('/readyz: a store that really ignores Object Lock stays not ready, re-checked', async () => {
    await archive(unlocked, fakeMedia('mp4', 4300));
    for (let i = 0; i < 2; i++) {
      const ready = await request(unlocked.url).get('/readyz').expect(503);
      expect(ready.body.checks.worm.status).toBe('not_in_force');
    }
  });
});
