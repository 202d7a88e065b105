import type { KeyObject } from 'node:crypto';
import type { Db, Executor } from '../db/database';
import type { AuditRepository } from '../base/audit.repository';
import type { CustodyRecordStore } from '../storage/record-store';
import { canonicalJson, chainHash, GENESIS_HASH } from '../base/audit-chain';
import { chainedFormOf, type AuditLog } from '../base/audit.service';
import { CHECKPOINT_PREFIX, type SignedCheckpoint } from './checkpoint.service';
import { fingerprintOf, verifySignature } from './signing-key';
import { blobKeyFor } from '../storage/blob-store';
import type { AuditItemsRepository } from './audit-items.repository';
import { CheckpointTimestampRepository } from './checkpoint-timestamp.repository';
import { signedBytes, TIMESTAMP_PREFIX, timestampKey } from './checkpoint-timestamps';
import { certificatesFromPem, verifyTimestampResponse } from './timestamp-authority';

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
  | 'checkpoint_missing'
  | 'item_mismatch'
  | 'item_unrecorded'
  | 'timestamp_invalid'
  | 'timestamp_orphan'
  | 'timestamp_missing';

export interface ChainProblem {
  kind: ChainProblemKind;
  seq?: number;
  key?: string;
  itemId?: string;
  message: string;
}

/** Events after the newest signed checkpoint: a deletion of them would not (yet) be detected. */
export interface NotYetCovered {
  count: number;
  oldestSeq: number;
  oldestAt: string;
  oldestAgeSeconds: number;
}

/** The checkpoints' RFC 3161 tokens (custody records under custody/timestamps/). */
export interface TrustedTimeReport {
  /** Tokens found in the store. */
  tokens: number;
  /** Tokens verified against the TSA roots given (null: no roots given, tokens not checked). */
  verified: number | null;
  /** The newest checkpoint whose token verified: it existed no later than `genTime`. */
  newest: { seq: number; genTime: string; signer: string } | null;
  /** Signed checkpoints from the first stamped one on that have no token (yet): not a problem. */
  unstamped: number;
}

export interface ChainReport {
  ok: boolean;
  eventsChecked: number;
  headSeq: number;
  checkpointsChecked: number;
  lastCheckpoint: { seq: number; signedAt: string } | null;
  /** Events no signed checkpoint covers yet (null: none). Not a problem by itself. */
  notYetCovered: NotYetCovered | null;
  /** Live items compared with their creation events (null: items were not checked). */
  itemsChecked: number | null;
  /** Live items received before the trail began, which have no creation event to compare. */
  itemsBeforeTrail: number;
  trustedTime: TrustedTimeReport;
  problemCount: number;
  /** The first link that does not hold, in chain order: where to start looking. */
  firstBrokenLink: ChainProblem | null;
  problems: ChainProblem[];
  checkedAt: string;
}

const PAGE = 5000;
const ITEM_PAGE = 1000;
const MAX_PROBLEMS = 1000;

export interface AuditVerifierDeps {
  db: Db;
  repo: AuditRepository;
  store: CustodyRecordStore;
  items: AuditItemsRepository;
  /** Links the events waiting to be linked before the trail is read. */
  audit: Pick<AuditLog, 'settle'>;
}

/**
 * Recomputes the audit chain from the first event and checks it against every signed checkpoint
 * in the custody record store, trusting neither the database's own hashes nor its checkpoint table: only
 * the public key given. A chain recomputed after rows were removed still hashes consistently, but
 * no longer reaches the hash a checkpoint signed at that sequence number.
 */
export class AuditVerifier {
  private readonly db: Db;
  private readonly repo: AuditRepository;
  private readonly store: CustodyRecordStore;
  private readonly items: AuditItemsRepository;
  private readonly audit: Pick<AuditLog, 'settle'>;
  private readonly timestamps = new CheckpointTimestampRepository();

  constructor(deps: AuditVerifierDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.store = deps.store;
    this.items = deps.items;
    this.audit = deps.audit;
  }

  /**
   * Lists the signed checkpoints, then reads the whole trail in one repeatable-read snapshot: every
   * checkpoint listed was signed before the snapshot, so it must lie within the chain seen, and
   * events appended while this runs on a live system are not mistaken for tampering. With `items`
   * (the default), every live item is also compared with its creation event in the same snapshot.
   */
  async verify(
    publicKey: KeyObject,
    opts: { items?: boolean; tsaCaPem?: string } = {},
  ): Promise<ChainReport> {
    // Read first (a bad file is the caller's mistake, not a finding about the trail).
    const tsaRoots = opts.tsaCaPem === undefined ? undefined : certificatesFromPem(opts.tsaCaPem);
    if (tsaRoots?.length === 0) throw new Error('the TSA root file holds no certificate');
    // Tokens first: a token is written only after its checkpoint, so every token listed has its
    // checkpoint in the listing that follows (the other order would take one stamped in between
    // for an orphan).
    const tokens = await this.store.listRecords(TIMESTAMP_PREFIX);
    const listed = await this.store.listRecords(CHECKPOINT_PREFIX);
    // Every event recorded so far is linked, so the snapshot holds all of them.
    await this.audit.settle();
    const seen = await this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute((tx) => this.verifyIn(tx, listed, publicKey, opts.items ?? true));
    // The tokens are read and checked after the snapshot is let go: one store read and one
    // signature check each, which must not hold a transaction open for as long.
    const trustedTime = await this.checkTimestamps(
      seen.checkpoints,
      tokens,
      seen.recordedStamps,
      tsaRoots,
      seen.problems,
    );
    return seen.report(trustedTime);
  }

