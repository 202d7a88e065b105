import { type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // When each key was last used, so an admin can see which keys are idle before revoking them.
  // Written by authentication at most once a minute per key and instance, never on every request.
  // evidence_app already holds update on api_keys (table-wide, so this column is covered).
  await db.schema.alterTable('api_keys').addColumn('last_used_at', 'timestamptz').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_keys').dropColumn('last_used_at').execute();
}
