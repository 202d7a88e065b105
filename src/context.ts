import { ApiKeyRepository } from './access/api-key.repository';
import { ApiKeyService } from './access/api-key.service';
import { SessionRepository } from './access/session.repository';
import { SessionService } from './access/session.service';
import type { AppConfig } from './base/config';
import { AuditRepository } from './base/audit.repository';
import { AuditLog } from './base/audit.service';
import { RefusalLimiter } from './access/refusal-limiter';
import { KeyBudgets } from './access/key-budgets';
import { AuditTrailService } from './custody/audit-trail.service';
import { AuditVerifier } from './custody/audit-verifier';
import { AuditItemsRepository } from './custody/audit-items.repository';
import { CheckpointService } from './custody/checkpoint.service';
import { CheckpointTimestamps } from './custody/checkpoint-timestamps';
import { TimestampAuthority } from './custody/timestamp-authority';
import { CUSTODY_QUEUES, CustodyJobs } from './custody/custody-jobs';
import { CustodyRunRepository } from './custody/custody-run.repository';
import { CustodyStatusRepository } from './custody/custody-status.repository';
import { CustodyStatusService } from './custody/custody-status.service';
import { DeletionRepository } from './custody/deletion.repository';
import { DeletionService } from './custody/deletion.service';
import { HoldRepository } from './custody/hold.repository';
import { HashPool } from './custody/hash-pool';
import { ComplaintWorkspaceService } from './complaints/complaint-workspace.service';
import { CoverageReportService } from './complaints/coverage-report';
import { CoverageRepository } from './complaints/coverage.repository';
import { ShareLinkRepository } from './share/share-link.repository';
import { ShareLinkService } from './share/share-link.service';
import { LookupService } from './lookup/lookup.service';
import { HoldService } from './custody/hold.service';
import { ScrubRepository } from './custody/scrub.repository';
import { ScrubService } from './custody/scrub.service';
import { ComplaintRepository } from './complaints/complaint.repository';
import { ComplaintService } from './complaints/complaint.service';
import { JOB_QUEUE_SCHEMA, JobQueue } from './jobs/job-queue';
import { IntegrityService } from './custody/integrity.service';
import { SigningKey } from './custody/signing-key';
import { createDb, usableRole, type Db } from './db/database';
import { EmbeddedDatabase } from './db/embedded-postgres';
import { grantJobQueue, loginReach, roleExists } from './db/logins';
import { migrateToLatest } from './db/migrator';
import { EvidenceRepository } from './evidence/evidence.repository';
import { EvidenceService } from './evidence/evidence.service';
import { SegmentRepository } from './evidence/segment.repository';
import { SegmentService } from './evidence/segment.service';
import { BundleRepository } from './bundles/bundle.repository';
import { BundleService } from './bundles/bundle.service';
import { IdempotencyRepository } from './evidence/idempotency.repository';
import { IngestService } from './ingest/ingest.service';
import { BlobClaimRepository } from './ingest/blob-claim.repository';
import { BlobClaims } from './ingest/blob-claims';
import { LeftoverSweep } from './ingest/leftover-sweep';
import { InstanceRegistry } from './jobs/instance-registry';
import { JobRunRepository } from './jobs/job-run.repository';
import { ServiceInstanceRepository } from './jobs/service-instance.repository';
import { ResumableUploadRepository } from './ingest/resumable/resumable-upload.repository';
import { ResumableUploadStore } from './ingest/resumable/resumable-upload.store';
import { UploadLocker } from './ingest/resumable/upload-locker';
import { UploadSweep } from './ingest/resumable/upload-sweep';
import { createLogger, type Logger } from './base/logger';
import { MediaFetcher } from './integrations/media-fetcher';
import { ProviderRecordingRepository } from './integrations/provider-recording.repository';
import { ProviderRecordingService } from './integrations/provider-recording.service';
import { TWILIO_QUEUE, TwilioService } from './integrations/twilio/twilio.service';
import { DerivativeRepository } from './media/derivative.repository';
import { DerivativeService } from './media/derivative.service';
import { FfmpegRepository } from './media/ffmpeg.repository';
import { ImageRepository } from './media/image.repository';
import { MEDIA_QUEUE, MediaJobs } from './media/media-jobs';
import { locateMediaTools, type ToolsStatus } from './media/media-tools';
import { MediaService } from './media/media.service';
import { ScratchRepository } from './media/scratch.repository';
import { Metrics } from './base/metrics';
import type { BlobStore } from './storage/blob-store';
import type { CustodyRecordStore } from './storage/record-store';
import type { ResumableStore } from './storage/resumable-store';
import { createStores } from './storage/stores';
import { WormLedger } from './storage/worm';
import { WormRepository } from './storage/worm.repository';
import { HealthRepository } from './db/health.repository';

