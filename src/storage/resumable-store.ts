/**
 * Resumable (tus) uploads in progress. Their bytes live under `resumable/`, apart from staging,
 * until completeResumable() makes them one object that BlobStore.promote() accepts like a staging
 * key (and BlobStore.read() and stat() read, to hash it).
 */
export interface ResumableStore {
  /** Starts a resumable upload: its key, and the store's record of its progress. */
  createResumable(): Promise<{ key: string; state: ResumableState }>;
  /**
   * Writes body at `offset`, the count of bytes `state` says are durable; anything a write cut off
   * by a crash left beyond it is discarded. Resolves with the new state once every byte is durable.
   */
  appendResumable(
    key: string,
    state: ResumableState,
    offset: number,
    body: AsyncIterable<Buffer>,
  ): Promise<ResumableState>;
  /** Joins a finished upload's bytes into one object of `size` bytes at `key`. Idempotent. */
  completeResumable(key: string, state: ResumableState, size: number): Promise<void>;
  /** Deletes whatever a resumable upload left in the store, at any stage. */
  discardResumable(key: string, state: ResumableState): Promise<void>;
  /**
   * Deletes resumable leftovers last touched before `before` whose upload `isLive` does not know:
   * what a crash between the store and the database left behind. Returns how many were removed.
   */
  sweepResumable(before: Date, isLive: (key: string) => Promise<boolean>): Promise<number>;
}

/** A store's own record of a resumable upload's progress (S3: its multipart upload and parts). */
export type ResumableState = Record<string, unknown>;
