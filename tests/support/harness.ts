import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MintedKey } from '../../src/access/api-key.service';
import { loadConfig } from '../../src/base/config';
import { AppContext, type ContextOptions, type ContextOverrides } from '../../src/context';
import { createApp } from '../../src/http/app';
import { startServer, type RunningServer } from '../../src/http/server';
import { createLogger, type Logger } from '../../src/base/logger';
import { OpenApiValidator } from './openapi-validator';
import { rawS3Client, startS3Server, type TestS3 } from './s3-server';
import { createAppLogin, createTestDatabase } from './test-db';

export type Driver = 'fs' | 's3';
export const DRIVERS: Driver[] = ['fs', 's3'];

export interface TestApp {
  ctx: AppContext;
  url: string;
  server: RunningServer;
  keys: { ingest: MintedKey; ingest2: MintedKey; support: MintedKey; admin: MintedKey };
  dataDir: string;
  /** The owner's login (migrations; what a test uses to act behind the service's back). */
  databaseUrl: string;
  /** The service's own login (APP_DATABASE_URL): owns nothing, holds evidence_app. */
  appDatabaseUrl: string;
  s3?: TestS3;
  /**
   * Checks every response this app sends against src/http/openapi.json; `close()` fails with
   * what did not match. Call `openapi.assertClean()` to check earlier (e.g. in afterEach).
   */
  openapi: OpenApiValidator;
  close(): Promise<void>;
}

/** What the service's own start does not do (the job queue), and parts the test replaces. */
export interface TestAppOptions
  extends Pick<ContextOptions, 'jobQueue'>, Omit<ContextOverrides, 'logger'> {
  /** Validate responses against the OpenAPI document (default on; OPENAPI_VALIDATE=off: off). */
  validateResponses?: boolean;
  /** Default: silent (TEST_LOG_LEVEL). */
  logger?: Logger;
}

/**
 * The real service over real infrastructure: its own PostgreSQL database, the chosen blob store
 * (disk in a temp dir, or s3rver on loopback) and an HTTP server on a loopback port. Two logins,
 * as in production: the test server's owner migrates (DATABASE_URL) and the service runs as a
 * login of its own that owns nothing (APP_DATABASE_URL; `env` may set it empty for one login).
 */
export async function startTestApp(
  driver: Driver = 'fs',
  env: Record<string, string> = {},
  {
    validateResponses = process.env.OPENAPI_VALIDATE !== 'off',
    jobQueue,
    logger,
    ...overrides
  }: TestAppOptions = {},
): Promise<TestApp> {
  const database = await createTestDatabase();
  const login = await createAppLogin();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-data-'));
  const s3 = driver === 's3' ? await startS3Server() : undefined;
  const config = loadConfig({
    DATABASE_URL: database.url,
    APP_DATABASE_URL: login.url(database.url),
    DATA_DIR: dataDir,
    PORT: '0',
    LOG_LEVEL: 'silent',
    DATABASE_POOL_SIZE: '5',
    ...s3?.env,
    ...env,
  });
  const ctx = await AppContext.fromConfig(
    config,
    { migrate: true, jobQueue },
    { logger: logger ?? createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'), ...overrides },
  );
  const server = await startServer(createApp(ctx), config);
  const openapi = new OpenApiValidator();
  if (validateResponses) openapi.attach(server.server);
  const keys = {
    ingest: await ctx.apiKeys.create('ingest', 'PK-03'),
    ingest2: await ctx.apiKeys.create('ingest', 'PK-04'),
    support: await ctx.apiKeys.create('support', 'Agent Ana'),
    admin: await ctx.apiKeys.create('admin', 'Admin'),
  };
  // The keys' events linked before a test looks at the trail (a statement on audit_events right
  // away would otherwise find it empty while they wait, and a row trigger has no row to refuse).
  await ctx.audit.settle();
  return {
    ctx,
    url: server.url,
    server,
    keys,
    dataDir,
    databaseUrl: database.url,
    appDatabaseUrl: ctx.appDatabaseUrl,
    s3,
    openapi,
    async close() {
      await server.close(0);
      await ctx.close();
      await s3?.close();
      await database.drop();
      await login.drop();
      rmSync(dataDir, { recursive: true, force: true });
      openapi.assertClean();
    },
  };
}

export const bearer = (k: MintedKey) => ({ Authorization: `Bearer ${k.key}` });

/** Every object the blob store holds (promoted and staging), to prove nothing partial was kept. */
export async function storedKeys(app: TestApp): Promise<string[]> {
  return listStoreKeys(app.s3 ?? path.join(app.dataDir, 'blobs'));
}

/** Keys in an s3rver bucket, or files under a disk store's root. */
export async function listStoreKeys(target: TestS3 | string): Promise<string[]> {
  if (typeof target !== 'string') {
    const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(target);
    const res = await client.send(new ListObjectsV2Command({ Bucket: target.bucket }));
    client.destroy();
    return (res.Contents ?? []).map((o) => o.Key!).sort();
  }
  const { readdirSync } = await import('node:fs');
  return readdirSync(target, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(target, path.join(d.parentPath ?? d.path, d.name)))
    .sort();
}

/**
 * Staging keys once the staging area has stayed the same for half a second: the server may still
 * be opening, flushing or deleting a cut-off upload's staging file after the client is gone.
 */
export async function settledStaging(app: TestApp): Promise<string[]> {
  const staging = async () => (await storedKeys(app)).filter((k) => k.startsWith('staging/'));
  for (let quiet = 0, i = 0; quiet < 5 && i < 300; i++) {
    quiet = (await staging()).length === 0 ? quiet + 1 : 0;
    await new Promise((r) => setTimeout(r, 100));
  }
  return staging();
}

/** An item as the API shows it to a support key (GET /v1/evidence/{id}). */
export async function itemView(app: TestApp, id: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${app.url}/v1/evidence/${id}`, { headers: bearer(app.keys.support) });
  return (await res.json()) as Record<string, unknown>;
}

export async function itemCount(app: TestApp): Promise<number> {
  const row = await app.ctx.db
    .selectFrom('evidence_items')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The audit events of one action, oldest first. */
export async function auditEvents(app: TestApp, action: string) {
  await app.ctx.audit.settle(); // every event answered, linked
  return app.ctx.db
    .selectFrom('audit_events')
    .selectAll()
    .where('action', '=', action)
    .orderBy('seq')
    .execute();
}

/** Replaces a promoted blob's bytes behind the service's back, as a failing disk or an intruder would. */
export async function tamperWithBlob(app: TestApp, blobKey: string, bytes: Buffer): Promise<void> {
  if (app.s3) {
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(app.s3);
    await client.send(new PutObjectCommand({ Bucket: app.s3.bucket, Key: blobKey, Body: bytes }));
    client.destroy();
    return;
  }
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const file = path.join(app.dataDir, 'blobs', blobKey);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
}

/** Removes an object behind the service's back, as whoever administers the bucket or the disk would. */
export async function deleteFromStore(app: TestApp, key: string): Promise<void> {
  if (app.s3) {
    const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(app.s3);
    await client.send(new DeleteObjectCommand({ Bucket: app.s3.bucket, Key: key }));
    client.destroy();
    return;
  }
  rmSync(path.join(app.dataDir, 'blobs', key));
}
