import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLegalHoldCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
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
import { tusUpload } from '../support/tus';
import type { TestS3 } from '../support/s3-server';

/*
 * Object Lock, versioning, legal holds and the multipart copy against a real S3 implementation:
 * Ceph's gateway (radosgw 16.2), which s3rver cannot stand in for. Ceph honours the lock headers
 * of a PutObject but ignores them on CopyObject, the call that promotes an upload: WORM must be
 * read back, applied where the copy dropped it, and reported where it cannot be.
 */
const ceph = cephForTests();
const describeCeph = ceph.ok ? describe : describe.skip;
const DAY = 86_400_000;
const MiB = 1024 * 1024;

const chunked = (buf: Buffer): Readable =>
  Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += 64 * 1024) yield buf.subarray(i, i + 64 * 1024);
    })(),
  );

async function legalHoldOf(raw: S3Client, bucket: string, key: string) {
  const { LegalHold } = await raw.send(new GetObjectLegalHoldCommand({ Bucket: bucket, Key: key }));
  return LegalHold?.Status;
}

/** A store over one bucket, recording the S3 operations it sends. */
function lockedStore(bucket: TestS3, mode: 'GOVERNANCE' | 'COMPLIANCE' = 'GOVERNANCE') {
  const cfg = loadConfig({
    ...bucket.env,
    S3_OBJECT_LOCK_MODE: mode,
    S3_OBJECT_LOCK_RETENTION_DAYS: '1',
  });
  if (cfg.storage.driver !== 's3') throw new Error('unreachable');
  const client = createS3Client(cfg.storage.s3);
  // Server-side copies go through a client of their own (longer timeouts): both are recorded.
  const copyClient = createS3Client(cfg.storage.s3, 'copies');
  const sent: string[] = [];
  for (const c of [client, copyClient])
    c.middlewareStack.add(
      (next, context) => async (args) => {
        const headers = (args.request as { headers: Record<string, string> }).headers;
        sent.push(`${context.commandName}${headers['x-amz-copy-source-range'] ? ' range' : ''}`);
        return next(args);
      },
      { step: 'finalizeRequest', name: 'recordOperations' },
    );
  const worm = new WormLedger();
  // Multipart copy above 5 MiB, in 5 MiB parts (S3's minimum): the large-copy path, small.
  const store = new S3BlobStore(client, cfg.storage.s3, {
    copyClient,
    worm,
    maxSingleCopyBytes: 5 * MiB,
    copyPartBytes: 5 * MiB,
  });
  const records = new S3CustodyRecordStore(client, cfg.storage.s3, { worm });
  return { store, records, sent, worm };
}

const expectOneDay = (until: Date | undefined) =>
  expect(Math.abs(until!.getTime() - (Date.now() + DAY))).toBeLessThan(10 * 60_000);

