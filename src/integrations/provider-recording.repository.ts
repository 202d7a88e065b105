import type { Insertable, Selectable } from 'kysely';
import type { Executor, ProviderRecordingsTable } from '../db/database';

export type ProviderRecordingRow = Selectable<ProviderRecordingsTable>;

/** Thin data access for provider_recordings: one query per method. */
export class ProviderRecordingRepository {
  /** Records a callback; false when this recording was announced before (a redelivery). */
  async insert(db: Executor, row: Insertable<ProviderRecordingsTable>): Promise<boolean> {
    const res = await db
      .insertInto('provider_recordings')
      .values(row)
      .onConflict((oc) => oc.columns(['provider', 'recording_sid']).doNothing())
      .executeTakeFirst();
    return (res.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async find(
    db: Executor,
    provider: string,
    recordingSid: string,
  ): Promise<ProviderRecordingRow | undefined> {
    return db
      .selectFrom('provider_recordings')
      .selectAll()
      .where('provider', '=', provider)
      .where('recording_sid', '=', recordingSid)
      .executeTakeFirst();
  }

  /** A page of recordings in one status, newest announcement first, after `beforeSeq`. */
  async list(
    db: Executor,
    q: { status: ProviderRecordingRow['status']; provider?: string; beforeSeq?: string },
    limit: number,
  ): Promise<ProviderRecordingRow[]> {
    let query = db
      .selectFrom('provider_recordings')
      .selectAll()
      .where('status', '=', q.status)
      .orderBy('seq', 'desc')
      .limit(limit);
    if (q.provider) query = query.where('provider', '=', q.provider);
    if (q.beforeSeq) query = query.where('seq', '<', q.beforeSeq);
    return query.execute();
  }

  async countByStatus(db: Executor): Promise<{ provider: string; status: string; n: number }[]> {
    return db
      .selectFrom('provider_recordings')
      .select(['provider', 'status', (eb) => eb.fn.countAll<string>().as('n')])
      .groupBy(['provider', 'status'])
      .execute()
      .then((rows) => rows.map((r) => ({ ...r, n: Number(r.n) })));
  }

  /** A recording announced `absent`, now completed after all: queued with its media URL. */
  async requeueAbsent(
    db: Executor,
    provider: string,
    recordingSid: string,
    v: {
      mediaUrl: string;
      details: Pick<
        Insertable<ProviderRecordingsTable>,
        'duration_seconds' | 'channels' | 'recording_source' | 'started_at'
      >;
      at: Date;
    },
  ): Promise<boolean> {
    const res = await db
      .updateTable('provider_recordings')
      .set({
        ...v.details,
        status: 'queued',
        media_url: v.mediaUrl,
        last_error: null,
        updated_at: v.at,
      })
      .where('provider', '=', provider)
      .where('recording_sid', '=', recordingSid)
      .where('status', '=', 'absent')
      .executeTakeFirst();
    return (res.numUpdatedRows ?? 0n) > 0n;
  }

  async update(
    db: Executor,
    provider: string,
    recordingSid: string,
    v: {
      status: ProviderRecordingRow['status'];
      itemId?: string;
      lastError: string | null;
      attempted: boolean;
      at: Date;
    },
  ): Promise<void> {
    await db
      .updateTable('provider_recordings')
      .set((eb) => ({
        status: v.status,
        ...(v.itemId ? { item_id: v.itemId } : {}),
        last_error: v.lastError,
        attempts: v.attempted ? eb('attempts', '+', 1) : eb.ref('attempts'),
        updated_at: v.at,
      }))
      .where('provider', '=', provider)
      .where('recording_sid', '=', recordingSid)
      .execute();
  }
}
