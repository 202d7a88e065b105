import type { KeyObject } from 'node:crypto';
import type { Db, Executor } from '../db/database';
import type { BlobStore } from '../storage/blob-store';
import type { AuditRepository } from './audit.repository';
import { canonicalJson, chainHash, GENESIS_HASH } from './audit-chain';
import { chainedFormOf } from './audit.service';
import { CHECKPOINT_PREFIX, type SignedCheckpoint } from './checkpoint.service';
import { fingerprintOf, verifySignature } from './signing-key';

export type ChainProblemKind =
  | 'gap'
  | 'prev_hash_mismatch'
  | 'hash_mismatch'
  | 'head_mismatch'
  | 'checkpoint_unreadable'
  | 'checkpoint_bad_signature'
  | 'checkpoint_wrong_key'
  | 'checkpoint_mismatch'
  | 'checkpoint_beyond_chain'
  | 'checkpoint_missing';

export interface ChainProblem {
  kind: ChainProblemKind;
  seq?: number;
  key?: string;
  message: string;
}

export interface ChainReport {
  ok: boolean;
  eventsChecked: number;
  headSeq: number;
  checkpointsChecked: number;
  lastCheckpoint: { seq: number; signedAt: string } | null;
  problemCount: number;
  /** The first link that does not hold, in chain order: where to start looking. */
  firstBrokenLink: ChainProblem | null;
  problems: ChainProblem[];
  checkedAt: string;
}

const PAGE = 5000;
const MAX_PROBLEMS = 1000;

export interface AuditVerifierDeps {
  db: Db;
  repo: AuditRepository;
  store: BlobStore;
  publicKey: KeyObject;
}

/**
 * Recomputes the audit chain from the first event and checks it against every signed checkpoint
 * in the blob store, trusting neither the database's own hashes nor its checkpoint table: only
 * the public key given. A chain recomputed after rows were removed still hashes consistently, but
 * no longer reaches the hash a checkpoint signed at that sequence number.
 */
export class AuditVerifier {
  private readonly db: Db;
  private readonly repo: AuditRepository;
  private readonly store: BlobStore;
  private readonly publicKey: KeyObject;

  constructor(deps: AuditVerifierDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.store = deps.store;
    this.publicKey = deps.publicKey;
  }

  /**
   * Lists the signed checkpoints, then reads the whole trail in one repeatable-read snapshot: every
   * checkpoint listed was signed before the snapshot, so it must lie within the chain seen, and
   * events appended while this runs on a live system are not mistaken for tampering.
   */
  async verify(): Promise<ChainReport> {
    const listed = await this.store.listRecords(CHECKPOINT_PREFIX);
    return this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute((tx) => this.verifyIn(tx, listed));
  }

