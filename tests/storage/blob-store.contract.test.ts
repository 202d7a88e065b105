import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { loadConfig } from '../../src/config';
import { createBlobStore } from '../../src/context';
import { BlobUnavailableError, blobKeyFor, type BlobStore } from '../../src/storage/blob-store';
import { listStoreKeys, type Driver } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { startS3Server, type TestS3 } from '../support/s3-server';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function chunked(buf: Buffer, size = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
    })(),
  );
}

/** The same contract, run against every BlobStore implementation over real storage. */
describe.each<Driver>(['fs', 's3'])('BlobStore contract (%s)', (driver) => {
  let store: BlobStore;
  let s3: TestS3 | undefined;
  let dataDir: string;
  const keys = () => listStoreKeys(s3 ?? path.join(dataDir, 'blobs'));

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-store-'));
    s3 = driver === 's3' ? await startS3Server() : undefined;
    // 5 MiB parts: bodies above that take S3's multipart path.
    store = await createBlobStore(
      loadConfig({ DATA_DIR: dataDir, S3_PART_SIZE_BYTES: String(5 * 1024 * 1024), ...s3?.env }),
    );
  });
  afterAll(async () => {
    await store.close();
    await s3?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it.each([
    ['small', 1000],
    ['multipart-sized', 12 * 1024 * 1024 + 7],
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
    expect(second).toEqual({ key: first.key, created: false });
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
});
