import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../../src/base/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/base/logger';
import { JobQueue } from '../../src/jobs/job-queue';
import { createTestDatabase } from '../support/test-db';

/**
 * The owner's migration step makes pg-boss's schema and queues; it must never reset the settings a
 * running service gave its queues (a 6-hour scrub slice expiring after one hour, retries lost),
 * and several instances running it at once must not fail each other.
 */
describe("the job queue's migration step", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const logger = createLogger('silent');
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  const settings = async (name: string) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        'select expire_seconds, retry_limit from pgboss.queue where name = $1',
        [name],
      );
      return rows[0];
    } finally {
      await client.end();
    }
  };

  it('creates missing queues and leaves existing ones as the service set them; concurrent runs all succeed', async () => {
    const queues = [{ name: 'custody-scrub', policy: 'singleton' as const }];
    await JobQueue.prepare({ connectionString: database.url, logger }, queues);
    // The service starts with its own settings.
    const service = new JobQueue({ connectionString: database.url, logger });
    try {
      await service.start([{ name: 'custody-scrub', expireInSeconds: 21_600, retryLimit: 8 }]);
    } finally {
      await service.stop();
    }
    expect(await settings('custody-scrub')).toEqual({ expire_seconds: 21_600, retry_limit: 8 });
    // `npm run migrate` (or another instance's start) runs the step again, three at once.
    await Promise.all(
      [1, 2, 3].map(() => JobQueue.prepare({ connectionString: database.url, logger }, queues)),
    );
    expect(await settings('custody-scrub')).toEqual({ expire_seconds: 21_600, retry_limit: 8 });
  });
});

describe('an app URL that is the owner after all', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('is treated as one login: the connections switch to evidence_app, and the risk is named', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'owner-as-app-'));
    const logger = createLogger('silent');
    const warn = jest.spyOn(logger, 'warn');
    // The owner's URL spelt another way: not a second login.
    const ctx = await AppContext.fromConfig(
      loadConfig({
        DATABASE_URL: database.url,
        APP_DATABASE_URL: `${database.url}?application_name=same-owner`,
        DATA_DIR: dataDir,
      }),
      { migrate: true, mediaTools: false },
      { logger },
    );
    try {
      const { rows } = await sql<{ u: string }>`select current_user as u`.execute(ctx.db);
      expect(rows[0]!.u).toBe('evidence_app');
      expect(warn.mock.calls.some((c) => String(c[1]).includes('as the owner of the schema'))).toBe(
        true,
      );
    } finally {
      await ctx.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
