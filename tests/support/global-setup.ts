import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddedDatabase } from '../../src/db/embedded-postgres';
import { createLogger } from '../../src/base/logger';
import { cephWanted, selectedProjects, startCeph } from './ceph';
import { freePort } from './free-port';

/**
 * Tests need a real PostgreSQL: TEST_DATABASE_URL (CI points it at the machine's server) or,
 * with nothing configured, an embedded one in a temporary directory. Each suite then creates
 * its own database on that server.
 */
export default async function globalSetup(globalConfig: {
  rootDir: string;
  testPathPattern?: string;
}): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // Node 20 is our runtime
  // Ceph's S3 gateway boots in the background (about 20 s) while other suites run; the suites
  // that use it wait for it (tests/support/ceph.ts). Only when a selected test file needs it.
  // (Jest runs this once for the storage, api and e2e tiers, and not for unit and service alone.)
  const projects = selectedProjects(process.argv);
  if (
    !process.env.CEPH_DIR &&
    cephWanted(globalConfig.testPathPattern, globalConfig.rootDir, projects)
  ) {
    process.env.CEPH_DIR = await startCeph();
    (globalThis as Record<string, unknown>).__cephDir = process.env.CEPH_DIR;
  }
  if (process.env.TEST_DATABASE_URL) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'evidence-test-pg-'));
  chmodSync(dir, 0o755); // the embedded server runs as `postgres` when tests run as root
  const db = await EmbeddedDatabase.start(dir, await freePort(), createLogger('warn'));
  process.env.TEST_DATABASE_URL = db.connectionString;
  (globalThis as Record<string, unknown>).__embeddedTestDb = { db, dir };
}
