import { rmSync } from 'node:fs';
import type { EmbeddedDatabase } from '../../src/db/embedded-postgres';
import { stopCeph } from './ceph';

export default async function globalTeardown(): Promise<void> {
  const ceph = (globalThis as Record<string, unknown>).__cephDir as string | undefined;
  if (ceph) stopCeph(ceph);
  const started = (globalThis as Record<string, unknown>).__embeddedTestDb as
    { db: EmbeddedDatabase; dir: string } | undefined;
  if (!started) return;
  await started.db.stop();
  rmSync(started.dir, { recursive: true, force: true });
}
