import type { BlobStore } from '../../src/storage/blob-store';
import type { ResumableState, ResumableStore } from '../../src/storage/resumable-store';
import { cephForTests } from '../support/ceph';
import { fakeMedia, sha256 } from '../support/media';
import {
  chunked,
  type ContractDriver,
  contractDrivers,
  type ContractStores,
  readAll,
  startContractStores,
} from '../support/store-contract';

// Ceph's S3 gateway (radosgw 16.2), a real S3 implementation; where it cannot start, its run of
// the contract is skipped outside CI (cephForTests says why) and fails in CI.
const ceph = cephForTests();

/**
 * The same contract, run against every ResumableStore implementation over real storage: disk,
 * s3rver, and Ceph's gateway. A finished upload is handed to the BlobStore of the same storage,
 * as the tus server does.
 */
describe.each<ContractDriver>(contractDrivers(ceph))('ResumableStore contract (%s)', (driver) => {
  let stores: ContractStores;
  let resumable: ResumableStore;
  let blobs: BlobStore;
  const keysOf = async (key: string) => (await stores.keys()).filter((k) => k.startsWith(key));

  beforeAll(async () => {
    stores = await startContractStores(driver, ceph);
    ({ resumable, blobs } = stores);
  });
  afterAll(async () => {
    await stores.close();
  });

  /** Appends `pieces` one PATCH each, as the tus server does, and returns the last state. */
  async function appendAll(key: string, state: ResumableState, pieces: Buffer[]) {
    let offset = 0;
    for (const piece of pieces) {
      state = await resumable.appendResumable(key, state, offset, chunked(piece));
      offset += piece.length;
    }
    return state;
  }

  it('appends PATCHes across part boundaries, completes idempotently, and the blob store promotes it byte-exact', async () => {
    const data = fakeMedia('mp4', 12 * 1024 * 1024 + 7);
    const { key, state } = await resumable.createResumable();
    expect(key).toMatch(/^resumable\/[0-9a-f-]{36}$/);
    const cuts = [0, 3 * 1024 * 1024 + 1, 9 * 1024 * 1024 + 5, data.length];
    const pieces = cuts.slice(1).map((end, i) => data.subarray(cuts[i], end));
    const last = await appendAll(key, state, pieces);
    await resumable.completeResumable(key, last, data.length);
    await resumable.completeResumable(key, last, data.length); // a retry after a lost answer
    expect(await blobs.stat(key)).toBe(data.length);
    expect(sha256(await readAll(await blobs.read(key, data.length)))).toBe(sha256(data));
    // Nothing but the one object is left of the upload (no tails).
    expect(await keysOf(key)).toEqual([key]);
    const { created } = await blobs.promote(key, sha256(data), data.length);
    expect(created).toBe(true);
    expect(await keysOf(key)).toEqual([]);
    await resumable.discardResumable(key, last); // after promotion: nothing left, no error
  });

  it('discards what a write the database never acknowledged left beyond the offset', async () => {
    const [a, lost, b] = [fakeMedia('mp4', 1000), fakeMedia('wav', 500), fakeMedia('mp4', 2000)];
    const { key, state } = await resumable.createResumable();
    const acknowledged = await resumable.appendResumable(key, state, 0, chunked(a));
    // Written and durable, but its new state never reached the database (a crash).
    await resumable.appendResumable(key, acknowledged, a.length, chunked(lost));
    const last = await resumable.appendResumable(key, acknowledged, a.length, chunked(b));
    const whole = Buffer.concat([a, b]);
    await resumable.completeResumable(key, last, whole.length);
    expect(sha256(await readAll(await blobs.read(key, whole.length)))).toBe(sha256(whole));
    await resumable.discardResumable(key, last);
    expect(await keysOf(key)).toEqual([]);
  });

  it('refuses to complete an upload that holds fewer bytes than its size', async () => {
    const { key, state } = await resumable.createResumable();
    const last = await resumable.appendResumable(key, state, 0, chunked(fakeMedia('mp4', 100)));
    await expect(resumable.completeResumable(key, last, 101)).rejects.toThrow();
    await resumable.discardResumable(key, last);
  });

  it('discards an upload at any stage, leaving nothing behind', async () => {
    const fresh = await resumable.createResumable();
    await resumable.discardResumable(fresh.key, fresh.state);
    expect(await keysOf(fresh.key)).toEqual([]);

    const partial = await resumable.createResumable();
    const written = await appendAll(partial.key, partial.state, [
      fakeMedia('mp4', 6 * 1024 * 1024),
    ]);
    await resumable.discardResumable(partial.key, written);
    expect(await keysOf(partial.key)).toEqual([]);
    await resumable.discardResumable(partial.key, written); // twice: no error
  });

  it('sweeps leftovers older than the cut-off that no live upload claims, and never a live one', async () => {
    const live = await resumable.createResumable();
    const gone = await resumable.createResumable();
    const data = fakeMedia('mp4', 1000);
    const liveState = await appendAll(live.key, live.state, [data]);
    await appendAll(gone.key, gone.state, [fakeMedia('wav', 700)]);
    const isLive = async (key: string) => key === live.key;
    expect(await resumable.sweepResumable(new Date(Date.now() - 3600_000), isLive)).toBe(0);
    expect(await keysOf(gone.key)).not.toEqual([]);
    await new Promise((r) => setTimeout(r, 1100)); // S3 LastModified has one-second resolution
    expect(await resumable.sweepResumable(new Date(), isLive)).toBeGreaterThan(0);
    expect(await keysOf(gone.key)).toEqual([]);
    // The live upload is whole, and still completes.
    await resumable.completeResumable(live.key, liveState, data.length);
    expect(sha256(await readAll(await blobs.read(live.key, data.length)))).toBe(sha256(data));
    await resumable.discardResumable(live.key, liveState);
  });
});
