import { canonicalJson } from '../base/audit-chain';
import type { Logger } from '../base/logger';
import type { Db } from '../db/database';
import type { CustodyRecordStore } from '../storage/record-store';
import type { SignedCheckpoint } from './checkpoint.service';
import { CheckpointTimestampRepository } from './checkpoint-timestamp.repository';
import type { TimestampAuthority } from './timestamp-authority';

export const TIMESTAMP_PREFIX = 'custody/timestamps/';
export const timestampKey = (seq: number) =>
  `${TIMESTAMP_PREFIX}${String(seq).padStart(20, '0')}.tsr`;

/** The first retry after 30 s, doubling up to an hour. */
export const retryDelayMs = (attempts: number) =>
  Math.min(30_000 * 2 ** Math.max(0, attempts - 1), 3_600_000);

/** The bytes a checkpoint's Ed25519 signature covers, and so the bytes its timestamp covers. */
export const signedBytes = (signed: SignedCheckpoint) =>
  Buffer.from(canonicalJson(signed.checkpoint), 'utf8');

export interface StampReport {
  stamped: number[];
  failed: number[];
}

export interface CheckpointTimestampsDeps {
  db: Db;
  store: CustodyRecordStore;
  /** Undefined: no timestamp authority configured, nothing is stamped. */
  tsa?: TimestampAuthority;
  logger: Logger;
  /** A stamping run starts no new checkpoint after this many ms (default 5 minutes). */
  budgetMs?: number;
}

/**
 * RFC 3161 timestamps of the audit checkpoints: each checkpoint gets a token over the exact bytes
 * that were signed, stored beside it (custody record store and `checkpoint_timestamps`). Never in
 * the way of a checkpoint: stamping runs after it, and a TSA that is down or slow leaves the
 * checkpoint queued with a growing delay (`retryDelayMs`) for the next run.
 */
export class CheckpointTimestamps {
  private readonly db: Db;
  private readonly store: CustodyRecordStore;
  readonly tsa?: TimestampAuthority;
  private readonly logger: Logger;
  private readonly repo = new CheckpointTimestampRepository();
  private readonly budgetMs: number;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** A background run (`soon`) is waiting for its turn. */
  private waiting = false;
  /** Aborts the request to the authority in flight, at close. */
  private readonly abort = new AbortController();

  constructor(deps: CheckpointTimestampsDeps) {
    this.db = deps.db;
    this.store = deps.store;
    this.tsa = deps.tsa;
    this.logger = deps.logger;
    this.budgetMs = deps.budgetMs ?? 300_000;
  }

  get configured(): boolean {
    return Boolean(this.tsa);
  }

  /**
   * Starts a stamping run in the background (after a checkpoint, from the checkpoint job): errors
   * are logged only. A run already waiting for its turn covers this call too, so runs never pile
   * up behind a slow authority.
   */
  soon(): void {
    if (!this.tsa || this.closed || this.waiting) return;
    this.waiting = true;
    this.stampDue(50, () => (this.waiting = false)).catch((err: unknown) =>
      this.logger.error({ err }, 'stamping audit checkpoints failed'),
    );
  }

  /** Stamps the checkpoints that have no token and are due; one run at a time per instance. */
  stampDue(limit = 50, onStart?: () => void): Promise<StampReport> {
    return this.enqueue(() => {
      onStart?.();
      return this.run(limit);
    });
  }

  /**
   * Stamps checkpoint `seq` now when it has no token and is due (a bundle asking for its own,
   * usually brand new): a run of that one checkpoint, in turn with the others.
   */
  stampCheckpoint(seq: number): Promise<StampReport> {
    return this.enqueue(() => this.run(1, seq));
  }

