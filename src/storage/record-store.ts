import type { WormState } from './worm';

/**
 * Custody records (signed audit checkpoints) under `custody/`: small, written once, never
 * replaced, under WORM retention where the store has it.
 */
export interface CustodyRecordStore {
  /**
   * Writes a record. Writing identical bytes again is a no-op; different bytes throw. Resolves with
   * the record's WORM protection as read back from the store.
   */
  putRecord(key: string, body: Buffer): Promise<WormState>;
  getRecord(key: string): Promise<Buffer | undefined>;
  /** Record keys under a `custody/` prefix, ascending. */
  listRecords(prefix: string): Promise<string[]>;
}

const RECORD_KEY = /^custody\/[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** Record keys are ours, but are checked anyway: no traversal, nothing outside custody/. */
export function assertRecordKey(key: string): void {
  if (!RECORD_KEY.test(key) || key.split('/').some((part) => part === '..' || part === '.')) {
    throw new Error(`invalid custody record key: ${JSON.stringify(key)}`);
  }
}