export interface AppContext {
  config: AppConfig;
  logger: Logger;
  db: Db;
  /** The owner's connection URL: for migrations and the job queue's schema, never for requests. */
  databaseUrl: string;
  /**
   * The app's login (APP_DATABASE_URL, or the embedded server's `evidence_service`): requests,
   * workers, the job queue. The owner's URL when only DATABASE_URL is set (warned about).
   */
  appDatabaseUrl: string;
  blobStore: BlobStore;
  resumableStore: ResumableStore;
  recordStore: CustodyRecordStore;
  apiKeys: ApiKeyService;
  /** The web app's sign-ins (POST /v1/session): looked up in the database on every use. */
  sessions: SessionService;
  ingest: IngestService;
  evidence: EvidenceService;
  audit: AuditLog;
  auditRepo: AuditRepository;
  signingKey: SigningKey;
  /** True when no signing key was configured or found and `signingKey` is a throwaway. */
  signingKeyMissing: boolean;
  checkpoints: CheckpointService;
  /** RFC 3161 timestamps of the checkpoints (nothing is stamped without a configured TSA). */
  checkpointTimestamps: CheckpointTimestamps;
  trail: AuditTrailService;
  /** Recomputes the audit chain against the signed checkpoints (the scrub and verify-audit). */
  auditVerifier: AuditVerifier;
  integrity: IntegrityService;
  metrics: Metrics;
  complaints: ComplaintService;
  /** The complaint as support works it: timeline, suggestions, accepting them. */
  complaintWorkspace: ComplaintWorkspaceService;
  coverage: CoverageReportService;
  /** The console's one search box: items, orders and complaints by id, number or text. */
  lookup: LookupService;
  shareLinks: ShareLinkService;
  holds: HoldService;
  deletion: DeletionService;
  scrub: ScrubService;
  custodyStatus: CustodyStatusService;
  jobs: CustodyJobs;
  media: MediaService;
  twilio: TwilioService;
  /** Recordings providers announced, and what became of them (failed fetches, gaps). */
  providerRecordings: ProviderRecordingService;
  /** Resumable (tus) uploads: their store, the cluster-wide lock per upload, the expiry sweep. */
  uploads: ResumableUploadStore;
  uploadLocker: UploadLocker;
  uploadSweep: UploadSweep;
  derivatives: DerivativeService;
  segments: SegmentService;
  /** Dispute bundles: signed ZIPs of a complaint's evidence. */
  bundles: BundleService;
  mediaJobs: MediaJobs;
  scratch: ScratchRepository;
  /** This process among the instances sharing the database and store (its id names its staging). */
  instance: InstanceRegistry;
  /** Removes staging and orphan blobs that interrupted uploads left: main/worker start it. */
  leftovers: LeftoverSweep;
  /** The shared PostgreSQL job queue, when this process connects one. */
  queue?: JobQueue;
  /** WORM read-backs of this instance (S3 Object Lock): for /readyz and the metrics. */
  worm: WormLedger;
  /** Items counted by WORM state (/readyz counts those stored without it). */
  wormRepo: WormRepository;
  /** Whether the database answers (/readyz). */
  health: HealthRepository;
  shuttingDown: boolean;
  /** Per-address limit and counts of strangers' refusals (bad keys, share-link misses). */
  refusals: RefusalLimiter;
  /** Per-key budgets for expensive work (verification bytes, audit pages, bundle builds). */
  budgets: KeyBudgets;
  close(): Promise<void>;
}

