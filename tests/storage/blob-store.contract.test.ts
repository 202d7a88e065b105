import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { BlobUnavailableError, blobKeyFor, type BlobStore } from '../../src/storage/blob-store';
import { S3BlobStore } from '../../src/storage/blob-store.s3';
import type { CustodyRecordStore } from '../../src/storage/record-store';
import { cephForTests } from '../support/ceph';
import { fakeMedia, sha256 } from '../support/media';
import { rawS3Client, startS3Server, type TestS3 } from '../support/s3-server';
import {
  chunked,
  type ContractDriver,
  contractDrivers,
  type ContractStores,
  readAll,
  recordingS3Client,
  compliance30Days,
  type SentRequest,
  startContractStores,
} from '../support/store-contract';

// Ceph's S3 gateway (radosgw 16.2), a real S3 implementation; where it cannot start, its run of
// the contract is skipped outside CI (cephForTests says why) and fails in CI.
const ceph = cephForTests();

/**
 * The same contract, run against every BlobStore implementation over real storage: disk,
 * s3rver, and Ceph's gateway (a bucket with Object Lock enabled, hence versioned).
 */
describe.each<ContractDriver>(contractDrivers(ceph))('BlobStore contract (%s)', (driver) => {
  let stores: ContractStores;
  let store: BlobStore;
  let records: CustodyRecordStore;
  let s3: TestS3 | undefined;
  let dataDir: string;
  const keys = () => stores.keys();

  beforeAll(async () => {
    stores = await startContractStores(driver, ceph);
    ({ blobs: store, records, s3, dataDir } = stores);
  });
  afterAll(async () => {
    await stores.close();
  });

  it.each([
    ['small', 1000],
    ['multipart-sized', 12 * 1024 * 1024 + 7],
    // On S3 (5 MiB parts): whole parts only, no shorter last part.
    ['two-parts-exactly', 10 * 1024 * 1024],
  ])(
    'stages, promotes to the content address and reads back a %s blob byte-exact',
    async (_l, size) => {
      const data = fakeMedia('mp4', size);
      const staging = await store.writeStaging(chunked(data));
      expect(staging).toMatch(/^staging\//);
      const { key, created } = await store.promote(staging, sha256(data), data.length);
      expect(created).toBe(true);
      expect(key).toBe(blobKeyFor(sha256(data)));
      expect(await store.stat(key)).toBe(data.length);
      expect(sha256(await readAll(await store.read(key, data.length)))).toBe(sha256(data));
      expect((await keys()).filter((k) => k.includes('staging'))).toEqual([]);
    },
  );

  it('reads exact byte ranges, including the first and last byte', async () => {
    const data = fakeMedia('mp4', 300_000);
    const { key } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    for (const [start, end] of [
      [0, 0],
      [0, 1],
      [1, 1],
      [123, 65_600],
      [299_999, 299_999],
      [0, 299_999],
    ] as const) {
      const got = await readAll(await store.read(key, data.length, { start, end }));
      expect({ start, end, ok: got.equals(data.subarray(start, end + 1)) }).toEqual({
        start,
        end,
        ok: true,
      });
    }
  });

  it('keeps one blob when the same bytes are promoted twice, and discards the second staging copy', async () => {
    const data = fakeMedia('wav', 50_000);
    const first = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    const before = await keys();
    const second = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    expect(first.created).toBe(true);
    expect(second).toMatchObject({ key: first.key, created: false });
    expect(await keys()).toEqual(before);
  });

  it('leaves nothing behind when the source stream fails midway', async () => {
    const before = await keys();
    const failing = Readable.from(
      (async function* () {
        yield fakeMedia('mp4', 6 * 1024 * 1024);
        yield fakeMedia('mp4', 1024);
        throw new Error('client went away');
      })(),
    );
    await expect(store.writeStaging(failing)).rejects.toThrow('client went away');
    expect(await keys()).toEqual(before);
  });

  it('discards a staging object on request', async () => {
    const before = await keys();
    const staging = await store.writeStaging(chunked(Buffer.from('abc')));
    expect((await keys()).length).toBe(before.length + 1);
    await store.discardStaging(staging);
    expect(await keys()).toEqual(before);
  });

  it('sweeps only staging objects older than the cut-off', async () => {
    const data = fakeMedia('mp4', 1000);
    const { key } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    await store.writeStaging(chunked(Buffer.from('left behind by a crash')));
    expect(await store.sweepStaging(new Date(Date.now() - 3600_000))).toBe(0);
    await new Promise((r) => setTimeout(r, 1100)); // S3 LastModified has one-second resolution
    expect(await store.sweepStaging(new Date())).toBe(1);
    expect((await keys()).filter((k) => k.includes('staging'))).toEqual([]);
    expect(await store.stat(key)).toBe(data.length);
  });

  it("sweeps, at any age, the staging of an instance that is gone, and never a live one's", async () => {
    const [live, gone] = [randomUUID(), randomUUID()];
    const ofLive = (await stores.another({ stagingOwner: live })).blobs;
    const ofGone = (await stores.another({ stagingOwner: gone })).blobs;
    const kept = await ofLive.writeStaging(chunked(Buffer.from('being written')));
    const cut = await ofGone.writeStaging(chunked(Buffer.from('cut off by a kill')));
    expect([kept, cut]).toEqual([
      expect.stringMatching(new RegExp(`^staging/${live}\\.[0-9a-f-]{36}$`)),
      expect.stringMatching(new RegExp(`^staging/${gone}\\.[0-9a-f-]{36}$`)),
    ]);
    const asked: string[] = [];
    const isGone = async (owner: string) => {
      asked.push(owner);
      return owner === gone;
    };
    expect(await store.sweepStaging(new Date(Date.now() - 3600_000), isGone)).toBe(1);
    expect(asked.sort()).toEqual([live, gone].sort());
    expect((await keys()).filter((k) => k.startsWith('staging/'))).toEqual([kept]);
    // The live instance's staging object is still promotable.
    const data = Buffer.from('being written');
    expect((await ofLive.promote(kept, sha256(data), data.length)).created).toBe(true);
    await ofLive.close();
    await ofGone.close();
  });

  it("aborts a gone instance's unfinished multipart staging upload (S3 servers that list them)", async () => {
    if (!s3) return; // a disk store has no multipart uploads
    const { CreateMultipartUploadCommand, ListMultipartUploadsCommand } =
      await import('@aws-sdk/client-s3');
    const client = rawS3Client(s3);
    const list = () =>
      client.send(new ListMultipartUploadsCommand({ Bucket: s3!.bucket, Prefix: 'staging/' }));
    try {
      await list();
    } catch (err) {
      // s3rver does not implement ListMultipartUploads; real S3 and Ceph do.
      if ((err as { name?: string }).name === 'NotImplemented') return;
      throw err;
    }
    // What a 100 MB upload cut by kill -9 leaves on S3: parts, and no object.
    const gone = randomUUID();
    const key = `staging/${gone}.${randomUUID()}`;
    await client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
    expect((await list()).Uploads?.map((u) => u.Key)).toContain(key);
    await store.sweepStaging(new Date(Date.now() - 3600_000), async (o) => o === gone);
    expect((await list()).Uploads?.map((u) => u.Key) ?? []).not.toContain(key);
    client.destroy();
  });

  it('refuses to serve a blob whose size is not the archived size', async () => {
    const data = fakeMedia('mp4', 5000);
    const { key } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    await expect(store.read(key, data.length + 1)).rejects.toBeInstanceOf(BlobUnavailableError);
    await expect(store.read(key, data.length - 1, { start: 0, end: 9 })).rejects.toBeInstanceOf(
      BlobUnavailableError,
    );
  });

  it('reports a missing blob as absent and refuses to read it', async () => {
    const missing = blobKeyFor('0'.repeat(64));
    expect(await store.stat(missing)).toBeUndefined();
    await expect(store.read(missing, 10)).rejects.toBeInstanceOf(BlobUnavailableError);
    await expect(store.ping()).resolves.toBeUndefined();
  });

  const promoted = async (data: Buffer) =>
    (await store.promote(await store.writeStaging(chunked(data)), sha256(data), data.length)).key;

  it('deletes a promoted blob, idempotently, and refuses anything that is not a blob key', async () => {
    const data = fakeMedia('mp4', 3000);
    const key = await promoted(data);
    await store.delete(key);
    expect(await store.stat(key)).toBeUndefined();
    await expect(store.delete(key)).resolves.toBeUndefined();
    const staging = await store.writeStaging(chunked(Buffer.from('staged')));
    for (const bad of [staging, 'sha256/../x', `sha256/00/00/${'1'.repeat(64)}`, 'custody/x', '']) {
      await expect(store.delete(bad)).rejects.toThrow();
    }
    await store.discardStaging(staging);
  });

  it('lists promoted blobs and staging objects with their sizes, separately', async () => {
    const a = fakeMedia('mp4', 1234);
    const b = fakeMedia('wav', 4321);
    const keyA = await promoted(a);
    const keyB = await promoted(b);
    const staging = await store.writeStaging(chunked(Buffer.from('half an upload')));
    await records.putRecord('custody/checkpoints/x.json', Buffer.from('{}'));
    const blobs = new Map<string, number>();
    for await (const o of store.list('sha256/')) blobs.set(o.key, o.size);
    expect(blobs.get(keyA)).toBe(a.length);
    expect(blobs.get(keyB)).toBe(b.length);
    expect([...blobs.keys()].every((k) => k.startsWith('sha256/'))).toBe(true);
    const staged: string[] = [];
    for await (const o of store.list('staging/')) staged.push(o.key);
    expect(staged).toEqual([staging]);
    await store.discardStaging(staging);
  });

  it('has no legal-hold flag without Object Lock: mirroring a hold is a no-op', async () => {
    const key = await promoted(fakeMedia('mp4', 100));
    await expect(store.setLegalHold(key, true)).resolves.toBeUndefined();
  });

  it('repairs a damaged blob with staged genuine bytes; a reader already open keeps its bytes', async () => {
    const data = fakeMedia('mp4', 200_000);
    const key = await promoted(data);
    const damaged = Buffer.from(data);
    damaged[1000] = damaged[1000]! ^ 0x01;
    if (s3) {
      const { PutObjectCommand } = await import('@aws-sdk/client-s3');
      const client = rawS3Client(s3);
      await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: damaged }));
      client.destroy();
    } else {
      writeFileSync(path.join(dataDir, 'blobs', key), damaged);
    }
    const before = await store.read(key, data.length);
    const staging = await store.writeStaging(chunked(data));
    const { key: repairedKey } = await store.repair(staging, sha256(data), data.length);
    expect(repairedKey).toBe(key);
    expect(sha256(await readAll(await store.read(key, data.length)))).toBe(sha256(data));
    expect((await keys()).filter((k) => k.includes('staging'))).toEqual([]);
    // Disk: the rename swapped the file whole; a reader of the old one finishes with it.
    if (!s3) expect(sha256(await readAll(before))).toBe(sha256(damaged));
    else before.destroy();

    // keepStaged (a resumable upload's bytes): the staged copy stays for a retry, whole.
    const kept = await store.writeStaging(chunked(data));
    await store.repair(kept, sha256(data), data.length, { keepStaged: true });
    expect(sha256(await readAll(await store.read(key, data.length)))).toBe(sha256(data));
    expect(sha256(await readAll(await store.read(kept, data.length)))).toBe(sha256(data));
    expect((await keys()).filter((k) => k.endsWith('.tmp'))).toEqual([]);
    await store.discardStaging(kept);
  });
});

