import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../../src/base/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/base/logger';
import { randomUUID } from 'node:crypto';
import { createDb } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrator';
import { InstanceRegistry } from '../../src/jobs/instance-registry';
import { JobQueue } from '../../src/jobs/job-queue';
import { JobRunRepository } from '../../src/jobs/job-run.repository';
import { ServiceInstanceRepository } from '../../src/jobs/service-instance.repository';
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

describe('the job queue on a fresh database', () => {
  it('is made by three instances starting at once, none failing (deadlock detected, before)', async () => {
    const database = await createTestDatabase();
    const logger = createLogger('silent');
    try {
      const queues = ['media-derive', 'custody-scrub', 'custody-checkpoint'].map((name) => ({
        name,
      }));
      const started = await Promise.allSettled(
        [1, 2, 3].map(() => JobQueue.prepare({ connectionString: database.url, logger }, queues)),
      );
      expect(started.map((s) => (s.status === 'rejected' ? String(s.reason) : 'ok'))).toEqual([
        'ok',
        'ok',
        'ok',
      ]);
    } finally {
      await database.drop();
    }
  });
});

describe('the jobs of a gone instance', () => {
  it('are failed with their retry by exactly one of the instances that see it gone', async () => {
    const database = await createTestDatabase();
    const logger = createLogger('silent');
    const db = createDb(database.url, 4);
    const repo = new JobRunRepository();
    await migrateToLatest(db, logger); // job_runs, service_instances
    // An instance that registered and died: its row is there, nobody holds its lock.
    const gone = randomUUID();
    await db.insertInto('service_instances').values({ id: gone, host: 'dead', pid: 1 }).execute();
    const queues = [1, 2].map(
      () =>
        new JobQueue({
          connectionString: database.url,
          logger,
          runs: { db, repo, instanceId: () => randomUUID(), everySeconds: 3600 },
        }),
    );
    try {
      for (const q of queues) {
        await q.start([{ name: 'reclaim-test', expireInSeconds: 3600, retryDelaySeconds: 1 }]);
      }
      const id = (await queues[0]!.send('reclaim-test'))!;
      // The job as the dead instance left it: active, its run recorded under its id.
      await sql`update pgboss.job set state = 'active', started_on = now() where id = ${id}`.execute(
        db,
      );
      await repo.insert(db, { jobId: id, queue: 'reclaim-test', instanceId: gone });
      // Both see it gone (the same listing, as when their sweeps overlap); one hands it back.
      const seen = await repo.listOfGoneInstances(db, 100);
      const listing = jest.spyOn(repo, 'listOfGoneInstances').mockResolvedValue(seen);
      const handedBack = await Promise.all(queues.map((q) => q.reclaimGone()));
      listing.mockRestore();
      expect(handedBack[0]! + handedBack[1]!).toBe(1);
      const job = await sql<{ state: string; retry_count: number }>`
        select state, retry_count from pgboss.job where id = ${id}`.execute(db);
      // Queued again for its retry (pg-boss counts the retry when a worker fetches it).
      expect(job.rows).toEqual([{ state: 'retry', retry_count: 0 }]);
      expect(await db.selectFrom('job_runs').selectAll().execute()).toEqual([]);
      // A live instance's runs are left alone.
      const live = new InstanceRegistry({
        connectionString: database.url,
        repo: new ServiceInstanceRepository(),
        logger,
      });
      await live.start();
      try {
        await repo.insert(db, { jobId: randomUUID(), queue: 'reclaim-test', instanceId: live.id });
        expect(await queues[0]!.reclaimGone()).toBe(0);
        expect(await db.selectFrom('job_runs').select('instance_id').execute()).toEqual([
          { instance_id: live.id },
        ]);
      } finally {
        await live.close();
      }
    } finally {
      for (const q of queues) await q.stop();
      await db.destroy();
      await database.drop();
    }
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