  /** One run at a time per instance. */
  private enqueue(start: () => Promise<StampReport>): Promise<StampReport> {
    const run = this.chain.then(start);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async run(limit: number, only?: number): Promise<StampReport> {
    const report: StampReport = { stamped: [], failed: [] };
    const tsa = this.tsa;
    if (!tsa || this.closed) return report;
    const deadline = Date.now() + this.budgetMs;
    const due = await this.repo.due(this.db, limit, only);
    for (const row of due) {
      // What is left stays queued (due) for the next run, instance or start.
      if (this.closed || Date.now() >= deadline) break;
      const seq = Number(row.seq);
      // A lease: another instance leaves it alone while this one asks (every URL may time out).
      const leaseMs = tsa.urls.length * tsa.timeoutMs + 60_000;
      if (!(await this.repo.claim(this.db, seq, leaseMs))) continue;
      try {
        await this.stampOne(seq, row.object_key, row.hash);
        report.stamped.push(seq);
      } catch (err) {
        if (this.closed) {
          // Aborted by close(): not the authority's fault, due again at the next start.
          await this.repo.release(this.db, seq);
          break;
        }
        const attempts = (row.attempts ?? 0) + 1;
        const message = (err as Error).message;
        await this.repo.failed(this.db, seq, message, retryDelayMs(attempts));
        this.logger.error(
          { seq, attempts, err: message },
          'audit checkpoint not timestamped yet: queued for a retry',
        );
        report.failed.push(seq);
        // Every authority failed (or the token was refused): asking again for the next ones now
        // would only hold this run for urls x timeout each; they stay queued for the next run.
        break;
      }
    }
    return report;
  }

  private async stampOne(seq: number, objectKey: string, hash: string): Promise<void> {
    const stored = await this.store.getRecord(objectKey);
    if (!stored) throw new Error(`checkpoint ${objectKey} is missing from the record store`);
    const signed = JSON.parse(stored.toString('utf8')) as SignedCheckpoint;
    if (signed.checkpoint.seq !== seq || signed.checkpoint.hash !== hash) {
      throw new Error(`checkpoint ${objectKey} does not match its row`);
    }
    const data = signedBytes(signed);
    const signedAt = new Date(signed.checkpoint.signedAt);
    const key = timestampKey(seq);
    // A run that stored a token but failed to record it left it behind: adopt it once verified.
    const existing = await this.store.getRecord(key);
    let stamp: {
      response: Buffer;
      genTime: Date;
      authority: string;
      serial: string;
      signer: string;
    };
    if (existing) {
      stamp = {
        response: existing,
        authority: 'adopted from the record store',
        ...(await this.tsa!.verify(key, existing, data, { notBefore: signedAt })),
      };
    } else {
      stamp = await this.tsa!.stamp(data, { notBefore: signedAt, signal: this.abort.signal });
      await this.store.putRecord(key, stamp.response);
    }
    await this.repo.stamped(this.db, seq, {
      genTime: stamp.genTime,
      authority: stamp.authority,
      serial: stamp.serial,
      signer: stamp.signer,
      token: stamp.response,
      objectKey: key,
    });
    this.logger.info(
      { seq, authority: stamp.authority, genTime: stamp.genTime.toISOString() },
      'audit checkpoint timestamped',
    );
  }

  /** At shutdown, first: starts nothing more (stamping stays queued), aborts a request in flight. */
  stop(): void {
    this.closed = true;
    this.abort.abort(new Error('shutting down'));
  }

  /** At shutdown: stops, then waits for the run in progress to record what it did. */
  async close(): Promise<void> {
    this.stop();
    await this.chain;
  }

  /** A checkpoint's stored token, if it was stamped. */
  async tokenFor(
    seq: number,
  ): Promise<{ token: Buffer; genTime: Date; authority: string } | undefined> {
    const row = await this.repo.token(this.db, seq);
    if (!row?.token || !row.gen_time) return undefined;
    return { token: row.token, genTime: new Date(row.gen_time), authority: row.authority ?? '' };
  }

  /** The newest stamped checkpoint and the number still queued (for the status and metrics). */
  async summary(): Promise<{
    latest: { seq: number; genTime: Date; authority: string; objectKey: string } | null;
    pending: number;
  }> {
    // With no authority configured nothing is awaiting a stamp (an earlier one still shows).
    const [latest, pending] = await Promise.all([
      this.repo.latest(this.db),
      this.tsa ? this.repo.pending(this.db) : 0,
    ]);
    return {
      latest: latest
        ? {
            seq: Number(latest.seq),
            genTime: new Date(latest.gen_time!),
            authority: latest.authority!,
            objectKey: latest.object_key!,
          }
        : null,
      pending,
    };
  }
}
