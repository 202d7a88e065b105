import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The SHA-256 of a tus upload is now kept in memory by the instance receiving it (node:crypto,
  // as fast as the multipart path) instead of a saveable state advanced on every PATCH; an upload
  // that moved between instances or outlived a crash is hashed by one read at its end. The digest
  // is recorded before the bytes are promoted, so a finish that is cut off afterwards still knows
  // their address.
  await db.schema.alterTable('resumable_uploads').dropColumn('hash_state').execute();
  await db.schema
    .alterTable('resumable_uploads')
    .addColumn('sha256', 'text', (c) => c.check(sql`sha256 ~ '^[0-9a-f]{64}$'`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('resumable_uploads').dropColumn('sha256').execute();
  await db.schema.alterTable('resumable_uploads').addColumn('hash_state', 'bytea').execute();
}
