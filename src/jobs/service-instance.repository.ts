import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** The first of the two int4 keys of instance locks ("ins"), apart from the tus upload locks. */
export const INSTANCE_LOCK_SPACE = 0x696e73;

/** Whether the instance lock with this key is held by some session in this database. */
export const held = (lockKey: ReturnType<typeof sql.ref>) => sql<boolean>`exists (
  select 1 from pg_locks l
  where l.locktype = 'advisory' and l.granted and l.objsubid = 2
    and l.database = (select oid from pg_database where datname = current_database())
    and l.classid = ${INSTANCE_LOCK_SPACE}::int::oid and l.objid = ${lockKey}::oid)`;

/**
 * The registered instances as other sessions see them: an instance is alive while some session
 * holds its advisory lock. (The instance's own session is InstanceRegistry's, on a connection of
 * its own.)
 */
export class ServiceInstanceRepository {
  async isHeld(db: Executor, id: string): Promise<boolean> {
    const { rows } = await sql<{ id: string }>`
      select i.id from service_instances i
      where i.id = ${id}::uuid and ${held(sql.ref('i.lock_key'))}`.execute(db);
    return rows.length > 0;
  }

  /** Deletes the rows of instances whose lock nobody holds; returns how many. */
  async deleteGone(db: Executor): Promise<number> {
    const res = await sql`
      delete from service_instances i where not ${held(sql.ref('i.lock_key'))}`.execute(db);
    return Number(res.numAffectedRows ?? 0);
  }
}
