import type { EmbeddedDatabase } from '../../src/db/embedded-postgres';

export default async function globalTeardown(): Promise<void> {
  const db = (globalThis as Record<string, unknown>).__embeddedTestDb as
    EmbeddedDatabase | undefined;
  await db?.stop();
}
