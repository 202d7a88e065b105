import path from 'node:path';
import type { Db } from '../../src/db/database';
import { listStoreKeys } from './harness';
import type { TestS3 } from './s3-server';

/**
 * Evidence blobs (sha256/) no item row refers to, and staging objects: what a crash or a refused
 * upload must not leave behind. `store` is an s3rver bucket or a disk store's root.
 */
export async function leftovers(
  db: Db,
  store: TestS3 | string,
): Promise<{ orphans: string[]; staging: string[] }> {
  const keys = await listStoreKeys(store);
  const rows = await db.selectFrom('evidence_items').select('blob_key').execute();
  const known = new Set(rows.map((r) => r.blob_key));
  return {
    orphans: keys.filter((k) => k.startsWith('sha256/') && !known.has(k)),
    staging: keys.filter((k) => k.startsWith('staging/')),
  };
}

/** The store a test app or child service writes to: its s3rver, or blobs/ under its data dir. */
export const storeOf = (dataDir: string, s3?: TestS3): TestS3 | string =>
  s3 ?? path.join(dataDir, 'blobs');

/** Polls until `check` holds (or the time is up), then returns its last value. */
export async function eventually<T>(
  read: () => Promise<T>,
  check: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
}