describeCeph('Object Lock on Ceph radosgw (GOVERNANCE, bucket with Object Lock)', () => {
  let bucket: TestS3;
  let raw: S3Client;
  let s: ReturnType<typeof lockedStore>;

  beforeAll(async () => {
    if (!ceph.ok) return;
    bucket = await cephBucket(ceph);
    raw = cephClient(ceph);
    s = lockedStore(bucket);
  });
  afterAll(async () => {
    raw?.destroy();
    await s?.store.close();
  });

  it('puts the configured retention on promoted evidence, read back from the store (the CopyObject path)', async () => {
    const data = fakeMedia('mp4', 1000);
    s.sent.length = 0;
    const result = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(s.sent).toContain('CopyObjectCommand');
    const stored = await retentionOf(raw, bucket.bucket, result.key);
    expect(stored?.mode).toBe('GOVERNANCE');
    expectOneDay(stored?.until);
    expect(result.worm).toMatchObject({ status: 'in_force', mode: 'GOVERNANCE' });
    expectOneDay(result.worm.retainUntil ?? undefined);
  });

  it('promotes a blob above the single-copy threshold by UploadPartCopy, byte-exact and under retention', async () => {
    const data = fakeMedia('mp4', 11 * MiB + 3);
    s.sent.length = 0;
    const result = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(s.sent.filter((op) => op === 'UploadPartCopyCommand range')).toHaveLength(3);
    expect(s.sent).not.toContain('CopyObjectCommand');
    const back = await s.store.read(result.key, data.length);
    const hash = createHash('sha256');
    for await (const c of back) hash.update(c as Buffer);
    expect(hash.digest('hex')).toBe(sha256(data));
    expect((await retentionOf(raw, bucket.bucket, result.key))?.mode).toBe('GOVERNANCE');
    expect(result.worm.status).toBe('in_force');
  });

  it('keeps the lock of an existing blob when the same bytes come again, and locks one stored without it', async () => {
    const data = fakeMedia('wav', 3000);
    const first = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    const before = await retentionOf(raw, bucket.bucket, first.key);
    const again = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(again).toMatchObject({ key: first.key, created: false, worm: { status: 'in_force' } });
    expect(await retentionOf(raw, bucket.bucket, first.key)).toEqual(before);

    // A blob promoted before WORM was verified (or configured) has no retention: the next upload
    // of the same bytes (the dedupe path, existing === size) gives it one.
    const old = fakeMedia('mp4', 2500);
    const body = old;
    await raw.send(
      new PutObjectCommand({
        Bucket: bucket.bucket,
        Key: blobKeyFor(sha256(old)),
        Body: body,
        ContentMD5: createHash('md5').update(body).digest('base64'),
      }),
    );
    expect(await retentionOf(raw, bucket.bucket, blobKeyFor(sha256(old)))).toBeUndefined();
    const dedupe = await s.store.promote(
      await s.store.writeStaging(chunked(old)),
      sha256(old),
      old.length,
    );
    expect(dedupe).toMatchObject({ created: false, worm: { status: 'in_force' } });
    expect((await retentionOf(raw, bucket.bucket, dedupe.key))?.mode).toBe('GOVERNANCE');
  });

  it('writes checkpoint records under retention', async () => {
    const key = 'custody/checkpoints/00000000000000000042.json';
    const worm = await s.records.putRecord(key, Buffer.from('{"seq":42}'));
    expect(worm.status).toBe('in_force');
    const stored = await retentionOf(raw, bucket.bucket, key);
    expect(stored?.mode).toBe('GOVERNANCE');
    expectOneDay(stored?.until);
    // Written again (a retried checkpoint run): still verified.
    expect((await s.records.putRecord(key, Buffer.from('{"seq":42}'))).status).toBe('in_force');
  });

  it('sets and releases an object legal hold, read back from the store', async () => {
    const data = fakeMedia('mp4', 700);
    const { key } = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    await s.store.setLegalHold(key, true);
    expect(await legalHoldOf(raw, bucket.bucket, key)).toBe('ON');
    await s.store.setLegalHold(key, false);
    expect(await legalHoldOf(raw, bucket.bucket, key)).toBe('OFF');
    expect(s.worm.snapshot().status).toBe('in_force');
  });

  it('keeps a locked version through delete and overwrite (versioning): it cannot be removed under retention', async () => {
    const data = fakeMedia('mp4', 1200);
    const { key } = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    // Another writer overwrites the key, then the store deletes it: both leave the locked version.
    const other = Buffer.from('not the evidence');
    await raw.send(
      new PutObjectCommand({
        Bucket: bucket.bucket,
        Key: key,
        Body: other,
        ContentMD5: createHash('md5').update(other).digest('base64'),
      }),
    );
    await s.store.delete(key);
    expect(await s.store.stat(key)).toBeUndefined();
    const { Versions = [] } = await raw.send(
      new ListObjectVersionsCommand({ Bucket: bucket.bucket, Prefix: key }),
    );
    expect(Versions).toHaveLength(2);
    const oldest = [...Versions].sort(
      (a, b) => a.LastModified!.getTime() - b.LastModified!.getTime(),
    )[0]!;
    const got = await raw.send(
      new GetObjectCommand({ Bucket: bucket.bucket, Key: key, VersionId: oldest.VersionId }),
    );
    expect(sha256(Buffer.from(await got.Body!.transformToByteArray()))).toBe(sha256(data));
    // Deleting the locked version itself is refused without a governance bypass.
    await expect(
      raw.send(
        new DeleteObjectCommand({ Bucket: bucket.bucket, Key: key, VersionId: oldest.VersionId }),
      ),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
  });
});

describeCeph('Object Lock on Ceph radosgw (COMPLIANCE)', () => {
  let bucket: TestS3;
  let raw: S3Client;
  let s: ReturnType<typeof lockedStore>;
  beforeAll(async () => {
    if (!ceph.ok) return;
    bucket = await cephBucket(ceph);
    raw = cephClient(ceph);
    s = lockedStore(bucket, 'COMPLIANCE');
  });
  afterAll(async () => {
    raw?.destroy();
    await s?.store.close();
  });

  it('promotes evidence under COMPLIANCE retention, which not even a governance bypass lifts', async () => {
    const data = fakeMedia('mp4', 1500);
    const { key, worm } = await s.store.promote(
      await s.store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(worm).toMatchObject({ status: 'in_force', mode: 'COMPLIANCE' });
    expect((await retentionOf(raw, bucket.bucket, key))?.mode).toBe('COMPLIANCE');
    const { Versions = [] } = await raw.send(
      new ListObjectVersionsCommand({ Bucket: bucket.bucket, Prefix: key }),
    );
    await expect(
      raw.send(
        new DeleteObjectCommand({
          Bucket: bucket.bucket,
          Key: key,
          VersionId: Versions[0]!.VersionId,
          BypassGovernanceRetention: true,
        }),
      ),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
  });
});

describeCeph(
  'WORM configured on a bucket without Object Lock (Ceph): reported, never assumed',
  () => {
    let s: ReturnType<typeof lockedStore>;
    beforeAll(async () => {
      if (!ceph.ok) return;
      s = lockedStore(await cephBucket(ceph, { objectLock: false }));
    });
    afterAll(async () => {
      await s?.store.close();
    });

    it('reports evidence, records and holds as not in force', async () => {
      const data = fakeMedia('mp4', 900);
      const { worm } = await s.store.promote(
        await s.store.writeStaging(chunked(data)),
        sha256(data),
        data.length,
      );
      expect(worm).toEqual({ status: 'not_in_force', mode: null, retainUntil: null });
      expect(s.worm.snapshot()).toMatchObject({
        status: 'not_in_force',
        lastProblem: { object: 'evidence', key: blobKeyFor(sha256(data)) },
      });
      // Ceph refuses a PutObject with lock headers outright there: the checkpoint run fails, loudly.
      await expect(
        s.records.putRecord('custody/checkpoints/1.json', Buffer.from('{}')),
      ).rejects.toMatchObject({ name: 'InvalidRequest' });
      await expect(s.store.setLegalHold(blobKeyFor(sha256(data)), true)).rejects.toThrow();
    });
  },
);

describeCeph(
  'the service on Ceph: each item says whether WORM is in force; /readyz and metrics',
  () => {
    let locked: TestApp;
    let unlocked: TestApp;
    let lockedBucket: TestS3;
    let raw: S3Client;
    const worm = { S3_OBJECT_LOCK_MODE: 'GOVERNANCE', S3_OBJECT_LOCK_RETENTION_DAYS: '1' };

    beforeAll(async () => {
      if (!ceph.ok) return;
      lockedBucket = await cephBucket(ceph);
      raw = cephClient(ceph);
      locked = await startTestApp('fs', { ...lockedBucket.env, ...worm });
      unlocked = await startTestApp('fs', {
        ...(await cephBucket(ceph, { objectLock: false })).env,
        ...worm,
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
      (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.admin)).expect(200))
        .body;
    const metrics = async (app: TestApp) =>
      (await request(app.url).get('/metrics').set(bearer(app.keys.admin)).expect(200)).text;

    it('locks uploads, holds and checkpoints on an Object Lock bucket, and says so', async () => {
      const data = fakeMedia('mp4', 5000);
      const { id, sha256: hash } = await archive(locked, data);
      const blob = blobKeyFor(hash);
      expect((await retentionOf(raw, lockedBucket.bucket, blob))?.mode).toBe('GOVERNANCE');
      const view = await item(locked, id);
      expect(view.worm).toMatchObject({ status: 'in_force', mode: 'GOVERNANCE' });
      expectOneDay(new Date(view.worm.retainUntil));
      // The same bytes again (the dedupe path): still in force.
      await archive(locked, data);
      expect((await item(locked, id)).worm.status).toBe('in_force');

      const placed = await request(locked.url)
        .post(`/v1/evidence/${id}/holds`)
        .set(bearer(locked.keys.admin))
        .send({ reason: 'court order 7' })
        .expect(201);
      expect(placed.body.objectLegalHold).toBe('mirrored');
      expect(await legalHoldOf(raw, lockedBucket.bucket, blob)).toBe('ON');
      await request(locked.url)
        .post(`/v1/holds/${placed.body.hold.id}/release`)
        .set(bearer(locked.keys.admin))
        .send({ reason: 'settled' })
        .expect(200);
      expect(await legalHoldOf(raw, lockedBucket.bucket, blob)).toBe('OFF');

      await request(locked.url)
        .post('/v1/custody/checkpoints')
        .set(bearer(locked.keys.admin))
        .expect((r) => expect([200, 201]).toContain(r.status));
      const [checkpoint] = (
        await locked.ctx.db.selectFrom('audit_checkpoints').select('object_key').execute()
      ).map((r) => r.object_key);
      expect((await retentionOf(raw, lockedBucket.bucket, checkpoint!))?.mode).toBe('GOVERNANCE');

      const ready = await request(locked.url).get('/readyz').expect(200);
      expect(ready.body.checks.worm).toMatchObject({ status: 'in_force', itemsNotInForce: 0 });
      const text = await metrics(locked);
      expect(text).toMatch(
        /evidence_worm_checks_total\{object="evidence",status="in_force"\} [1-9]/,
      );
      expect(text).toMatch(/evidence_worm_checks_total\{object="record",status="in_force"\} [1-9]/);
      expect(text).toMatch(/evidence_worm_items\{status="in_force"\} 1/);
    });

    it('locks a resumable (tus) upload promoted from its multipart upload', async () => {
      const clip = fakeMedia('mp4', 12 * MiB + 12345);
      const result = await tusUpload(
        locked.url,
        locked.keys.ingest,
        clip,
        { filename: 'r.mp4', kind: 'packing_video', sha256: sha256(clip) },
        { chunkSize: 3 * MiB },
      );
      expect(result.status).toBe('created');
      expect((await item(locked, result.itemId!)).worm.status).toBe('in_force');
      const blob = blobKeyFor(sha256(clip));
      expect((await retentionOf(raw, lockedBucket.bucket, blob))?.mode).toBe('GOVERNANCE');
      const got = await raw.send(new GetObjectCommand({ Bucket: lockedBucket.bucket, Key: blob }));
      expect(sha256(Buffer.from(await got.Body!.transformToByteArray()))).toBe(sha256(clip));
    });

    it('the scrub locks evidence stored before WORM was verified (what radosgw left unlocked)', async () => {
      const data = fakeMedia('mp4', 7000);
      const { id, sha256: hash } = await archive(locked, data);
      const blob = blobKeyFor(hash);
      // As an earlier version left it on Ceph: the object without retention (here a new current
      // version of it, written behind the service's back), the row unchecked.
      await raw.send(
        new PutObjectCommand({
          Bucket: lockedBucket.bucket,
          Key: blob,
          Body: data,
          ContentMD5: createHash('md5').update(data).digest('base64'),
        }),
      );
      expect(await retentionOf(raw, lockedBucket.bucket, blob)).toBeUndefined();
      await locked.ctx.db
        .updateTable('evidence_items')
        .set({ worm_status: null, worm_mode: null, worm_retain_until: null })
        .where('id', '=', id)
        .execute();
      expect((await item(locked, id)).worm).toBeNull();

      const report = await locked.ctx.scrub.run({
        intervalMinutes: 10,
        fullPassDays: 1,
        stagingGraceHours: 24,
        limit: 0,
      });
      expect(report.worm).toEqual({ checked: 1, inForce: 1, notInForce: 0, expired: 0 });
      expect((await retentionOf(raw, lockedBucket.bucket, blob))?.mode).toBe('GOVERNANCE');
      expect((await item(locked, id)).worm).toMatchObject({
        status: 'in_force',
        mode: 'GOVERNANCE',
      });
      // Nothing left to back-fill: the next run checks nothing.
      expect(
        (
          await locked.ctx.scrub.run({
            intervalMinutes: 10,
            fullPassDays: 1,
            stagingGraceHours: 24,
            limit: 0,
          })
        ).worm.checked,
      ).toBe(0);
    });

    it('a repair of a held item keeps the legal hold on the genuine copy (review finding 2)', async () => {
      const data = fakeMedia('mp4', 9000);
      const { id, sha256: hash } = await archive(locked, data);
      const blob = blobKeyFor(hash);
      const placed = await request(locked.url)
        .post(`/v1/evidence/${id}/holds`)
        .set(bearer(locked.keys.admin))
        .send({ reason: 'court order 9' })
        .expect(201);
      expect(placed.body.objectLegalHold).toBe('mirrored');
      // Damaged behind the service's back: a new current version with a flipped byte.
      const bad = Buffer.from(data);
      bad[100] = bad[100]! ^ 1;
      await raw.send(
        new PutObjectCommand({
          Bucket: lockedBucket.bucket,
          Key: blob,
          Body: bad,
          ContentMD5: createHash('md5').update(bad).digest('base64'),
        }),
      );
      const verified = await request(locked.url)
        .post(`/v1/evidence/${id}/verify`)
        .set(bearer(locked.keys.admin))
        .expect(200);
      expect(verified.body.status).toBe('mismatch');
      expect((await item(locked, id)).integrity).toBe('damaged');
      await archive(locked, data); // the genuine bytes again: the repair
      expect((await item(locked, id)).integrity).toBe('ok');
      const got = await raw.send(new GetObjectCommand({ Bucket: lockedBucket.bucket, Key: blob }));
      expect(sha256(Buffer.from(await got.Body!.transformToByteArray()))).toBe(hash);
      // The repaired (current) version is held, as the item is.
      expect(await legalHoldOf(raw, lockedBucket.bucket, blob)).toBe('ON');
      await request(locked.url)
        .post(`/v1/holds/${placed.body.hold.id}/release`)
        .set(bearer(locked.keys.admin))
        .send({ reason: 'settled' })
        .expect(200);
      expect(await legalHoldOf(raw, lockedBucket.bucket, blob)).toBe('OFF');
    });

    it('records an item whose bytes are not under WORM, and /readyz and the metrics say so', async () => {
      const { id } = await archive(unlocked, fakeMedia('mp4', 6000));
      expect((await item(unlocked, id)).worm).toEqual({
        status: 'not_in_force',
        mode: null,
        retainUntil: null,
      });
      const ready = await request(unlocked.url).get('/readyz').expect(503);
      expect(ready.body.checks.worm).toMatchObject({
        status: 'not_in_force',
        itemsNotInForce: 1,
        lastProblem: { object: 'evidence' },
      });
      const text = await metrics(unlocked);
      expect(text).toMatch(/evidence_worm_items\{status="not_in_force"\} 1/);
      expect(text).toMatch(
        /evidence_worm_checks_total\{object="evidence",status="not_in_force"\} 1/,
      );
    });
  },
);
