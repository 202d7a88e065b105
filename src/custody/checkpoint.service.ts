import type { Db, Executor } from '../db/database';
import type { Logger } from '../base/logger';
import type { CustodyRecordStore } from '../storage/record-store';
import { canonicalJson, chainHash, GENESIS_HASH } from '../base/audit-chain';
import { chainedFormOf } from '../base/audit.service';
import type { AuditRepository } from '../base/audit.repository';
import type { AuditLog } from '../base/audit.service';
import type { SigningKey } from './signing-key';

export const CHECKPOINT_PREFIX = 'custody/checkpoints/';
// Any constant: the advisory lock that lets one instance at a time write a checkpoint.
const CHECKPOINT_LOCK = 0x65766964;

import type { Checkpoint, SignedCheckpoint } from '../contract/custody.contract';

export type { Checkpoint, SignedCheckpoint };

export const checkpointKey = (seq: number) =>
  `${CHECKPOINT_PREFIX}${String(seq).padStart(20, '0')}.json`;

export interface CheckpointServiceDeps {
  db: Db;
  store: CustodyRecordStore;
  repo: AuditRepository;
  key: SigningKey;
  logger: Logger;
  /** Links the events waiting to be linked before the head is read. */
  audit: Pick<AuditLog, 'settle'>;
  /** Called after a checkpoint is committed (e.g. to have it timestamped); must not throw. */
  onWritten?: (written: SignedCheckpoint) => void;
}

/**
 * Writes the chain head, signed, into the custody record store under its own prefix (in production a
 * bucket with S3 Object Lock), where whoever administers the database cannot reach it. Deleting
 * audit rows and recomputing the chain then no longer matches a signed head.
 */
export class CheckpointService {
  private readonly db: Db;
  private readonly store: CustodyRecordStore;
  private readonly repo: AuditRepository;
  private readonly key: SigningKey;
  private readonly logger: Logger;
  private readonly audit: Pick<AuditLog, 'settle'>;
  private readonly onWritten?: (written: SignedCheckpoint) => void;

  constructor(deps: CheckpointServiceDeps) {
    this.db = deps.db;
    this.store = deps.store;
    this.repo = deps.repo;
    this.key = deps.key;
    this.logger = deps.logger;
    this.audit = deps.audit;
    this.onWritten = deps.onWritten;
  }

  /**
   * Makes sure the trail has its partitions for this month and the next three (with the
   * checkpoint job): an event in a month without one would land in the default partition.
   */
  async preparePartitions(): Promise<number> {
    return this.repo.preparePartitions(this.db);
  }

  /** Signs the current head unless it is already checkpointed; returns the checkpoint written. */
  async checkpoint(): Promise<SignedCheckpoint | undefined> {
    // Every event recorded before this run is linked first, so the head signed covers it.
    await this.audit.settle();
    // One connection, locked against other checkpoint runs from before the head is read until the
    // signed file's row commits: no run signs a head older than a file another run wrote.
    const written = await this.db.connection().execute(async (conn) => {
      await this.repo.lockCheckpoints(conn, CHECKPOINT_LOCK);
      try {
        return await this.signHead(conn);
      } finally {
        await this.repo.unlockCheckpoints(conn, CHECKPOINT_LOCK);
      }
    });
    // Not itself an audit event: that would move the head and make every run sign again.
    if (written) {
      this.logger.info({ seq: written.checkpoint.seq }, 'audit checkpoint signed');
      this.onWritten?.(written);
    }
    return written;
  }