/**
 * s3rver has no Object Lock, so what can be checked here is what the store asks of S3: every
 * promoted object and custody record carries the retention headers, and a hold is mirrored.
 */
describe('S3 Object Lock requests (s3rver)', () => {
  let s3: TestS3;
  const sent: SentRequest[] = [];
  let store: S3BlobStore;
  let copyClient: S3Client;

  beforeAll(async () => {
    s3 = await startS3Server();
    const cfg = compliance30Days(s3);
    copyClient = recordingS3Client(cfg, sent, 'copies');
    store = new S3BlobStore(recordingS3Client(cfg, sent), cfg, { copyClient });
  });
  afterAll(async () => {
    await store.close();
    copyClient.destroy();
    await s3.close();
  });

  it('writes promoted evidence with Object Lock retention', async () => {
    const data = fakeMedia('mp4', 2000);
    sent.length = 0;
    const { key, worm } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    // Asked for, but s3rver has no Object Lock: read back, it is reported, never assumed.
    expect(worm.status).toBe('not_in_force');
    const copy = sent.find((r) => r.method === 'PUT' && r.headers['x-amz-copy-source']);
    expect(copy?.headers['x-amz-object-lock-mode']).toBe('COMPLIANCE');
    const until = Date.parse(copy!.headers['x-amz-object-lock-retain-until-date']!);
    expect(Math.abs(until - (Date.now() + 30 * 86_400_000))).toBeLessThan(60_000);
    // Staging objects are deleted after promotion, so they carry no lock.
    const staged = sent.find((r) => r.method === 'PUT' && !r.headers['x-amz-copy-source']);
    expect(staged?.headers['x-amz-object-lock-mode']).toBeUndefined();
    expect(await store.stat(key)).toBe(data.length);
  });

  it('mirrors a legal hold to the object flag and surfaces the store refusing it', async () => {
    const data = fakeMedia('mp4', 500);
    const { key } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    sent.length = 0;
    // s3rver does not implement ?legal-hold; on a real Object Lock bucket this succeeds.
    await store.setLegalHold(key, true).catch(() => undefined);
    const hold = sent.find((r) => 'legal-hold' in r.query);
    expect(hold?.method).toBe('PUT');
    expect(String(hold?.body)).toContain('<Status>ON</Status>');
  });

  it('repairs a damaged blob as a new locked object, never deleting the damaged one', async () => {
    const data = fakeMedia('mp4', 3000);
    const { key } = await store.promote(
      await store.writeStaging(chunked(data)),
      sha256(data),
      data.length,
    );
    const staging = await store.writeStaging(chunked(data));
    sent.length = 0;
    await store.repair(staging, sha256(data), data.length);
    const copy = sent.find((r) => r.method === 'PUT' && r.headers['x-amz-copy-source']);
    expect(copy?.path).toMatch(new RegExp(`${key}$`));
    expect(copy?.headers['x-amz-object-lock-mode']).toBe('COMPLIANCE');
    const deletes = sent.filter((r) => r.method === 'DELETE');
    expect(deletes.map((d) => d.path)).toEqual([expect.stringMatching(/staging\//)]);
  });
});
