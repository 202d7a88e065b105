import { sql } from 'kysely';
import type { Executor } from '../db/database';

export interface DueCheckpoint {
  seq: string | number;
  object_key: string;
  hash: string;
  attempts: number | null;
}

/**
 * Thin data access for the RFC 3161 timestamps of the audit checkpoints (`checkpoint_timestamps`).
 * The stamping horizon is the oldest checkpoint that ever got a row here, i.e. the first one
 * considered once a TSA was configured; with no row yet, only the newest checkpoint: history from
 * before a TSA was configured is never backfilled.
 */
export class CheckpointTimestampRepository {
  /**
   * Checkpoints from the horizon on without a token and due, newest first (only checkpoint `only`,
   * when given: one asked for on demand, which never moves the horizon back either).
   */
  async due(db: Executor, limit: number, only?: number): Promise<DueCheckpoint[]> {
    return db
      .selectFrom('audit_checkpoints as c')
      .leftJoin('checkpoint_timestamps as t', 't.seq', 'c.seq')
      .select(['c.seq', 'c.object_key', 'c.hash', 't.attempts'])
      .where('t.gen_time', 'is', null)
      .where((eb) =>
        eb.or([eb('t.seq', 'is', null), eb('t.next_attempt_at', '<=', sql<Date>`now()`)]),
      )
      .where(
        'c.seq',
        '>=',
        sql<number>`coalesce((select min(seq) from checkpoint_timestamps), (select max(seq) from audit_checkpoints))`,
      )
      .$if(only !== undefined, (q) => q.where('c.seq', '=', only!))
      .orderBy('c.seq', 'desc')
      .limit(limit)
      .execute();
  }

  /** Claims a checkpoint for `leaseMs` (another instance leaves it alone); false: not due any more. */
  async claim(db: Executor, seq: number, leaseMs: number): Promise<boolean> {
    const claimed = await sql<{ seq: string }>`
      insert into checkpoint_timestamps (seq, next_attempt_at)
      values (${seq}, now() + ${`${leaseMs} milliseconds`}::interval)
      on conflict (seq) do update set next_attempt_at = excluded.next_attempt_at
        where checkpoint_timestamps.gen_time is null
          and checkpoint_timestamps.next_attempt_at <= now()
      returning seq`.execute(db);
    return claimed.rows.length > 0;
  }

  /** Gives a claimed checkpoint back, due now, without counting an attempt (a run stopped early). */
  async release(db: Executor, seq: number): Promise<void> {
    await db
      .updateTable('checkpoint_timestamps')
      .set({ next_attempt_at: sql`now()` })
      .where('seq', '=', seq)
      .where('gen_time', 'is', null)
      .execute();
  }

  /** A failed attempt: counted, and the checkpoint is due again after `retryMs`. */
  async failed(db: Executor, seq: number, error: string, retryMs: number): Promise<void> {
    await db
      .updateTable('checkpoint_timestamps')
      .set({
        attempts: sql`attempts + 1`,
        last_error: error.slice(0, 2000),
        next_attempt_at: sql`now() + ${`${retryMs} milliseconds`}::interval`,
      })
      .where('seq', '=', seq)
      .where('gen_time', 'is', null)
      .execute();
  }

  async stamped(
    db: Executor,
    seq: number,
    s: {
      genTime: Date;
      authority: string;
      serial: string;
      signer: string;
      token: Buffer;
      objectKey: string;
    },
  ): Promise<void> {
    await db
      .updateTable('checkpoint_timestamps')
      .set({
        gen_time: s.genTime,
        authority: s.authority,
        serial: s.serial,
        signer: s.signer,
        token: s.token,
        object_key: s.objectKey,
        last_error: null,
      })
      .where('seq', '=', seq)
      .execute();
  }

  /** A checkpoint's token, when it was stamped. */
  async token(db: Executor, seq: number) {
    return db
      .selectFrom('checkpoint_timestamps')
      .select(['token', 'gen_time', 'authority'])
      .where('seq', '=', seq)
      .where('gen_time', 'is not', null)
      .executeTakeFirst();
  }

  /** Every checkpoint recorded as stamped (what `verify-audit` expects a token in the store for). */
  async stampedSeqs(db: Executor): Promise<number[]> {
    const rows = await db
      .selectFrom('checkpoint_timestamps')
      .select('seq')
      .where('gen_time', 'is not', null)
      .orderBy('seq')
      .execute();
    return rows.map((r) => Number(r.seq));
  }

  /** The newest stamped checkpoint. */
  async latest(db: Executor) {
    return db
      .selectFrom('checkpoint_timestamps')
      .select(['seq', 'gen_time', 'authority', 'object_key'])
      .where('gen_time', 'is not', null)
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** How many checkpoints from the horizon on have no token yet (due or backing off). */
  async pending(db: Executor): Promise<number> {
    const r = await db
      .selectFrom('audit_checkpoints as c')
      .leftJoin('checkpoint_timestamps as t', 't.seq', 'c.seq')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('t.gen_time', 'is', null)
      .where(
        'c.seq',
        '>=',
        sql<number>`coalesce((select min(seq) from checkpoint_timestamps), (select max(seq) from audit_checkpoints))`,
      )
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }
}