/** What this process does with the context: the service, the worker and the CLIs differ. */
export interface ContextOptions {
  /** Apply pending migrations before returning (the service does; CLIs other than migrate do not). */
  migrate?: boolean;
  /** Generate the signing key on first start (the service does; CLIs never leave one behind). */
  createSigningKey?: boolean;
  /** Connect the PostgreSQL job queue (the service does; CLIs do not). Started by `jobs.start`. */
  jobQueue?: boolean;
  /**
   * With `migrate`: create or upgrade the job queue's schema and queues with the owner's login
   * (default: with `jobQueue`; `npm run migrate` does too).
   */
  jobQueueSchema?: boolean;
  /** Look for ffmpeg/ffprobe (the service and the worker do; CLIs need no media tools). */
  mediaTools?: boolean;
}

/** Parts that replace what the configuration would build (tests pass a store or a clock). */
export interface ContextOverrides {
  /** Default: a logger at the configured LOG_LEVEL. */
  logger?: Logger;
  /**
   * Used instead of the evidence blob store the configuration names (disk or S3); closed with the
   * context. The resumable and custody record stores stay the configured ones: a finished tus
   * upload is joined there and promoted through this store, so both must see the same staging.
   */
  blobStore?: BlobStore;
  /** Wraps the store, configured or given (tests use it to slow a real store down). */
  wrapBlobStore?: (store: BlobStore) => BlobStore;
  /** Wraps the configured resumable-upload store (tests use it to watch discards). */
  wrapResumableStore?: (store: ResumableStore) => ResumableStore;
  /** The clock of the services that take one (links, complaints, retention, ingest, media, audit, keys). */
  now?: () => Date;
  /** Used instead of the configured or generated custody signing key. */
  signingKey?: SigningKey;
}

async function loadSigningKey(
  config: AppConfig,
  logger: Logger,
  create: boolean,
): Promise<SigningKey | undefined> {
  if (config.custody.signingKeyPem) {
    try {
      return SigningKey.fromPem(config.custody.signingKeyPem);
    } catch (err) {
      throw new Error(`CUSTODY_SIGNING_KEY is not usable: ${(err as Error).message}`);
    }
  }
  if (!create) return SigningKey.load(config.custody.signingKeyFile);
  const { key, created } = await SigningKey.loadOrCreate(config.custody.signingKeyFile);
  if (created) {
    logger.warn(
      { file: config.custody.signingKeyFile, fingerprint: key.fingerprint },
      'generated a new custody signing key; back it up, and give every instance the same key',
    );
  }
  return key;
}

/**
 * The composition root shared by the service, the worker, the CLIs and the tests: the whole
 * object graph is built here from the configuration, and nowhere else.
 */
export const AppContext = {
  fromConfig,
};

