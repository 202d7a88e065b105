import type { Tx } from '../db/database';

/** Told of every newly archived item: in its transaction, and once it has committed. */
export interface ArchiveListener {
  inTransaction(tx: Tx, item: { id: string; sha256: string }): Promise<void>;
  afterCommit(itemId: string): void;
}
