import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** A live item beside what the audit trail recorded of it. */
export interface ItemBesideTrail {
  id: string;
  sha256: string;
  size_bytes: number;
  blob_key: string;
  received_at: Date;
  /** Its `evidence.create` event (the first successful one), or null when the trail has none. */
  creation_seq: number | null;
  created_sha256: string | null;
  created_size: string | null;
}

/** Thin data access for checking items against the trail: one query per method. */
export class AuditItemsRepository {
  /**
   * A page of live items after `afterId` in id order, each with its creation event found by the
   * trail's item index: memory stays one page whatever the archive's size.
   */
  async pageBesideTrail(db: Executor, afterId: string, limit: number): Promise<ItemBesideTrail[]> {
    const { rows } = await sql<ItemBesideTrail>`
      select e.id, e.sha256, e.size_bytes::float8 as size_bytes, e.blob_key, e.received_at,
             c.seq::float8 as creation_seq, c.details->>'sha256' as created_sha256,
             c.details->>'size' as created_size
        from evidence_items e
        left join lateral (
          -- As AuditRepository.creationOf: the item's first hundred events, then the rest.
          (select a.seq, a.details
             from (select seq, occurred_at from audit_event_items
                    where item_id = e.id::text order by seq limit 100) i
             join audit_events a on a.seq = i.seq and a.occurred_at = i.occurred_at
            where a.item_ids @> array[e.id::text] and a.action = 'evidence.create'
              and a.outcome = 'success'
            order by i.seq limit 1)
          union all
          (select a.seq, a.details from audit_event_items i
             join audit_events a on a.seq = i.seq and a.occurred_at = i.occurred_at
            where i.item_id = e.id::text and a.item_ids @> array[e.id::text]
              and a.action = 'evidence.create' and a.outcome = 'success'
            order by i.seq limit 1)
          limit 1
        ) c on true
       where e.deleted_at is null and e.id > ${afterId}::uuid
       order by e.id
       limit ${limit}`.execute(db);
    return rows;
  }

  /**
   * The item's creation event as recorded, if it still waits to be linked (an upload committed
   * after the verifier linked what was waiting, before its snapshot): what it recorded of the item.
   * A scan of the waiting events, which are few, and only for an item the chain has no creation for.
   */
  async waitingCreation(
    db: Executor,
    itemId: string,
  ): Promise<{ created_sha256: string | null; created_size: string | null } | undefined> {
    const { rows } = await sql<{ created_sha256: string | null; created_size: string | null }>`
      select details->>'sha256' as created_sha256, details->>'size' as created_size
        from audit_pending
       where item_ids @> array[${itemId}]::text[] and action = 'evidence.create'
         and outcome = 'success'
       order by id limit 1`.execute(db);
    return rows[0];
  }

  /** When the trail began: items received before have no creation event. */
  async trailStartedAt(db: Executor): Promise<Date | null> {
    const { rows } = await sql<{ occurred_at: Date }>`
      select occurred_at from audit_events order by seq limit 1`.execute(db);
    return rows[0]?.occurred_at ?? null;
  }
}