  /**
   * Under the checkpoint lock: signs the head as of a synchronous commit (reads' events commit
   * without waiting for the WAL flush, and a signed file must never name an event a database
   * crash could still take back), unless it is already signed.
   */
  private async signHead(conn: Db): Promise<SignedCheckpoint | undefined> {
    const head = await this.repo.durableHead(conn);
    return conn.transaction().execute(async (tx) => {
      const latest = await this.repo.latestCheckpoint(tx);
      if (head.seq === 0 || (latest && latest.seq >= head.seq)) return undefined;
      // Never sign a head that does not follow from the last signed one: whatever was rewritten
      // in between would otherwise be blessed.
      await this.assertChainFrom(tx, latest ? { seq: latest.seq, hash: latest.hash } : null, head);
      const objectKey = checkpointKey(head.seq);
      // A run that wrote this file but failed to commit its row left it behind: adopt it.
      const existing = await this.store.getRecord(objectKey);
      let signed: SignedCheckpoint;
      if (existing) {
        signed = JSON.parse(existing.toString('utf8')) as SignedCheckpoint;
        if (
          signed.checkpoint.hash !== head.hash ||
          signed.checkpoint.keyFingerprint !== this.key.fingerprint
        ) {
          throw new Error(`checkpoint ${objectKey} exists and does not sign the current head`);
        }
      } else {
        const checkpoint: Checkpoint = {
          version: 1,
          type: 'evidence-archive.audit-checkpoint',
          seq: head.seq,
          hash: head.hash,
          signedAt: new Date().toISOString(),
          keyFingerprint: this.key.fingerprint,
          previous: latest ? { seq: latest.seq, hash: latest.hash } : null,
        };
        signed = { checkpoint, signature: this.key.sign(canonicalJson(checkpoint)) };
        const worm = await this.store.putRecord(
          objectKey,
          Buffer.from(`${JSON.stringify(signed, null, 2)}\n`),
        );
        // Read back by the store: loud, and on /readyz and the metrics, never silent.
        if (worm.status === 'not_in_force') {
          this.logger.error({ objectKey }, 'checkpoint stored WITHOUT Object Lock retention');
        }
      }
      await this.repo.insertCheckpoint(tx, {
        seq: head.seq,
        hash: head.hash,
        signed_at: signed.checkpoint.signedAt,
        key_fingerprint: this.key.fingerprint,
        object_key: objectKey,
      });
      return signed;
    });
  }

  /**
   * Whether events were recorded after the newest checkpoint (linked, or waiting to be): three
   * one-row reads, cheap to poll.
   */
  async pending(): Promise<boolean> {
    const head = await this.repo.head(this.db);
    const latest = await this.repo.latestCheckpoint(this.db);
    if (head.seq > (latest?.seq ?? 0)) return true;
    return (await this.repo.lastPendingId(this.db)) !== undefined;
  }

  /** A checkpoint as stored under its object key, or undefined when the store has none there. */
  async stored(objectKey: string): Promise<SignedCheckpoint | undefined> {
    const stored = await this.store.getRecord(objectKey);
    return stored ? (JSON.parse(stored.toString('utf8')) as SignedCheckpoint) : undefined;
  }

  /** Recomputes the events after `from` up to `head`; throws at the first that does not chain. */
  private async assertChainFrom(
    db: Executor,
    from: { seq: number; hash: string } | null,
    head: { seq: number; hash: string },
  ): Promise<void> {
    let running = from?.hash ?? GENESIS_HASH;
    let expected = (from?.seq ?? 0) + 1;
    for (;;) {
      const rows = await this.repo.eventsAfter(db, expected - 1, head.seq, 5000);
      for (const row of rows) {
        if (row.seq !== expected || row.prev_hash !== running) {
          throw new Error(`audit chain broken at event ${row.seq}: refusing to sign a checkpoint`);
        }
        running = chainHash(running, chainedFormOf(row));
        if (running !== row.hash) {
          throw new Error(`audit event ${row.seq} was altered: refusing to sign a checkpoint`);
        }
        expected++;
      }
      if (rows.length < 5000) break;
    }
    if (expected - 1 !== head.seq || running !== head.hash) {
      throw new Error(
        `the audit chain head does not match its events: refusing to sign a checkpoint`,
      );
    }
  }
}
