import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** The first of the two int4 keys of per-digest locks ("blb"), apart from other advisory locks. */
const LOCK_SPACE = 0x626c62;

export interface BlobClaimRow {
  id: string;
  instance_id: string;
  sha256: string;
  /** Being dropped: committed before the blob's delete, finished (row deleted) after it. */
  dropping?: boolean;
}

/** Thin data access for claims on blobs being promoted: one query per method. */
export class BlobClaimRepository {
  /**
   * Serializes, until the transaction ends, everything that claims a digest's blob or decides to
   * delete it: a blob is never deleted between a new claim and that claim's promotion.
   */
  async lockDigest(tx: Executor, sha256: string): Promise<void> {
    const key = createHash('sha256').update(sha256).digest().readInt32BE(0);
    await sql`select pg_advisory_xact_lock(${LOCK_SPACE}::int, ${key}::int)`.execute(tx);
  }

  async insert(tx: Executor, claim: BlobClaimRow): Promise<void> {
    await tx.insertInto('blob_claims').values(claim).execute();
  }

  /** Deletes a claim; false when it was already gone (consumed by its item, or dropped). */
  async delete(tx: Executor, id: string): Promise<boolean> {
    const res = await tx.deleteFrom('blob_claims').where('id', '=', id).executeTakeFirst();
    return Number(res.numDeletedRows) === 1;
  }

  /** Consumes a claim for its item: false when it is gone or being dropped (its blob may go). */
  async consume(tx: Executor, id: string): Promise<boolean> {
    const res = await tx
      .deleteFrom('blob_claims')
      .where('id', '=', id)
      .where('dropping', '=', false)
      .executeTakeFirst();
    return Number(res.numDeletedRows) === 1;
  }

  /**
   * Marks a claim as being dropped, by the instance that drops it (a dropper that dies leaves it
   * to the others); false when it was already gone, consumed or being dropped.
   */
  async markDropping(tx: Executor, id: string, instanceId: string): Promise<boolean> {
    const res = await tx
      .updateTable('blob_claims')
      .set({ dropping: true, instance_id: instanceId })
      .where('id', '=', id)
      .where('dropping', '=', false)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Whether a drop of this digest's blob is under way (no claim may be placed until it ends). */
  async isDropping(tx: Executor, sha256: string): Promise<boolean> {
    const row = await tx
      .selectFrom('blob_claims')
      .select('id')
      .where('sha256', '=', sha256)
      .where('dropping', '=', true)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Whether anything still needs the blob of a digest: a row whose blob is not purged, another
   * claim not being dropped (a request promoting the same bytes), or an unarchived resumable upload whose bytes were
   * already promoted (its next attempt archives them from there).
   */
  async inUse(tx: Executor, sha256: string): Promise<boolean> {
    const { rows } = await sql<{ used: boolean }>`
      select exists (select 1 from evidence_items
                     where sha256 = ${sha256} and blob_purged_at is null)
          or exists (select 1 from blob_claims where sha256 = ${sha256} and not dropping)
          or exists (select 1 from resumable_uploads
                     where sha256 = ${sha256} and item_id is null) as used`.execute(tx);
    return rows[0]!.used;
  }

  /** Every claim but those of this instance's requests in flight, oldest first. */
  async notInFlight(db: Executor, inFlight: string[], limit: number): Promise<BlobClaimRow[]> {
    let q = db.selectFrom('blob_claims').select(['id', 'instance_id', 'sha256', 'dropping']);
    if (inFlight.length > 0) q = q.where('id', 'not in', inFlight);
    return q.orderBy('created_at').limit(limit).execute();
  }
}
