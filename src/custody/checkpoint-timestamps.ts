import { sql } from 'kysely';
import { canonicalJson } from '../base/audit-chain';
import type { Logger } from '../base/logger';
import type { Db } from '../db/database';
import type { CustodyRecordStore } from '../storage/record-store';
import type { SignedCheckpoint } from './checkpoint.service';
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
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(deps: CheckpointTimestampsDeps) {
    this.db = deps.db;
    this.store = deps.store;
    this.tsa = deps.tsa;
    this.logger = deps.logger;
  }

  get configured(): boolean {
    return Boolean(this.tsa);
  }

  /** Starts a stamping run in the background (after a checkpoint): errors are logged only. */
  soon(): void {
    if (!this.tsa || this.closed) return;
    this.stampDue().catch((err: unknown) =>
      this.logger.error({ err }, 'stamping audit checkpoints failed'),
    );
  }

  /**
   * Stamps the checkpoints that have no token and are due (only checkpoint `only`, when given: a
   * bundle asking for its own); one run at a time per instance.
   */
  stampDue(limit = 50, only?: number): Promise<StampReport> {
    const run = this.chain.then(() => this.run(limit, only));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async run(limit: number, only?: number): Promise<StampReport> {
    const report: StampReport = { stamped: [], failed: [] };
    if (!this.tsa) return report;
    const due = await this.db
      .selectFrom('audit_checkpoints as c')
      .leftJoin('checkpoint_timestamps as t', 't.seq', 'c.seq')
      .select(['c.seq', 'c.object_key', 'c.hash', 't.attempts'])
      .where('t.gen_time', 'is', null)
      .where((eb) =>
        eb.or([eb('t.seq', 'is', null), eb('t.next_attempt_at', '<=', sql<Date>`now()`)]),
      )
      .$if(only !== undefined, (q) => q.where('c.seq', '=', only!))
      .orderBy('c.seq')
      .limit(limit)
      .execute();
    for (const row of due) {
      if (this.closed) break; // what is left stays queued for the next instance or start
      const seq = Number(row.seq);
      // A lease: another instance leaves it alone while this one asks (every URL may time out).
      const leaseMs = this.tsa.urls.length * this.tsa.timeoutMs + 60_000;
      const claimed = await sql<{ seq: string }>`
        insert into checkpoint_timestamps (seq, next_attempt_at)
        values (${seq}, now() + ${`${leaseMs} milliseconds`}::interval)
        on conflict (seq) do update set next_attempt_at = excluded.next_attempt_at
          where checkpoint_timestamps.gen_time is null
            and checkpoint_timestamps.next_attempt_at <= now()
        returning seq`.execute(this.db);
      if (claimed.rows.length === 0) continue;
      try {
        await this.stampOne(seq, row.object_key, row.hash);
        report.stamped.push(seq);
      } catch (err) {
        const attempts = (row.attempts ?? 0) + 1;
        const message = (err as Error).message;
        await this.db
          .updateTable('checkpoint_timestamps')
          .set({
            attempts: sql`attempts + 1`,
            last_error: message.slice(0, 2000),
            next_attempt_at: sql`now() + ${`${retryDelayMs(attempts)} milliseconds`}::interval`,
          })
          .where('seq', '=', seq)
          .where('gen_time', 'is', null)
          .execute();
        this.logger.error(
          { seq, attempts, err: message },
          'audit checkpoint not timestamped yet: queued for a retry',
        );
        report.failed.push(seq);
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
        ...(await this.tsa!.verify(key, existing, data)),
      };
    } else {
      stamp = await this.tsa!.stamp(data);
      await this.store.putRecord(key, stamp.response);
    }
    await this.db
      .updateTable('checkpoint_timestamps')
      .set({
        gen_time: stamp.genTime,
        authority: stamp.authority,
        serial: stamp.serial,
        signer: stamp.signer,
        token: stamp.response,
        object_key: key,
        last_error: null,
      })
      .where('seq', '=', seq)
      .execute();
    this.logger.info(
      { seq, authority: stamp.authority, genTime: stamp.genTime.toISOString() },
      'audit checkpoint timestamped',
    );
  }

  /** At shutdown: starts nothing more and waits for the stamp being asked for, if any. */
  async close(): Promise<void> {
    this.closed = true;
    await this.chain;
  }

  /** A checkpoint's stored token, if it was stamped. */
  async tokenFor(
    seq: number,
  ): Promise<{ token: Buffer; genTime: Date; authority: string } | undefined> {
    const row = await this.db
      .selectFrom('checkpoint_timestamps')
      .select(['token', 'gen_time', 'authority'])
      .where('seq', '=', seq)
      .where('gen_time', 'is not', null)
      .executeTakeFirst();
    if (!row?.token || !row.gen_time) return undefined;
    return { token: row.token, genTime: new Date(row.gen_time), authority: row.authority ?? '' };
  }

  /** The newest stamped checkpoint and the number still queued (for the status and metrics). */
  async summary(): Promise<{
    latest: { seq: number; genTime: Date; authority: string; objectKey: string } | null;
    pending: number;
  }> {
    const [latest, pending] = await Promise.all([
      this.db
        .selectFrom('checkpoint_timestamps')
        .select(['seq', 'gen_time', 'authority', 'object_key'])
        .where('gen_time', 'is not', null)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst(),
      this.db
        .selectFrom('audit_checkpoints as c')
        .leftJoin('checkpoint_timestamps as t', 't.seq', 'c.seq')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('t.gen_time', 'is', null)
        .executeTakeFirstOrThrow(),
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
      pending: Number(pending.n),
    };
  }
}
