import { ApiKeyRepository } from './access/api-key.repository';
import { ApiKeyService } from './access/api-key.service';
import type { AppConfig } from './config';
import { createDb, type Db } from './db/database';
import { EmbeddedDatabase } from './db/embedded-postgres';
import { migrateToLatest } from './db/migrator';
import { EvidenceRepository } from './evidence/evidence.repository';
import { EvidenceService } from './evidence/evidence.service';
import { IdempotencyRepository } from './evidence/idempotency.repository';
import { IngestService } from './ingest/ingest.service';
import type { Logger } from './logger';
import type { BlobStore } from './storage/blob-store';
import { FsBlobStore } from './storage/blob-store.fs';
import { createS3Client, S3BlobStore } from './storage/blob-store.s3';

export interface AppContext {
  config: AppConfig;
  logger: Logger;
  db: Db;
  blobStore: BlobStore;
  apiKeys: ApiKeyService;
  ingest: IngestService;
  evidence: EvidenceService;
  shuttingDown: boolean;
  close(): Promise<void>;
}

export interface ContextOptions {
  /** Apply pending migrations before returning (the service does; CLIs other than migrate do not). */
  migrate?: boolean;
  /** Wraps the configured blob store (tests use it to slow a real store down). */
  wrapBlobStore?: (store: BlobStore) => BlobStore;
}

export async function createBlobStore(config: AppConfig): Promise<BlobStore> {
  if (config.storage.driver === 's3') {
    return new S3BlobStore(createS3Client(config.storage.s3), config.storage.s3);
  }
  return new FsBlobStore(config.storage.root).init();
}

/** The composition root shared by the service, the CLIs and the tests. */
export async function buildContext(
  config: AppConfig,
  logger: Logger,
  options: ContextOptions = {},
): Promise<AppContext> {
  const embedded = config.database.url
    ? undefined
    : await EmbeddedDatabase.start(config.dataDir, config.database.embeddedPort, logger);
  const db = createDb(
    config.database.url ?? embedded!.connectionString,
    config.database.poolSize,
    (err) => logger.warn({ err }, 'idle database connection lost'),
  );
  try {
    if (options.migrate) await migrateToLatest(db, logger);
    const configured = await createBlobStore(config);
    const blobStore = options.wrapBlobStore?.(configured) ?? configured;
    const evidenceRepo = new EvidenceRepository();
    const phone = { defaultPhoneRegion: config.defaultPhoneRegion };
    const ctx: AppContext = {
      config,
      logger,
      db,
      blobStore,
      apiKeys: new ApiKeyService(db, new ApiKeyRepository(), config.authCacheTtlMs),
      ingest: new IngestService(
        db,
        blobStore,
        evidenceRepo,
        new IdempotencyRepository(),
        logger,
        phone,
      ),
      evidence: new EvidenceService(db, blobStore, evidenceRepo, phone),
      shuttingDown: false,
      async close() {
        await blobStore.close();
        await db.destroy();
        await embedded?.stop();
      },
    };
    return ctx;
  } catch (err) {
    await db.destroy();
    await embedded?.stop();
    throw err;
  }
}
