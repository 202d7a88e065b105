import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import type { BlobStore } from '../storage/blob-store';
import { canonicalJson } from './audit-chain';
import type { AuditRepository } from './audit.repository';
import type { SigningKey } from './signing-key';

export const CHECKPOINT_PREFIX = 'custody/checkpoints/';
// Any constant: the advisory lock that lets one instance at a time write a checkpoint.
const CHECKPOINT_LOCK = 0x65766964;

export interface Checkpoint {
  version: 1;
  type: 'evidence-archive.audit-checkpoint';
  seq: number;
  hash: string;
  signedAt: string;
  keyFingerprint: string;
  /** The checkpoint before this one, so a removed checkpoint file is noticed too. */
  previous: { seq: number; hash: string } | null;
}

export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  /** Ed25519 over canonicalJson(checkpoint), base64. */
  signature: string;
}

export const checkpointKey = (seq: number) =>
  `${CHECKPOINT_PREFIX}${String(seq).padStart(20, '0')}.json`;

/**
 * Writes the chain head, signed, into the blob store under its own prefix (in production a
 * bucket with S3 Object Lock), where whoever administers the database cannot reach it. Deleting
 * audit rows and recomputing the chain then no longer matches a signed head.
 */
export class CheckpointService {
  constructor(
    private readonly db: Db,
    private readonly store: BlobStore,
    private readonly repo: AuditRepository,
    private readonly key: SigningKey,
    private readonly logger: Logger,
  ) {}

  /** Signs the current head unless it is already checkpointed; returns the checkpoint written. */
  async checkpoint(): Promise<SignedCheckpoint | undefined> {
    const written = await this.db.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${CHECKPOINT_LOCK})`.execute(tx);
      const head = await this.repo.head(tx);
      const latest = await this.repo.latestCheckpoint(tx);
      if (head.seq === 0 || (latest && latest.seq >= head.seq)) return undefined;
      const checkpoint: Checkpoint = {
        version: 1,
        type: 'evidence-archive.audit-checkpoint',
        seq: head.seq,
        hash: head.hash,
        signedAt: new Date().toISOString(),
        keyFingerprint: this.key.fingerprint,
        previous: latest ? { seq: latest.seq, hash: latest.hash } : null,
      };
      const signed: SignedCheckpoint = {
        checkpoint,
        signature: this.key.sign(canonicalJson(checkpoint)),
      };
      const objectKey = checkpointKey(head.seq);
      await this.store.putRecord(objectKey, Buffer.from(`${JSON.stringify(signed, null, 2)}\n`));
      await this.repo.insertCheckpoint(tx, {
        seq: head.seq,
        hash: head.hash,
        signed_at: checkpoint.signedAt,
        key_fingerprint: this.key.fingerprint,
        object_key: objectKey,
      });
      return signed;
    });
    // Not itself an audit event: that would move the head and make every run sign again.
    if (written) this.logger.info({ seq: written.checkpoint.seq }, 'audit checkpoint signed');
    return written;
  }
}
