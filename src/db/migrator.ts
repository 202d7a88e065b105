import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FileMigrationProvider, Migrator, type Kysely } from 'kysely';
// pino's type, not base/logger's: db/ sits below base/, whose audit log is typed by this schema.
import type { Logger } from 'pino';

// Compiled layout: dist/src/db/migrator.js next to dist/migrations; under ts (tests): src/db next to migrations.
export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function migrateToLatest(db: Kysely<any>, logger: Logger): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
  });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) {
    if (r.status === 'Success') logger.info({ migration: r.migrationName }, 'migration applied');
    if (r.status === 'Error') logger.error({ migration: r.migrationName }, 'migration failed');
  }
  if (error) throw error instanceof Error ? error : new Error(String(error));
}
