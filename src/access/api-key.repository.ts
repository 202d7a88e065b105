import type { Executor, Role } from '../db/database';

export class ApiKeyRepository {
  async insert(db: Executor, k: { id: string; name: string; role: Role; secretHash: string }) {
    await db
      .insertInto('api_keys')
      .values({ id: k.id, name: k.name, role: k.role, secret_hash: k.secretHash })
      .execute();
  }

  async findActive(db: Executor, id: string) {
    return db
      .selectFrom('api_keys')
      .select(['id', 'name', 'role', 'secret_hash'])
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
  }

  async revoke(db: Executor, id: string, at: Date): Promise<boolean> {
    const res = await db
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  }

  async list(db: Executor) {
    return db
      .selectFrom('api_keys')
      .select(['id', 'name', 'role', 'created_at', 'revoked_at', 'last_used_at'])
      .orderBy('created_at')
      .execute();
  }

  /** Records a use; a row already marked within the last minute (by any instance) is left alone. */
  async touch(db: Executor, id: string, at: Date): Promise<void> {
    await db
      .updateTable('api_keys')
      .set({ last_used_at: at })
      .where('id', '=', id)
      .where((eb) =>
        eb.or([
          eb('last_used_at', 'is', null),
          eb('last_used_at', '<', new Date(at.getTime() - 60_000)),
        ]),
      )
      .execute();
  }
}