async function fromConfig(
  config: AppConfig,
  options: ContextOptions = {},
  overrides: ContextOverrides = {},
): Promise<AppContext> {
  const logger = overrides.logger ?? createLogger(config.logLevel);
  const now = overrides.now;
  const nowMs = now && (() => now().getTime());
  const embedded = config.database.url
    ? undefined
    : await EmbeddedDatabase.start(config.dataDir, config.database.embeddedPort, logger, {
        appRole: config.databaseRole,
      });
  // The owner's login (migrations, the job queue's schema) and the app's (everything else).
  const databaseUrl =
    config.database.migrationUrl ?? config.database.url ?? embedded!.connectionString;
  const appDatabaseUrl =
    config.database.appUrl ?? embedded?.appConnectionString ?? config.database.url ?? databaseUrl;
  const twoLogins = appDatabaseUrl !== databaseUrl;
  let db: Db | undefined;
  let disposeTools: (() => Promise<void>) | undefined;
  let instance: InstanceRegistry | undefined;
  try {
    const owner = createDb(databaseUrl, 1);
    let role: string | undefined;
    let appRole: string | undefined;
    try {
      if (options.migrate) await migrateToLatest(owner, logger);
      appRole = config.databaseRole && (await usableRole(owner, config.databaseRole));
      if (options.migrate && (options.jobQueueSchema ?? options.jobQueue)) {
        await JobQueue.prepare({ connectionString: databaseUrl, logger }, [
          ...Object.values(CUSTODY_QUEUES).map((name) => ({ name, policy: 'singleton' as const })),
          { name: MEDIA_QUEUE, policy: 'stately' },
          { name: TWILIO_QUEUE, policy: 'stately' },
        ]);
        // To the role whoever holds it (the owner need not be a member to grant on its tables);
        // with one login pg-boss connects as the owner, and the role needs nothing there.
        const grantee = config.databaseRole;
        if (twoLogins && grantee && (await roleExists(owner, grantee))) {
          await grantJobQueue(owner, grantee, JOB_QUEUE_SCHEMA);
        }
      }
      // One login: switched to the role at connect (as before the two logins). Two: the app's
      // login holds the role's rights itself and can switch to nothing.
      role = twoLogins ? undefined : appRole;
    } finally {
      await owner.destroy();
    }
    if (config.databaseRole && !twoLogins && !role) {
      logger.warn(
        { role: config.databaseRole },
        "the least-privilege database role is missing or not granted; running with the connecting user's privileges",
      );
    }
    const appPool = (switchTo?: string) =>
      createDb(
        appDatabaseUrl,
        config.database.poolSize,
        (err) => logger.warn({ err }, 'idle database connection lost'),
        switchTo,
        config.database.queryTimeoutMs,
      );
    db = appPool(role);
    let reach = await loginReach(db, config.databaseRole);
    if (twoLogins && (reach.superuser || reach.owner) && appRole) {
      // The "app" URL is the owner after all (another spelling of the same login, or a login that
      // owns the schema): as with one login, switch to the role at connect, and warn below.
      await db.destroy();
      role = appRole;
      db = appPool(role);
      reach = await loginReach(db, config.databaseRole);
    }
    if (twoLogins && config.databaseRole && !reach.holdsRole && !reach.superuser) {
      throw new Error(
        `The app's database login ${reach.login} does not hold the role ${config.databaseRole}: as the owner, run GRANT ${config.databaseRole} TO ${reach.login}; (docs/operations.md, "Two database logins")`,
      );
    }
    if (reach.superuser || reach.owner) {
      logger.warn(
        { login: reach.login, superuser: reach.superuser },
        'the app connects to PostgreSQL as the owner of the schema' +
          (reach.superuser ? ' (a superuser)' : '') +
          ': any SQL injection could SET ROLE NONE (or RESET ROLE) and then drop the append-only triggers, rewrite the audit trail and the evidence hashes; set APP_DATABASE_URL to a login that owns nothing and holds evidence_app (docs/operations.md, "Two database logins")',
      );
    }
    const worm = new WormLedger();
    // Registered before anything is written: staging keys carry this instance's id.
    instance = new InstanceRegistry({
      connectionString: appDatabaseUrl,
      repo: new ServiceInstanceRepository(),
      logger,
      opts: { role },
    });
    await instance.start();
    const stores = await createStores(config, {
      worm,
      // Followed as it changes: a lost session registers under a new id. An instance that lost
      // its session registers again before staging, not at its next heartbeat: staging under the
      // given-up id would be refused at promotion (the first upload after a database restart
      // got 503 when it came before the heartbeat).
      stagingOwner: async () => {
        if (!instance!.registered) await instance!.heartbeat().catch(() => undefined);
        return instance!.id;
      },
    });
    const configured = overrides.blobStore ?? stores.blobs;
    const blobStore = overrides.wrapBlobStore?.(configured) ?? configured;
    const resumableStore = overrides.wrapResumableStore?.(stores.resumable) ?? stores.resumable;
    const recordStore = stores.records;
    const evidenceRepo = new EvidenceRepository();
    const auditRepo = new AuditRepository();
    const audit = new AuditLog({
      db,
      repo: auditRepo,
      logger,
      opts: { recordReads: config.custody.auditReads, now },
    });
    if (!config.custody.auditReads) {
      logger.warn('AUDIT_READS=false: views and downloads are NOT recorded (benchmarks only)');
    }
    const loadedKey =
      overrides.signingKey ??
      (await loadSigningKey(config, logger, options.createSigningKey ?? true));
    // Tools that found no key get one that signs nothing durable and say so (signingKeyMissing).
    const signingKey = loadedKey ?? SigningKey.ephemeral();
    const phone = { defaultPhoneRegion: config.defaultPhoneRegion };
    const pool = db;
    const metrics = new Metrics();
    const tsa = config.timestampAuthority;
    const checkpointTimestamps = new CheckpointTimestamps({
      db,
      store: recordStore,
      tsa: tsa && new TimestampAuthority({ ...tsa, logger }),
      logger,
    });
    const checkpoints = new CheckpointService({
      db,
      store: recordStore,
      repo: auditRepo,
      key: signingKey,
      logger,
      audit,
      onWritten: () => checkpointTimestamps.soon(),
    });
    const hasher = new HashPool();
    const integrity = new IntegrityService({
      db,
      store: blobStore,
      evidence: evidenceRepo,
      auditRepo,
      audit,
      metrics,
      hasher,
      logger,
    });
    // A full download whose bytes hash wrong marks the item damaged (integrity).
    const evidence = new EvidenceService({
      db,
      store: blobStore,
      repo: evidenceRepo,
      audit,
      opts: {
        ...phone,
        damage: integrity,
      },
    });
    const complaintRepo = new ComplaintRepository();
    const holdRepo = new HoldRepository();
    const holds = new HoldService({
      db,
      repo: holdRepo,
      evidence: evidenceRepo,
      complaints: complaintRepo,
      store: blobStore,
      audit,
      logger,
    });
    const tools: ToolsStatus & { dispose(): Promise<void> } =
      (options.mediaTools ?? true)
        ? await locateMediaTools({ ...config.media, tmpDir: config.media.scratchDir })
        : {
            available: false,
            reason: 'media tools are not used by this process',
            dispose: async () => undefined,
          };
    disposeTools = () => tools.dispose();
    if (!tools.available && (options.mediaTools ?? true)) logger.warn(tools.reason);
    else if (tools.available && !tools.tools.sandboxed) {
      logger.warn('prlimit not found: ffmpeg and ffprobe run without a memory ceiling');
    }
    const scratch = new ScratchRepository(config.media.scratchDir);
    const derivativeRepo = new DerivativeRepository();
    const segmentRepo = new SegmentRepository();
    const media = new MediaService({
      db,
      repo: derivativeRepo,
      segments: segmentRepo,
      store: blobStore,
      ffmpeg: tools.available
        ? new FfmpegRepository({
            tools: tools.tools,
            opts: {
              scratchRoot: config.media.scratchDir,
              probeTimeoutSeconds: config.media.probeTimeoutSeconds,
            },
          })
        : undefined,
      toolsProblem: tools.available ? undefined : tools.reason,
      images: new ImageRepository({
        maxInputPixels: config.media.maxInputPixels,
        scratchRoot: config.media.scratchDir,
      }),
      scratch,
      audit,
      logger,
      cfg: config.media,
      now,
    });
    const queue = options.jobQueue
      ? new JobQueue({
          // One login: the owner's, as pg-boss always had. Two: the app's, which cannot change
          // the queue's schema (made at the migrate step above).
          connectionString: twoLogins ? appDatabaseUrl : databaseUrl,
          migrate: !twoLogins,
          logger,
          queryTimeoutMs: config.database.queryTimeoutMs,
          runs: {
            db,
            repo: new JobRunRepository(),
            instanceId: () => instance!.id,
            everySeconds: config.custody.leftoverSweepSeconds,
          },
        })
      : undefined;
    const mediaJobs = new MediaJobs({
      db,
      repo: derivativeRepo,
      media,
      scratch,
      cfg: config.media,
      logger,
      queue,
    });
    const deletion = new DeletionService({
      db,
      repo: new DeletionRepository(),
      holds: holdRepo,
      evidence: evidenceRepo,
      store: blobStore,
      audit,
      logger,
      opts: { now, onPurge: (tx, itemId) => media.purgeDerivatives(tx, itemId) },
    });
    const auditVerifier = new AuditVerifier({
      db,
      repo: auditRepo,
      store: recordStore,
      items: new AuditItemsRepository(),
      audit,
    });
    const scrub = new ScrubService({
      db,
      store: blobStore,
      repo: new ScrubRepository(),
      verifier: auditVerifier,
      integrity,
      holds,
      audit,
      signingKey,
      logger,
    });
    mediaJobs.registerMetrics(metrics);
    const runs = new CustodyRunRepository();
    const custodyStatus = new CustodyStatusService({
      db,
      repo: new CustodyStatusRepository(),
      runs,
      auditRepo,
      audit,
      config,
      timestamps: checkpointTimestamps,
    });
    custodyStatus.registerMetrics(metrics);
    const wormRepo = new WormRepository();
    worm.registerMetrics(metrics, db, wormRepo);
    const jobs = new CustodyJobs({
      db,
      runs,
      scrub,
      deletion,
      checkpoints,
      timestamps: checkpointTimestamps,
      config,
      audit,
      logger,
      queue,
    });
    const claims = new BlobClaims({
      db,
      repo: new BlobClaimRepository(),
      store: blobStore,
      instance,
      logger,
      opts: {
        objectLock: config.storage.driver === 's3' && config.storage.s3.objectLock !== undefined,
      },
    });
    const leftovers = new LeftoverSweep({
      db,
      store: blobStore,
      instance,
      claims,
      logger,
      opts: {
        intervalSeconds: config.custody.leftoverSweepSeconds,
        stagingGraceHours: config.custody.stagingGraceHours,
      },
    });
    const ingest = new IngestService({
      db,
      store: blobStore,
      evidence: evidenceRepo,
      idempotency: new IdempotencyRepository(),
      audit,
      logger,
      opts: {
        ...phone,
        now,
        listener: mediaJobs,
        segments: segmentRepo,
        claims,
        repair: integrity,
        holds,
      },
    });
    const uploadLocker = new UploadLocker({
      connectionString: appDatabaseUrl,
      logger,
      opts: { role },
    });
    const uploads = new ResumableUploadStore({
      db,
      rows: new ResumableUploadRepository(),
      store: blobStore,
      resumable: resumableStore,
      ingest,
      locker: uploadLocker,
      hashes: hasher,
      logger,
      opts: {
        expiryMs: config.resumableExpiryHours * 3_600_000,
        onAbandonedDigest: (sha256) => claims.dropIfUnused(sha256),
      },
    });
    const uploadSweep = new UploadSweep({ uploads, logger });
    const providerRecordingRepo = new ProviderRecordingRepository();
    const providerRecordings = new ProviderRecordingService({
      db,
      repo: providerRecordingRepo,
      audit,
    });
    providerRecordings.registerMetrics(metrics);
    const twilio = new TwilioService({
      db,
      repo: providerRecordingRepo,
      keys: new ApiKeyRepository(),
      fetcher: new MediaFetcher(),
      ingest,
      store: blobStore,
      audit,
      logger,
      cfg: config,
      queue,
    });
    twilio.registerMetrics(metrics);
    const bundleRepo = new BundleRepository();
    const budgets = new KeyBudgets({ db, limits: config.keyBudgets, metrics, logger });
    const refusals = new RefusalLimiter({
      audit,
      logger,
      limits: config.refusalLimit,
      now: nowMs,
    });
    refusals.start();
    audit.startChaining();
    const sessions = new SessionService({
      db,
      repo: new SessionRepository(),
      audit,
      idleMs: config.session.idleMs,
      maxMs: config.session.maxMs,
      now: nowMs,
    });
    const ctx: AppContext = {
      config,
      logger,
      db,
      databaseUrl,
      appDatabaseUrl,
      blobStore,
      resumableStore,
      recordStore,
      worm,
      wormRepo,
      health: new HealthRepository(),
      apiKeys: new ApiKeyService({
        db,
        repo: new ApiKeyRepository(),
        audit,
        cacheTtlMs: config.authCacheTtlMs,
        sessions,
        now: nowMs,
      }),
      sessions,
      ingest,
      evidence,
      audit,
      auditRepo,
      signingKey,
      signingKeyMissing: !loadedKey,
      checkpoints,
      checkpointTimestamps,
      auditVerifier,
      trail: new AuditTrailService({ db, repo: auditRepo, audit, evidence }),
      integrity,
      metrics,
      complaints: new ComplaintService({
        db,
        repo: complaintRepo,
        holds: holdRepo,
        audit,
        opts: { ...phone, now },
      }),
      complaintWorkspace: new ComplaintWorkspaceService({
        db,
        complaints: complaintRepo,
        evidence: evidenceRepo,
        segments: segmentRepo,
        audit,
        opts: config,
      }),
      coverage: new CoverageReportService({
        db,
        repo: new CoverageRepository(),
        audit,
        opts: { suggestionWindowDays: config.suggestionWindowDays, now },
      }),
      lookup: new LookupService({
        db,
        evidence: evidenceRepo,
        segments: segmentRepo,
        complaintRepo,
        audit,
        opts: phone,
      }),
      shareLinks: new ShareLinkService({
        db,
        links: new ShareLinkRepository(),
        complaints: complaintRepo,
        evidence: evidenceRepo,
        segments: segmentRepo,
        store: blobStore,
        audit,
        bundles: {
          exists: async (id) => {
            const row = await bundleRepo.complaintOf(pool, id);
            return row && { complaintId: row.complaint_id };
          },
        },
        opts: { publicUrl: config.publicUrl, now, damage: integrity },
      }),
      holds,
      deletion,
      scrub,
      custodyStatus,
      jobs,
      media,
      twilio,
      providerRecordings,
      uploads,
      uploadLocker,
      uploadSweep,
      derivatives: new DerivativeService({
        db,
        repo: derivativeRepo,
        evidence,
        store: blobStore,
        audit,
        schedule: (id) => mediaJobs.schedule(id),
      }),
      segments: new SegmentService({
        db,
        repo: segmentRepo,
        evidence,
        evidenceRepo,
        store: blobStore,
        audit,
        media: mediaJobs,
      }),
      bundles: new BundleService({
        db,
        repo: bundleRepo,
        evidenceRepo,
        complaints: complaintRepo,
        segments: segmentRepo,
        store: blobStore,
        audit,
        auditRepo,
        checkpoints,
        key: signingKey,
        media,
        logger,
        damage: integrity,
        derivatives: derivativeRepo,
        timestamps: checkpointTimestamps,
      }),
      mediaJobs,
      scratch,
      instance,
      leftovers,
      queue,
      shuttingDown: false,
      refusals,
      budgets,
      async close() {
        // First: no new stamp is asked for and the request in flight is aborted (stays queued).
        checkpointTimestamps.stop();
        await refusals.close(); // its counts go to the trail while the database is still there
        await leftovers.stop();
        jobs.stop();
        mediaJobs.stop();
        await uploadSweep.stop();
        await uploadLocker.close();
        await queue?.stop();
        await tools.dispose();
        await integrity.drain(); // ranged reads' queued verifications
        await checkpointTimestamps.close(); // waits for the stopped run to record what it did
        await hasher.close();
        await blobStore.close();
        await audit.close(); // after the last events are recorded; links what is left
        // A store given by the caller replaced the configured one, which still owns its S3 client.
        if (configured !== stores.blobs) await stores.blobs.close();
        await instance!.close();
        await pool.destroy();
        await embedded?.stop();
      },
    };
    return ctx;
  } catch (err) {
    await instance?.close();
    await db?.destroy();
    await disposeTools?.();
    await embedded?.stop();
    throw err;
  }
}
