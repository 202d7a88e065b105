import type { Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // A claim being dropped: committed before its blob is deleted, so the request that held it can
  // no longer commit its row, and nobody claims the digest again until the delete is done.
  await db.schema
    .alterTable('blob_claims')
    .addColumn('dropping', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('blob_claims').dropColumn('dropping').execute();
}
