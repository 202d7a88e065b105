import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const GiB = 1024 ** 3;

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** The longest interval of a scheduled custody job (checkpoint, scrub, retention): a day. */
export const MAX_JOB_INTERVAL_MINUTES = 1440;

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce
    .number({ invalid_type_error: 'must be a number' })
    .int('must be a whole number')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

const envSchema = z.object({
  NODE_ENV: z.string().default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: int(0, 65535).default(8080),
  PUBLIC_URL: z.string().url().optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  DATABASE_URL: z.string().url().optional(),
  APP_DATABASE_URL: z
    .string()
    .url()
    .describe(
      "The service's own login: owns nothing, granted evidence_app; requests, workers and the job queue connect with it",
    )
    .optional(),
  MIGRATION_DATABASE_URL: z
    .string()
    .url()
    .describe("The owner's login for migrations and the job queue's schema (default: DATABASE_URL)")
    .optional(),
  DATABASE_POOL_SIZE: int(1, 200).default(10),
  EMBEDDED_PG_PORT: int(1, 65535).default(54329),
  DATABASE_QUERY_TIMEOUT_MS: int(1000, 3_600_000).default(60_000),

  STORAGE_DRIVER: z.enum(['fs', 's3']).default('fs'),
  S3_ENDPOINT: z.string().url().optional(),
  S3_BUCKET: z.string().min(3).max(63).optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: bool.default('false'),
  S3_PREFIX: z
    .string()
    .regex(/^([A-Za-z0-9._-]+\/)*$/, 'must be empty or end with "/" (e.g. "evidence/")')
    .default(''),
  S3_PART_SIZE_BYTES: int(5 * 1024 * 1024, 5 * GiB).default(5 * 1024 * 1024),
  S3_UPLOAD_CONCURRENCY: int(1, 64).default(3),
  S3_REQUEST_TIMEOUT_MS: int(1000).default(120_000),
  S3_COPY_BYTES_PER_SECOND: int(1024).default(8 * 1024 * 1024),
  S3_OBJECT_LOCK_MODE: z.enum(['GOVERNANCE', 'COMPLIANCE']).optional(),
  S3_OBJECT_LOCK_RETENTION_DAYS: int(1, 36500).optional(),

  MAX_UPLOAD_BYTES: int(1).default(20 * GiB),
  RESUMABLE_UPLOAD_EXPIRY_HOURS: int(1, 24 * 30).default(72),
  DEFAULT_PHONE_REGION: z
    .string()
    .regex(/^[A-Z]{2}$/, 'must be a two-letter ISO 3166 country code such as "US" or "DE"')
    .optional(),

  HEADERS_TIMEOUT_MS: int(1000).default(20_000),
  SOCKET_IDLE_TIMEOUT_MS: int(1000).default(60_000),
  KEEP_ALIVE_TIMEOUT_MS: int(1000).default(5_000),
  REQUEST_TIMEOUT_MS: int(0).default(0),
  SHUTDOWN_GRACE_MS: int(0).default(25_000),
  AUTH_CACHE_TTL_MS: int(0, 300_000).default(5_000),
  // A web app session ends after this long without a request, and this long after sign-in at most.
  SESSION_IDLE_MINUTES: int(1, 1440).default(30),
  SESSION_MAX_HOURS: int(1, 720).default(12),
  // Express's "trust proxy": a hop count, or presets and addresses. Checked here, because express
  // reads "1" as an address (trusting nothing) and throws on "true" without naming the variable.
  TRUST_PROXY: z
    .string()
    .refine(
      isTrustProxy,
      'must be a hop count (1) or comma-separated loopback, linklocal, uniquelocal, addresses or CIDRs',
    )
    .transform((v) => (/^\d+$/.test(v) ? Number(v) : v))
    .optional(),
  // Origins whose pages may call the API (CORS): exact origins, comma-separated.
  CORS_ORIGINS: z
    .string()
    .transform((v, ctx) => {
      const origins: string[] = [];
      for (const raw of v.split(',').map((s) => s.trim())) {
        if (!raw) continue;
        const origin = parseOrigin(raw);
        if (!origin) {
          ctx.addIssue({
            code: z.ZodIssueCode.custom,
            message: `must be comma-separated origins such as https://dash.example.com (scheme and host, optional port; no path, no trailing slash, no wildcard); "${raw}" is not one`,
          });
          return z.NEVER;
        }
        origins.push(origin);
      }
      return [...new Set(origins)];
    })
    .optional(),
  // Strangers' refusals (no valid key, share-link misses) per client address and minute answered
  // one by one; beyond, 429 and one counted audit event per address and minute.
  REFUSAL_LIMIT_PER_MINUTE: int(1, 100_000).default(30),
  // Per-key budgets for expensive work (every role), shared by all instances.
  KEY_VERIFY_BYTES_PER_HOUR: int(1).default(50 * 1024 ** 3),
  KEY_AUDIT_PAGES_PER_MINUTE: int(1, 100_000).default(120),
  KEY_BUNDLE_BUILDS: int(1, 100).default(2),
  // About 1.5 KB at most per address tallied (measured: bench/refusal-limiter-memory.ts), so
  // ~140 MiB at the maximum.
  REFUSAL_LIMIT_MAX_ADDRESSES: int(1, 100_000).default(10_000),
  // Refusals recorded one by one per minute across all addresses (this instance); past it they
  // are answered as usual (or 429) but only counted in the per-address events.
  REFUSAL_LIMIT_GLOBAL_PER_MINUTE: int(1, 100_000).default(600),

  DATABASE_ROLE: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a PostgreSQL role name or "none"')
    .default('evidence_app'),
  CUSTODY_SIGNING_KEY: z.string().min(1).optional(),
  CUSTODY_SIGNING_KEY_FILE: z.string().min(1).optional(),
  CHECKPOINT_INTERVAL_MINUTES: int(1, MAX_JOB_INTERVAL_MINUTES).default(10),
  // A checkpoint covers every audit event within this many seconds of its being written.
  CHECKPOINT_MAX_LAG_SECONDS: int(2, 3600).default(60),
  TIMESTAMP_AUTHORITY_URLS: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(
      z.array(
        z
          .string()
          .url('must be URLs (http or https)')
          .regex(/^https?:\/\//i),
      ),
    )
    .optional(),
  TIMESTAMP_AUTHORITY_CA_FILE: z.string().min(1).optional(),
  TIMESTAMP_AUTHORITY_TIMEOUT_MS: int(500, 120_000).default(10_000),
  SCRUB_INTERVAL_MINUTES: int(1, MAX_JOB_INTERVAL_MINUTES).default(60),
  SCRUB_FULL_PASS_DAYS: int(1, 3650).default(30),
  STAGING_GRACE_HOURS: int(1, 24 * 30).default(24),
  LEFTOVER_SWEEP_SECONDS: int(5, 3600).default(60),
  RETENTION_INTERVAL_MINUTES: int(1, MAX_JOB_INTERVAL_MINUTES).default(60),
  RETENTION_DAYS_PACKING_VIDEO: int(0, 36500).default(180),
  RETENTION_DAYS_CALL_RECORDING: int(0, 36500).default(365),
  RETENTION_DAYS_PHOTO: int(0, 36500).default(365),
  RETENTION_AFTER_CLOSE_DAYS: int(0, 36500).default(90),
  SUGGESTION_WINDOW_DAYS: int(1, 365).default(14),
  AUDIT_READS: bool.default('true'),
  WORKERS: int(0, 64).default(1),
  FFMPEG_PATH: z.string().min(1).optional(),
  FFPROBE_PATH: z.string().min(1).optional(),
  MEDIA_CONCURRENCY: int(1, 64).optional(),
  // pg-boss expires jobs within 24 h, and a job runs several ffmpeg passes of up to this each.
  MEDIA_TIMEOUT_SECONDS: int(30, 20_000).default(3600),
  MEDIA_PROBE_TIMEOUT_SECONDS: int(5, 600).default(30),
  MEDIA_MEMORY_LIMIT_MB: int(256, 65_536).default(2048),
  MEDIA_MAX_INPUT_PIXELS: int(1_000_000, 268_402_689).default(40_000_000),
  MEDIA_SCRATCH_DIR: z.string().min(1).optional(),
  MEDIA_RETRY_DELAY_SECONDS: int(1, 3600).default(30),

  TWILIO_AUTH_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  TWILIO_WEBHOOK_SHARED_KEY_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  TWILIO_ACCOUNT_SID: z
    .string()
    .regex(/^AC[0-9a-f]{32}$/, 'must be a Twilio account SID (AC + 32 hex digits)')
    .optional(),
  TWILIO_INGEST_KEY_ID: z.string().min(1).optional(),
  TWILIO_MEDIA_HOSTS: z.string().min(1).default('api.twilio.com'),
  TWILIO_MEDIA_USERNAME: z.string().min(1).optional(),
  TWILIO_MEDIA_PASSWORD: z.string().min(1).optional(),
  TWILIO_MEDIA_FORMAT: z.enum(['wav', 'mp3']).default('wav'),
  MEDIA_FETCH_TIMEOUT_SECONDS: int(1, 3600).default(120),
  MEDIA_FETCH_ALLOW_PRIVATE: bool.default('false'),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  READY_MIN_FREE_DISK_PERCENT: int(0, 99).default(2),
  READY_MIN_FREE_DISK_BYTES: int(0).default(512 * 1024 * 1024),
});

export type Env = z.input<typeof envSchema>;

/** Every variable loadConfig reads; `.env.example` documents each one (tests/unit/env-example.test.ts). */
export const SETTING_NAMES: readonly string[] = Object.keys(envSchema.shape);

export interface S3Config {
  endpoint?: string;
  bucket: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
  prefix: string;
  partSizeBytes: number;
  uploadConcurrency: number;
  requestTimeoutMs: number;
  /**
   * The slowest rate (bytes/s) of a server-side copy in a healthy store: a copy may take
   * requestTimeoutMs + its size at this rate before it counts as not answering.
   */
  copyBytesPerSecond?: number;
  /** WORM: every evidence object and custody record is written with this Object Lock retention. */
  objectLock?: { mode: 'GOVERNANCE' | 'COMPLIANCE'; retentionDays: number };
}

export interface AppConfig {
  env: string;
  host: string;
  port: number;
  publicUrl?: string;
  dataDir: string;
  logLevel: string;
  database: {
    /** DATABASE_URL: the owner's login, and the app's too when APP_DATABASE_URL is unset. */
    url?: string;
    /** APP_DATABASE_URL: the login requests, workers and the job queue use (owns nothing). */
    appUrl?: string;
    /** MIGRATION_DATABASE_URL: the owner's login for migrations (default: url). */
    migrationUrl?: string;
    poolSize: number;
    embeddedPort: number;
    /** A query without an answer for this long fails (503): a frozen or partitioned server. */
    queryTimeoutMs: number;
  };
  storage: { driver: 'fs'; root: string } | { driver: 's3'; s3: S3Config };
  maxUploadBytes: number;
  /** How long a resumable (tus) upload may take from creation before it expires. */
  resumableExpiryHours: number;
  defaultPhoneRegion?: string;
  /** Calls from or to a complaint's customer this many days around its dates are suggested. */
  suggestionWindowDays: number;
  http: {
    headersTimeoutMs: number;
    socketIdleTimeoutMs: number;
    keepAliveTimeoutMs: number;
    requestTimeoutMs: number;
    shutdownGraceMs: number;
    trustProxy?: string | number;
    /** CORS: origins (as browsers send them) granted the API; empty: none. */
    corsOrigins: string[];
  };
  authCacheTtlMs: number;
  /** Web app sessions (POST /v1/session): idle timeout and absolute lifetime, in ms. */
  session: { idleMs: number; maxMs: number };
  /** Per client address and minute: refusals answered one by one, and addresses tallied. */
  refusalLimit: { perMinute: number; maxAddresses: number; globalPerMinute: number };
  /** Per-key budgets for expensive work (src/access/key-budgets.ts). */
  keyBudgets: { verifyBytesPerHour: number; auditPagesPerMinute: number; bundleBuilds: number };
  /** The least-privilege role the service switches to on every connection; undefined = none. */
  databaseRole?: string;
  custody: {
    signingKeyPem?: string;
    signingKeyFile: string;
    checkpointIntervalMinutes: number;
    checkpointMaxLagSeconds: number;
    scrubIntervalMinutes: number;
    scrubFullPassDays: number;
    stagingGraceHours: number;
    /** How often each instance removes what interrupted uploads left (and once at start-up). */
    leftoverSweepSeconds: number;
    auditReads: boolean;
  };
  /**
   * RFC 3161 timestamp authorities that stamp every audit checkpoint; undefined: none configured.
   * `caPem` holds the roots (PEM) a token's signer must chain to.
   */
  timestampAuthority?: { urls: string[]; caFile: string; caPem: string; timeoutMs: number };
  retention: {
    intervalMinutes: number;
    /** Days to keep each kind after receipt; 0 keeps it forever. */
    days: Record<'packing_video' | 'call_recording' | 'photo', number>;
    afterCloseDays: number;
  };
  /** Background jobs run in this process (scrub, retention, checkpoints, media); 0 = none. */
  workers: number;
  media: {
    ffmpegPath?: string;
    ffprobePath?: string;
    /** Media jobs at once in this process; one ffmpeg each. */
    concurrency: number;
    /** ffmpeg threads per job, so that concurrency × threads matches the cores. */
    threads: number;
    timeoutSeconds: number;
    probeTimeoutSeconds: number;
    memoryLimitMb: number;
    maxInputPixels: number;
    scratchDir: string;
    /** First retry of a failed media job after this; doubled each time. */
    retryDelaySeconds: number;
  };
  metricsToken?: string;
  /** The Twilio recording callback adapter; undefined when TWILIO_AUTH_TOKEN is unset. */
  twilio?: {
    authToken: string;
    /**
     * The secret of the SharedKey a Twilio Webhook Rule signs with, for callbacks that carry
     * X-Twilio-Webhooks-Signature-Settings (HMAC-SHA256 or SHA-1, as that header says).
     */
    sharedKeySecret?: string;
    accountSid?: string;
    /** The ingest key recordings are archived under (its receipts, its custody trail). */
    ingestKeyId: string;
    mediaHosts: string[];
    basicAuth?: { username: string; password: string };
    mediaFormat: 'wav' | 'mp3';
  };
  /** Fetching media a provider points at. */
  mediaFetch: { timeoutMs: number; allowPrivate: boolean };
  /** /readyz says not ready when DATA_DIR's (or the disk blob root's) file system has less free. */
  readiness: { minFreeDiskPercent: number; minFreeDiskBytes: number };
}

export class ConfigError extends Error {}

/** A value express's "trust proxy" reads as meant: a hop count, or presets, addresses and CIDRs. */
function isTrustProxy(value: string): boolean {
  if (/^\d+$/.test(value)) return true;
  return value.split(',').every((raw) => {
    const v = raw.trim();
    if (['loopback', 'linklocal', 'uniquelocal'].includes(v)) return true;
    const [ip, bits, ...rest] = v.split('/');
    const family = isIP(ip ?? '');
    if (!family || rest.length > 0) return false;
    if (bits === undefined) return true;
    if (/^\d+$/.test(bits)) return Number(bits) <= (family === 4 ? 32 : 128);
    return family === 4 && isIP(bits) === 4; // a netmask
  });
}

/**
 * An origin as a browser sends it in `Origin`: http(s), a host, maybe a port, nothing else. No
 * `*`: with it any site's page could use a key it got hold of, and it is never needed (list each
 * dashboard). Returned normalised (lower-case host, no default port), since matching is exact.
 */
function parseOrigin(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  const bare = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]+$/i.test(raw);
  if (!bare || (url.protocol !== 'http:' && url.protocol !== 'https:')) return undefined;
  if (url.username || url.password || url.hostname.includes('*')) return undefined;
  return url.origin;
}