  private async verifyIn(
    db: Executor,
    listed: string[],
    publicKey: KeyObject,
    withItems: boolean,
  ): Promise<{
    checkpoints: SignedCheckpoint[];
    recordedStamps: number[];
    problems: ChainProblem[];
    report: (trustedTime: TrustedTimeReport) => ChainReport;
  }> {
    const problems: ChainProblem[] = [];
    const head = await this.repo.findHead(db);
    const checkpoints = await this.readCheckpoints(listed, problems, publicKey);
    const bySeq = new Map(checkpoints.map((c) => [c.checkpoint.seq, c.checkpoint]));
    const coveredUpTo = checkpoints.reduce((m, c) => Math.max(m, c.checkpoint.seq), 0);
    let uncovered = 0;
    let oldestUncovered: { seq: number; at: Date } | null = null;

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
        const form = chainedFormOf(row);
        const recomputed = chainHash(row.prev_hash, form);
        if (recomputed !== row.hash) {
          problems.push({
            kind: 'hash_mismatch',
            seq: row.seq,
            message: `event ${row.seq} was changed after it was written (its hash does not match its content)`,
          });
        }
        // One hash per event when the link holds (the usual case): the same input as above.
        running = running === row.prev_hash ? recomputed : chainHash(running, form);
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
        if (row.seq > coveredUpTo) {
          uncovered++;
          oldestUncovered ??= { seq: row.seq, at: new Date(row.occurred_at) };
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

    const itemCheck = withItems
      ? await this.checkItems(db, problems)
      : { checked: null, beforeTrail: 0 };
    const recordedStamps = await this.timestamps.stampedSeqs(db);

    const last = checkpoints.at(-1)?.checkpoint;
    const report = (trustedTime: TrustedTimeReport): ChainReport => {
      const ordered = [...problems]
        .sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity))
        .slice(0, MAX_PROBLEMS);
      return {
        ok: problems.length === 0,
        problemCount: problems.length,
        eventsChecked: checked,
        headSeq: lastSeq,
        checkpointsChecked: checkpoints.length,
        lastCheckpoint: last ? { seq: last.seq, signedAt: last.signedAt } : null,
        notYetCovered: oldestUncovered
          ? {
              count: uncovered,
              oldestSeq: oldestUncovered.seq,
              oldestAt: oldestUncovered.at.toISOString(),
              oldestAgeSeconds: Math.max(
                0,
                Math.round((Date.now() - oldestUncovered.at.getTime()) / 1000),
              ),
            }
          : null,
        itemsChecked: itemCheck.checked,
        itemsBeforeTrail: itemCheck.beforeTrail,
        trustedTime,
        firstBrokenLink: ordered[0] ?? null,
        problems: ordered,
        checkedAt: new Date().toISOString(),
      };
    };
    return { checkpoints, recordedStamps, problems, report };
  }

  /**
   * Compares every live item's hash, size and blob key with what its creation event recorded (the
   * blob key: the content address of that hash, where a repair writes the genuine bytes too), a
   * page of items at a time. An item received after the trail began without a creation
   * event is a problem too: rows inserted behind the service's back.
   */
  private async checkItems(
    db: Executor,
    problems: ChainProblem[],
  ): Promise<{ checked: number; beforeTrail: number }> {
    const trailStart = await this.items.trailStartedAt(db);
    let checked = 0;
    let beforeTrail = 0;
    for (let after = '00000000-0000-0000-0000-000000000000'; ;) {
      const rows = await this.items.pageBesideTrail(db, after, ITEM_PAGE);
      for (const row of rows) {
        checked++;
        // Recorded with the item and not yet linked (it committed after this run linked what
        // was waiting, before its snapshot): compared all the same.
        const waiting =
          row.creation_seq === null ? await this.items.waitingCreation(db, row.id) : undefined;
        if (waiting) Object.assign(row, waiting);
        else if (row.creation_seq === null) {
          if (trailStart && new Date(row.received_at) >= trailStart) {
            problems.push({
              kind: 'item_unrecorded',
              itemId: row.id,
              message: `item ${row.id} has no evidence.create event in the trail, though it was received after the trail began`,
            });
          } else beforeTrail++;
          continue;
        }
        const differences: string[] = [];
        if (row.created_sha256 !== row.sha256) {
          differences.push(`sha256 ${row.sha256} (recorded ${row.created_sha256})`);
        }
        if (Number(row.created_size) !== Number(row.size_bytes)) {
          differences.push(`size ${row.size_bytes} (recorded ${row.created_size})`);
        }
        // A repair writes the genuine bytes under the same content address, so the key never
        // moves: a repair event naming another key (one appended to the uncovered tail, say) must
        // not make a rewritten blob_key pass.
        let expectedKey: string | null;
        try {
          expectedKey = blobKeyFor(row.created_sha256 ?? '');
        } catch {
          expectedKey = null; // the recorded hash is no digest: the sha256 line says so
        }
        if (row.blob_key !== expectedKey) {
          differences.push(`blob key ${row.blob_key} (expected ${expectedKey ?? 'none'})`);
        }
        if (differences.length > 0) {
          problems.push({
            kind: 'item_mismatch',
            itemId: row.id,
            ...(row.creation_seq === null ? {} : { seq: row.creation_seq }),
            message: `item ${row.id} differs from its creation event ${row.creation_seq ?? '(recorded, not yet linked)'}: ${differences.join(', ')}`,
          });
        }
      }
      if (rows.length < ITEM_PAGE) break;
      after = rows.at(-1)!.id;
    }
    return { checked, beforeTrail };
  }

  /**
   * The checkpoints' RFC 3161 tokens, read from the store (not the database): with the TSA roots,
   * each must be a token over the exact bytes its checkpoint's signature covers, by a timeStamping
   * certificate chaining to those roots, dated no earlier than the checkpoint says it was signed
   * (less the clock skew allowed): then that checkpoint, and every event up to its `seq`, existed
   * no later than the token's time, on a third party's word. A token with no signed checkpoint,
   * and a checkpoint the database records as stamped whose token is gone, are problems too.
   */
  private async checkTimestamps(
    checkpoints: SignedCheckpoint[],
    listed: string[],
    recorded: number[],
    roots: ReturnType<typeof certificatesFromPem> | undefined,
    problems: ChainProblem[],
  ): Promise<TrustedTimeReport> {
    const bySeq = new Map(checkpoints.map((c) => [c.checkpoint.seq, c]));
    const present = new Set(listed);
    if (recorded.some((seq) => !present.has(timestampKey(seq)))) {
      // Stamped between the listing and the snapshot: a second listing finds them.
      for (const key of await this.store.listRecords(TIMESTAMP_PREFIX)) present.add(key);
    }
    for (const seq of recorded) {
      if (!present.has(timestampKey(seq))) {
        problems.push({
          kind: 'timestamp_missing',
          seq,
          key: timestampKey(seq),
          message: `checkpoint ${seq} is recorded as stamped, but its token ${timestampKey(seq)} is missing from the store`,
        });
      }
    }
    const stampedSeqs = new Set<number>();
    let verified = 0;
    let newest: TrustedTimeReport['newest'] = null;
    for (const key of listed) {
      const seq = Number(/(\d+)\.tsr$/.exec(key)?.[1]);
      const signed = bySeq.get(seq);
      if (!signed || key !== timestampKey(seq)) {
        problems.push({
          kind: 'timestamp_orphan',
          key,
          ...(Number.isSafeInteger(seq) ? { seq } : {}),
          message: `${key} is not the token of a signed checkpoint in the store`,
        });
        continue;
      }
      stampedSeqs.add(seq);
      if (!roots) continue;
      const token = await this.store.getRecord(key);
      try {
        if (!token) throw new Error(`${key} cannot be read`);
        const t = await verifyTimestampResponse(roots, key, token, signedBytes(signed), {
          notBefore: new Date(signed.checkpoint.signedAt),
        });
        verified++;
        if (!newest || seq > newest.seq) {
          newest = { seq, genTime: t.genTime.toISOString(), signer: t.signer };
        }
      } catch (err) {
        problems.push({
          kind: 'timestamp_invalid',
          seq,
          key,
          message: `the token of checkpoint ${seq} does not prove its time: ${(err as Error).message}`,
        });
      }
    }
    let first = Infinity;
    for (const seq of stampedSeqs) first = Math.min(first, seq);
    return {
      tokens: listed.length,
      verified: roots ? verified : null,
      newest,
      unstamped: checkpoints.filter(
        (c) => c.checkpoint.seq > first && !stampedSeqs.has(c.checkpoint.seq),
      ).length,
    };
  }

  /** Every checkpoint in the store whose signature holds; the others become problems. */
  private async readCheckpoints(
    keys: string[],
    problems: ChainProblem[],
    publicKey: KeyObject,
  ): Promise<SignedCheckpoint[]> {
    const fingerprint = fingerprintOf(publicKey);
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
      if (!verifySignature(publicKey, canonicalJson(checkpoint), parsed.signature)) {
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