  private async verifyIn(db: Executor, listed: string[]): Promise<ChainReport> {
    const problems: ChainProblem[] = [];
    const head = await this.repo.findHead(db);
    const checkpoints = await this.readCheckpoints(listed, problems);
    const bySeq = new Map(checkpoints.map((c) => [c.checkpoint.seq, c.checkpoint]));

    let expectedSeq = 1;
    let running = GENESIS_HASH;
    let checked = 0;
    let lastSeq = 0;
    let lastStoredHash = GENESIS_HASH;
    for (let after = 0; ;) {
      const rows = await this.repo.pageAfter(db, after, PAGE);
      for (const row of rows) {
        if (row.seq !== expectedSeq) {
          problems.push({
            kind: 'gap',
            seq: row.seq,
            message: `events ${expectedSeq}..${row.seq - 1} are missing`,
          });
        }
        if (row.prev_hash !== running) {
          problems.push({
            kind: 'prev_hash_mismatch',
            seq: row.seq,
            message: `event ${row.seq} does not link to the event before it`,
          });
        }
        const recomputed = chainHash(row.prev_hash, chainedFormOf(row));
        if (recomputed !== row.hash) {
          problems.push({
            kind: 'hash_mismatch',
            seq: row.seq,
            message: `event ${row.seq} was changed after it was written (its hash does not match its content)`,
          });
        }
        running = chainHash(running, chainedFormOf(row));
        // Report a broken link once, then follow the stored chain: one edit must not drown
        // every later event in reports.
        if (running !== row.hash) running = row.hash;
        const signed = bySeq.get(row.seq);
        if (signed && (signed.hash !== row.hash || signed.hash !== running)) {
          problems.push({
            kind: 'checkpoint_mismatch',
            seq: row.seq,
            message: `the chain at event ${row.seq} differs from the signed checkpoint of ${signed.signedAt}: events up to ${row.seq} were removed, inserted or rewritten`,
          });
        }
        expectedSeq = row.seq + 1;
        lastSeq = row.seq;
        lastStoredHash = row.hash;
        checked++;
      }
      if (rows.length < PAGE) break;
      after = rows.at(-1)!.seq;
    }

    for (const c of checkpoints) {
      if (c.checkpoint.seq > lastSeq) {
        problems.push({
          kind: 'checkpoint_beyond_chain',
          seq: c.checkpoint.seq,
          message: `a checkpoint signed event ${c.checkpoint.seq}, but the chain ends at ${lastSeq}: events were removed`,
        });
      }
    }
    if (!head || head.seq !== lastSeq || head.hash !== lastStoredHash) {
      problems.push({
        kind: 'head_mismatch',
        seq: head?.seq,
        message: `the chain head (${head?.seq ?? 'none'}) is not the last event (${lastSeq})`,
      });
    }
    const recorded = await this.repo.checkpointKeys(db);
    const present = new Set(listed);
    if (recorded.some((r) => !present.has(r.object_key))) {
      // Signed between the listing and the snapshot: a second listing finds them.
      for (const key of await this.store.listRecords(CHECKPOINT_PREFIX)) present.add(key);
    }
    for (const r of recorded) {
      if (!present.has(r.object_key)) {
        problems.push({
          kind: 'checkpoint_missing',
          seq: r.seq,
          key: r.object_key,
          message: `checkpoint ${r.object_key} is recorded in the database but missing from the store`,
        });
      }
    }

    const ordered = [...problems]
      .sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity))
      .slice(0, MAX_PROBLEMS);
    const last = checkpoints.at(-1)?.checkpoint;
    return {
      ok: problems.length === 0,
      problemCount: problems.length,
      eventsChecked: checked,
      headSeq: lastSeq,
      checkpointsChecked: checkpoints.length,
      lastCheckpoint: last ? { seq: last.seq, signedAt: last.signedAt } : null,
      firstBrokenLink: ordered[0] ?? null,
      problems: ordered,
      checkedAt: new Date().toISOString(),
    };
  }

  /** Every checkpoint in the store whose signature holds; the others become problems. */
  private async readCheckpoints(
    keys: string[],
    problems: ChainProblem[],
  ): Promise<SignedCheckpoint[]> {
    const fingerprint = fingerprintOf(this.publicKey);
    const valid: SignedCheckpoint[] = [];
    let previous: { seq: number; hash: string } | null = null;
    for (const key of keys) {
      let parsed: SignedCheckpoint;
      try {
        parsed = JSON.parse(
          (await this.store.getRecord(key))!.toString('utf8'),
        ) as SignedCheckpoint;
        if (typeof parsed.checkpoint?.seq !== 'number' || typeof parsed.signature !== 'string') {
          throw new Error('not a checkpoint');
        }
      } catch {
        problems.push({
          kind: 'checkpoint_unreadable',
          key,
          message: `${key} is not a checkpoint`,
        });
        continue;
      }
      const { checkpoint } = parsed;
      if (checkpoint.keyFingerprint !== fingerprint) {
        problems.push({
          kind: 'checkpoint_wrong_key',
          key,
          seq: checkpoint.seq,
          message: `${key} names signing key ${checkpoint.keyFingerprint}, not the trusted key ${fingerprint}`,
        });
        continue;
      }
      if (!verifySignature(this.publicKey, canonicalJson(checkpoint), parsed.signature)) {
        problems.push({
          kind: 'checkpoint_bad_signature',
          key,
          seq: checkpoint.seq,
          message: `${key} was altered: its signature does not verify`,
        });
        continue;
      }
      if (
        (previous?.seq ?? null) !== (checkpoint.previous?.seq ?? null) ||
        (previous?.hash ?? null) !== (checkpoint.previous?.hash ?? null)
      ) {
        problems.push({
          kind: 'checkpoint_missing',
          key,
          seq: checkpoint.seq,
          message: `the checkpoint before ${key} (event ${checkpoint.previous?.seq}) is missing from the store`,
        });
      }
      previous = { seq: checkpoint.seq, hash: checkpoint.hash };
      valid.push(parsed);
    }
    return valid;
  }
}