/** For the service's and the worker's entry points: a bad configuration ends the process with its sentence. */
export function loadConfigOrExit(): AppConfig {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}

/** Reads and validates configuration once, at boot. Throws a ConfigError naming the variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env): AppConfig {
  // Empty strings in .env files mean "unset", not "invalid".
  const cleaned = Object.fromEntries(
    Object.entries(source).filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'configuration');
    throw new ConfigError(
      `Invalid configuration: ${name} ${issue.message.toLowerCase()} (got ${JSON.stringify(cleaned[name] ?? null)}).`,
    );
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  if (e.CUSTODY_SIGNING_KEY && e.CUSTODY_SIGNING_KEY_FILE) {
    throw new ConfigError(
      'Invalid configuration: set CUSTODY_SIGNING_KEY or CUSTODY_SIGNING_KEY_FILE, not both.',
    );
  }

  for (const name of ['APP_DATABASE_URL', 'MIGRATION_DATABASE_URL'] as const) {
    if (e[name] && !e.DATABASE_URL) {
      throw new ConfigError(
        `Invalid configuration: ${name} needs DATABASE_URL (an external PostgreSQL); the embedded PostgreSQL makes both of its logins itself.`,
      );
    }
  }

  let timestampAuthority: AppConfig['timestampAuthority'];
  if (e.TIMESTAMP_AUTHORITY_URLS?.length) {
    if (!e.TIMESTAMP_AUTHORITY_CA_FILE) {
      throw new ConfigError(
        "Invalid configuration: TIMESTAMP_AUTHORITY_CA_FILE is required with TIMESTAMP_AUTHORITY_URLS (the PEM roots the timestamp authorities' certificates must chain to).",
      );
    }
    const caFile = path.resolve(e.TIMESTAMP_AUTHORITY_CA_FILE);
    let caPem: string;
    try {
      caPem = readFileSync(caFile, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `Invalid configuration: TIMESTAMP_AUTHORITY_CA_FILE cannot be read (${(err as Error).message}).`,
      );
    }
    if (!/-----BEGIN CERTIFICATE-----/.test(caPem)) {
      throw new ConfigError(
        `Invalid configuration: TIMESTAMP_AUTHORITY_CA_FILE holds no PEM certificate (${caFile}).`,
      );
    }
    timestampAuthority = {
      urls: e.TIMESTAMP_AUTHORITY_URLS,
      caFile,
      caPem,
      timeoutMs: e.TIMESTAMP_AUTHORITY_TIMEOUT_MS,
    };
  } else if (e.TIMESTAMP_AUTHORITY_CA_FILE) {
    throw new ConfigError(
      'Invalid configuration: TIMESTAMP_AUTHORITY_CA_FILE is set but TIMESTAMP_AUTHORITY_URLS is not.',
    );
  }

  if (e.TWILIO_AUTH_TOKEN && !e.TWILIO_INGEST_KEY_ID) {
    throw new ConfigError(
      'Invalid configuration: TWILIO_INGEST_KEY_ID is required with TWILIO_AUTH_TOKEN (the id of an ingest key minted for Twilio: npm run keys -- create --role ingest --name twilio).',
    );
  }
  if (e.TWILIO_WEBHOOK_SHARED_KEY_SECRET && !e.TWILIO_AUTH_TOKEN) {
    throw new ConfigError(
      'Invalid configuration: TWILIO_WEBHOOK_SHARED_KEY_SECRET needs TWILIO_AUTH_TOKEN (the integration is on only with the auth token, which also fetches the media).',
    );
  }
  if (Boolean(e.TWILIO_MEDIA_USERNAME) !== Boolean(e.TWILIO_MEDIA_PASSWORD)) {
    throw new ConfigError(
      'Invalid configuration: TWILIO_MEDIA_USERNAME and TWILIO_MEDIA_PASSWORD must be set together.',
    );
  }
  // Twilio's own media URLs take the account SID and auth token as Basic credentials.
  const twilioAuth = e.TWILIO_MEDIA_USERNAME
    ? { username: e.TWILIO_MEDIA_USERNAME, password: e.TWILIO_MEDIA_PASSWORD! }
    : e.TWILIO_ACCOUNT_SID && e.TWILIO_AUTH_TOKEN
      ? { username: e.TWILIO_ACCOUNT_SID, password: e.TWILIO_AUTH_TOKEN }
      : undefined;

  const cores = os.availableParallelism();
  // One ffmpeg per core by default.
  const concurrency = e.MEDIA_CONCURRENCY ?? cores;

  let storage: AppConfig['storage'];
  if (e.STORAGE_DRIVER === 's3') {
    if (!e.S3_BUCKET) {
      throw new ConfigError('Invalid configuration: S3_BUCKET is required when STORAGE_DRIVER=s3.');
    }
    if (Boolean(e.S3_ACCESS_KEY_ID) !== Boolean(e.S3_SECRET_ACCESS_KEY)) {
      throw new ConfigError(
        'Invalid configuration: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together.',
      );
    }
    // S3 allows 10,000 parts per multipart upload: the largest upload must fit.
    if (Math.ceil(e.MAX_UPLOAD_BYTES / e.S3_PART_SIZE_BYTES) > 10_000) {
      throw new ConfigError(
        `Invalid configuration: S3_PART_SIZE_BYTES must be at least ${Math.ceil(e.MAX_UPLOAD_BYTES / 10_000)} so that MAX_UPLOAD_BYTES fits in S3's 10,000 parts.`,
      );
    }
    if ((e.S3_OBJECT_LOCK_MODE === undefined) !== (e.S3_OBJECT_LOCK_RETENTION_DAYS === undefined)) {
      throw new ConfigError(
        'Invalid configuration: S3_OBJECT_LOCK_MODE and S3_OBJECT_LOCK_RETENTION_DAYS must be set together.',
      );
    }
    storage = {
      driver: 's3',
      s3: {
        endpoint: e.S3_ENDPOINT,
        bucket: e.S3_BUCKET,
        region: e.S3_REGION,
        accessKeyId: e.S3_ACCESS_KEY_ID,
        secretAccessKey: e.S3_SECRET_ACCESS_KEY,
        forcePathStyle: e.S3_FORCE_PATH_STYLE,
        prefix: e.S3_PREFIX,
        partSizeBytes: e.S3_PART_SIZE_BYTES,
        uploadConcurrency: e.S3_UPLOAD_CONCURRENCY,
        requestTimeoutMs: e.S3_REQUEST_TIMEOUT_MS,
        copyBytesPerSecond: e.S3_COPY_BYTES_PER_SECOND,
        objectLock:
          e.S3_OBJECT_LOCK_MODE && e.S3_OBJECT_LOCK_RETENTION_DAYS
            ? { mode: e.S3_OBJECT_LOCK_MODE, retentionDays: e.S3_OBJECT_LOCK_RETENTION_DAYS }
            : undefined,
      },
    };
  } else {
    for (const name of ['S3_ENDPOINT', 'S3_BUCKET', 'S3_OBJECT_LOCK_MODE'] as const) {
      if (e[name]) {
        throw new ConfigError(
          `Invalid configuration: ${name} is set but STORAGE_DRIVER is "fs"; set STORAGE_DRIVER=s3 to use S3 storage.`,
        );
      }
    }
    storage = { driver: 'fs', root: path.join(dataDir, 'blobs') };
  }

  return {
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    publicUrl: e.PUBLIC_URL,
    dataDir,
    logLevel: e.LOG_LEVEL,
    database: {
      url: e.DATABASE_URL,
      appUrl: e.APP_DATABASE_URL,
      migrationUrl: e.MIGRATION_DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
      embeddedPort: e.EMBEDDED_PG_PORT,
      queryTimeoutMs: e.DATABASE_QUERY_TIMEOUT_MS,
    },
    storage,
    maxUploadBytes: e.MAX_UPLOAD_BYTES,
    resumableExpiryHours: e.RESUMABLE_UPLOAD_EXPIRY_HOURS,
    defaultPhoneRegion: e.DEFAULT_PHONE_REGION,
    suggestionWindowDays: e.SUGGESTION_WINDOW_DAYS,
    http: {
      headersTimeoutMs: e.HEADERS_TIMEOUT_MS,
      socketIdleTimeoutMs: e.SOCKET_IDLE_TIMEOUT_MS,
      keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
      trustProxy: e.TRUST_PROXY,
      corsOrigins: e.CORS_ORIGINS ?? [],
    },
    authCacheTtlMs: e.AUTH_CACHE_TTL_MS,
    session: {
      idleMs: e.SESSION_IDLE_MINUTES * 60_000,
      maxMs: e.SESSION_MAX_HOURS * 3_600_000,
    },
    refusalLimit: {
      perMinute: e.REFUSAL_LIMIT_PER_MINUTE,
      maxAddresses: e.REFUSAL_LIMIT_MAX_ADDRESSES,
      globalPerMinute: e.REFUSAL_LIMIT_GLOBAL_PER_MINUTE,
    },
    keyBudgets: {
      verifyBytesPerHour: e.KEY_VERIFY_BYTES_PER_HOUR,
      auditPagesPerMinute: e.KEY_AUDIT_PAGES_PER_MINUTE,
      bundleBuilds: e.KEY_BUNDLE_BUILDS,
    },
    databaseRole: e.DATABASE_ROLE === 'none' ? undefined : e.DATABASE_ROLE,
    custody: {
      signingKeyPem: e.CUSTODY_SIGNING_KEY,
      signingKeyFile: path.resolve(
        e.CUSTODY_SIGNING_KEY_FILE ?? path.join(dataDir, 'custody', 'signing-key.pem'),
      ),
      checkpointIntervalMinutes: e.CHECKPOINT_INTERVAL_MINUTES,
      checkpointMaxLagSeconds: e.CHECKPOINT_MAX_LAG_SECONDS,
      scrubIntervalMinutes: e.SCRUB_INTERVAL_MINUTES,
      scrubFullPassDays: e.SCRUB_FULL_PASS_DAYS,
      stagingGraceHours: e.STAGING_GRACE_HOURS,
      leftoverSweepSeconds: e.LEFTOVER_SWEEP_SECONDS,
      auditReads: e.AUDIT_READS,
    },
    timestampAuthority,
    retention: {
      intervalMinutes: e.RETENTION_INTERVAL_MINUTES,
      days: {
        packing_video: e.RETENTION_DAYS_PACKING_VIDEO,
        call_recording: e.RETENTION_DAYS_CALL_RECORDING,
        photo: e.RETENTION_DAYS_PHOTO,
      },
      afterCloseDays: e.RETENTION_AFTER_CLOSE_DAYS,
    },
    workers: e.WORKERS,
    media: {
      ffmpegPath: e.FFMPEG_PATH && path.resolve(e.FFMPEG_PATH),
      ffprobePath: e.FFPROBE_PATH && path.resolve(e.FFPROBE_PATH),
      concurrency,
      threads: Math.max(1, Math.floor(cores / concurrency)),
      timeoutSeconds: e.MEDIA_TIMEOUT_SECONDS,
      probeTimeoutSeconds: e.MEDIA_PROBE_TIMEOUT_SECONDS,
      memoryLimitMb: e.MEDIA_MEMORY_LIMIT_MB,
      maxInputPixels: e.MEDIA_MAX_INPUT_PIXELS,
      scratchDir: path.resolve(e.MEDIA_SCRATCH_DIR ?? path.join(dataDir, 'media-scratch')),
      retryDelaySeconds: e.MEDIA_RETRY_DELAY_SECONDS,
    },
    metricsToken: e.METRICS_TOKEN,
    twilio: e.TWILIO_AUTH_TOKEN
      ? {
          authToken: e.TWILIO_AUTH_TOKEN,
          sharedKeySecret: e.TWILIO_WEBHOOK_SHARED_KEY_SECRET,
          accountSid: e.TWILIO_ACCOUNT_SID,
          ingestKeyId: e.TWILIO_INGEST_KEY_ID!,
          mediaHosts: e.TWILIO_MEDIA_HOSTS.split(',')
            .map((h) => h.trim())
            .filter(Boolean),
          basicAuth: twilioAuth,
          mediaFormat: e.TWILIO_MEDIA_FORMAT,
        }
      : undefined,
    mediaFetch: {
      timeoutMs: e.MEDIA_FETCH_TIMEOUT_SECONDS * 1000,
      allowPrivate: e.MEDIA_FETCH_ALLOW_PRIVATE,
    },
    readiness: {
      minFreeDiskPercent: e.READY_MIN_FREE_DISK_PERCENT,
      minFreeDiskBytes: e.READY_MIN_FREE_DISK_BYTES,
    },
  };
}
