import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/base/config';
import { copyTimeoutMs } from '../../src/storage/s3-client';

describe('loadConfig', () => {
  it('runs with no configuration at all: embedded database, blobs on disk under ./data', () => {
    const cfg = loadConfig({});
    expect(cfg.database.url).toBeUndefined();
    expect(cfg.storage).toEqual({ driver: 'fs', root: path.resolve('data', 'blobs') });
    expect(cfg.maxUploadBytes).toBe(20 * 1024 ** 3);
    expect(cfg.http.requestTimeoutMs).toBe(0);
    expect(cfg.host).toBe('127.0.0.1');
  });

  it('runs one media job per core by default, dividing the cores among concurrent jobs', () => {
    const cores = os.availableParallelism();
    const cfg = loadConfig({});
    expect(cfg.media.concurrency).toBe(cores);
    expect(cfg.media.threads).toBe(1);
    expect(cfg.media.scratchDir).toBe(path.resolve('data', 'media-scratch'));
    expect(cfg.media.maxInputPixels).toBeLessThan(268_402_689); // sharp's default, far above ours
    const one = loadConfig({ MEDIA_CONCURRENCY: '1' });
    expect(one.media.threads).toBe(cores);
    expect(loadConfig({ FFMPEG_PATH: 'bin/ffmpeg' }).media.ffmpegPath).toBe(
      path.resolve('bin/ffmpeg'),
    );
  });

  it('reads CORS_ORIGINS as exact origins (none by default), refusing paths, wildcards and other schemes', () => {
    expect(loadConfig({}).http.corsOrigins).toEqual([]);
    expect(
      loadConfig({
        CORS_ORIGINS: 'https://dash.example.com, http://127.0.0.1:5173,HTTPS://Ops.Example.com:443',
      }).http.corsOrigins,
    ).toEqual(['https://dash.example.com', 'http://127.0.0.1:5173', 'https://ops.example.com']);
    for (const bad of [
      '*',
      'https://*.example.com',
      'https://dash.example.com/',
      'https://dash.example.com/app',
      'https://dash.example.com?x=1',
      'dash.example.com',
      'null',
      'file:///tmp/x',
      'ftp://dash.example.com',
      'https://user:pw@dash.example.com',
      'https://dash.example.com,*',
    ]) {
      expect(() => loadConfig({ CORS_ORIGINS: bad })).toThrow(
        /CORS_ORIGINS must be comma-separated origins/,
      );
    }
  });

  it('reads TRUST_PROXY as express means it (a hop count, or presets and addresses), and refusal limits', () => {
    expect(loadConfig({ TRUST_PROXY: '1' }).http.trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).http.trustProxy).toBe(
      'loopback, 10.0.0.0/8',
    );
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/255.0.0.0,::1' }).http.trustProxy).toBeDefined();
    for (const bad of ['true', '10.0.0.0/33', 'proxy.example']) {
      expect(() => loadConfig({ TRUST_PROXY: bad })).toThrow(/TRUST_PROXY/);
    }
    expect(loadConfig({}).refusalLimit).toEqual({
      perMinute: 30,
      maxAddresses: 10_000,
      globalPerMinute: 600,
    });
    expect(() => loadConfig({ REFUSAL_LIMIT_PER_MINUTE: '0' })).toThrow(/REFUSAL_LIMIT_PER_MINUTE/);
    expect(() => loadConfig({ REFUSAL_LIMIT_MAX_ADDRESSES: '100001' })).toThrow(
      /REFUSAL_LIMIT_MAX_ADDRESSES/,
    );
    expect(() => loadConfig({ REFUSAL_LIMIT_GLOBAL_PER_MINUTE: '0' })).toThrow(
      /REFUSAL_LIMIT_GLOBAL_PER_MINUTE/,
    );
    expect(loadConfig({ REFUSAL_LIMIT_GLOBAL_PER_MINUTE: '50' }).refusalLimit.globalPerMinute).toBe(
      50,
    );
  });

  it('bounds database queries: DATABASE_QUERY_TIMEOUT_MS, 60 s by default, validated', () => {
    expect(loadConfig({}).database.queryTimeoutMs).toBe(60_000);
    expect(loadConfig({ DATABASE_QUERY_TIMEOUT_MS: '5000' }).database.queryTimeoutMs).toBe(5000);
    for (const bad of ['0', '999', 'soon', '3600001']) {
      expect(() => loadConfig({ DATABASE_QUERY_TIMEOUT_MS: bad })).toThrow(
        /DATABASE_QUERY_TIMEOUT_MS/,
      );
    }
  });

  it('reads S3_COPY_BYTES_PER_SECOND (8 MiB/s by default, at least 1 KiB/s) and scales copy timeouts by it', () => {
    const s3 = (env: Record<string, string>) => {
      const cfg = loadConfig({
        STORAGE_DRIVER: 's3',
        S3_ENDPOINT: 'http://127.0.0.1:9000',
        S3_BUCKET: 'bucket',
        ...env,
      });
      if (cfg.storage.driver !== 's3') throw new Error('unreachable');
      return cfg.storage.s3;
    };
    expect(s3({}).copyBytesPerSecond).toBe(8 * 1024 * 1024);
    // A 5 GiB copy at the default: 120 s + 640 s.
    expect(copyTimeoutMs(s3({}), 5 * 1024 ** 3)).toBe(760_000);
    expect(copyTimeoutMs(s3({ S3_COPY_BYTES_PER_SECOND: '1024' }), 4096)).toBe(124_000);
    expect(() => s3({ S3_COPY_BYTES_PER_SECOND: '1000' })).toThrow(/S3_COPY_BYTES_PER_SECOND/);
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).port).toBe(8080);
  });

  it.each([
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ STORAGE_DRIVER: 'ftp' }, /STORAGE_DRIVER/],
    [{ STORAGE_DRIVER: 's3' }, /S3_BUCKET is required when STORAGE_DRIVER=s3/],
    [
      { STORAGE_DRIVER: 's3', S3_BUCKET: 'bkt', S3_ACCESS_KEY_ID: 'x' },
      /S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY/,
    ],
    [{ S3_BUCKET: 'bkt' }, /S3_BUCKET is set but STORAGE_DRIVER is "fs"/],
    [{ S3_FORCE_PATH_STYLE: 'yes' }, /S3_FORCE_PATH_STYLE/],
    [{ DATABASE_URL: 'not a url' }, /DATABASE_URL/],
    [{ MAX_UPLOAD_BYTES: '-1' }, /MAX_UPLOAD_BYTES/],
    [{ DEFAULT_PHONE_REGION: 'germany' }, /DEFAULT_PHONE_REGION/],
    [{ MEDIA_CONCURRENCY: '0' }, /MEDIA_CONCURRENCY/],
    [{ TWILIO_AUTH_TOKEN: '0123456789abcdef0123' }, /TWILIO_INGEST_KEY_ID is required/],
    [{ TWILIO_ACCOUNT_SID: 'AC123' }, /TWILIO_ACCOUNT_SID/],
    [{ TWILIO_MEDIA_USERNAME: 'u' }, /TWILIO_MEDIA_USERNAME and TWILIO_MEDIA_PASSWORD/],
    [
      { TWILIO_WEBHOOK_SHARED_KEY_SECRET: '0123456789abcdef0123' },
      /TWILIO_WEBHOOK_SHARED_KEY_SECRET needs TWILIO_AUTH_TOKEN/,
    ],
    [
      {
        TWILIO_AUTH_TOKEN: '0123456789abcdef0123',
        TWILIO_INGEST_KEY_ID: 'k',
        TWILIO_WEBHOOK_SHARED_KEY_SECRET: 'short',
      },
      /TWILIO_WEBHOOK_SHARED_KEY_SECRET/,
    ],
    [{ MEDIA_MAX_INPUT_PIXELS: '300000000' }, /MEDIA_MAX_INPUT_PIXELS/],
    [{ MEDIA_MEMORY_LIMIT_MB: '64' }, /MEDIA_MEMORY_LIMIT_MB/],
    [{ S3_PART_SIZE_BYTES: '1024' }, /S3_PART_SIZE_BYTES/],
    [
      { STORAGE_DRIVER: 's3', S3_BUCKET: 'bkt', MAX_UPLOAD_BYTES: String(100 * 1024 ** 3) },
      /S3_PART_SIZE_BYTES must be at least .* MAX_UPLOAD_BYTES fits in S3's 10,000 parts/,
    ],
    [
      { STORAGE_DRIVER: 's3', S3_BUCKET: 'bkt', S3_OBJECT_LOCK_MODE: 'GOVERNANCE' },
      /S3_OBJECT_LOCK_MODE and S3_OBJECT_LOCK_RETENTION_DAYS must be set together/,
    ],
    [
      {
        STORAGE_DRIVER: 's3',
        S3_BUCKET: 'bkt',
        S3_OBJECT_LOCK_MODE: 'FOREVER',
        S3_OBJECT_LOCK_RETENTION_DAYS: '1',
      },
      /S3_OBJECT_LOCK_MODE/,
    ],
    [
      { S3_OBJECT_LOCK_MODE: 'COMPLIANCE', S3_OBJECT_LOCK_RETENTION_DAYS: '1' },
      /S3_OBJECT_LOCK_MODE is set but STORAGE_DRIVER is "fs"/,
    ],
    [
      { CUSTODY_SIGNING_KEY: 'x', CUSTODY_SIGNING_KEY_FILE: '/k.pem' },
      /CUSTODY_SIGNING_KEY or CUSTODY_SIGNING_KEY_FILE, not both/,
    ],
    [{ RETENTION_DAYS_PHOTO: '-3' }, /RETENTION_DAYS_PHOTO/],
    [{ AUDIT_READS: 'maybe' }, /AUDIT_READS/],
    [{ DATABASE_ROLE: 'evil; drop table x' }, /DATABASE_ROLE/],
    [{ METRICS_TOKEN: 'short' }, /METRICS_TOKEN/],
  ])('stops on %j with a sentence naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('reads the S3 settings', () => {
    const cfg = loadConfig({
      STORAGE_DRIVER: 's3',
      S3_BUCKET: 'evidence',
      S3_ENDPOINT: 'http://minio:9000',
      S3_FORCE_PATH_STYLE: 'true',
      S3_ACCESS_KEY_ID: 'a',
      S3_SECRET_ACCESS_KEY: 'b',
    });
    expect(cfg.storage).toMatchObject({
      driver: 's3',
      s3: {
        bucket: 'evidence',
        endpoint: 'http://minio:9000',
        forcePathStyle: true,
        region: 'us-east-1',
      },
    });
  });

  it('reads the two logins: APP_DATABASE_URL and MIGRATION_DATABASE_URL, only with DATABASE_URL', () => {
    const owner = 'postgres://owner:pw@db:5432/evidence';
    const app = 'postgres://evidence_service:pw@db:5432/evidence';
    expect(loadConfig({ DATABASE_URL: owner, APP_DATABASE_URL: app }).database).toMatchObject({
      url: owner,
      appUrl: app,
      migrationUrl: undefined,
    });
    expect(loadConfig({ DATABASE_URL: app, MIGRATION_DATABASE_URL: owner }).database).toMatchObject(
      { url: app, appUrl: undefined, migrationUrl: owner },
    );
    // Unset (or empty, as in .env): the one login of before.
    expect(
      loadConfig({ DATABASE_URL: owner, APP_DATABASE_URL: '' }).database.appUrl,
    ).toBeUndefined();
    // The embedded PostgreSQL makes its own logins: a second URL without the first is a mistake.
    expect(() => loadConfig({ APP_DATABASE_URL: app })).toThrow(
      /APP_DATABASE_URL needs DATABASE_URL/,
    );
    expect(() => loadConfig({ MIGRATION_DATABASE_URL: owner })).toThrow(
      /MIGRATION_DATABASE_URL needs DATABASE_URL/,
    );
    expect(() => loadConfig({ DATABASE_URL: owner, APP_DATABASE_URL: 'not a url' })).toThrow(
      /APP_DATABASE_URL/,
    );
  });

  it('reads Object Lock, custody and retention settings', () => {
    const cfg = loadConfig({
      STORAGE_DRIVER: 's3',
      S3_BUCKET: 'evidence',
      S3_OBJECT_LOCK_MODE: 'COMPLIANCE',
      S3_OBJECT_LOCK_RETENTION_DAYS: '400',
      RETENTION_DAYS_PACKING_VIDEO: '0',
      DATABASE_ROLE: 'none',
    });
    expect(cfg.storage).toMatchObject({
      s3: { objectLock: { mode: 'COMPLIANCE', retentionDays: 400 } },
    });
    expect(cfg.retention.days).toEqual({ packing_video: 0, call_recording: 365, photo: 365 });
    expect(cfg.databaseRole).toBeUndefined();
    expect(loadConfig({}).databaseRole).toBe('evidence_app');
    expect(loadConfig({}).custody).toMatchObject({
      checkpointIntervalMinutes: 10,
      checkpointMaxLagSeconds: 60,
      auditReads: true,
    });
    expect(loadConfig({ CHECKPOINT_MAX_LAG_SECONDS: '5' }).custody.checkpointMaxLagSeconds).toBe(5);
    expect(() => loadConfig({ CHECKPOINT_MAX_LAG_SECONDS: '1' })).toThrow(
      /CHECKPOINT_MAX_LAG_SECONDS/,
    );
  });

  it('reads the timestamp authorities: URLs with a readable PEM CA file, or none', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tsa-config-'));
    const ca = path.join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const notPem = path.join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    try {
      expect(loadConfig({}).timestampAuthority).toBeUndefined();
      expect(
        loadConfig({
          TIMESTAMP_AUTHORITY_URLS: ' http://tsa.example/a , https://tsa2.example/b',
          TIMESTAMP_AUTHORITY_CA_FILE: ca,
        }).timestampAuthority,
      ).toEqual({
        urls: ['http://tsa.example/a', 'https://tsa2.example/b'],
        caFile: ca,
        caPem: expect.stringContaining('BEGIN CERTIFICATE'),
        timeoutMs: 10_000,
      });
      const bad: [Record<string, string>, RegExp][] = [
        [
          { TIMESTAMP_AUTHORITY_URLS: 'http://tsa.example' },
          /TIMESTAMP_AUTHORITY_CA_FILE is required/,
        ],
        [{ TIMESTAMP_AUTHORITY_CA_FILE: ca }, /TIMESTAMP_AUTHORITY_URLS is not/],
        [
          {
            TIMESTAMP_AUTHORITY_URLS: 'http://tsa.example',
            TIMESTAMP_AUTHORITY_CA_FILE: path.join(dir, 'nope'),
          },
          /TIMESTAMP_AUTHORITY_CA_FILE cannot be read/,
        ],
        [
          { TIMESTAMP_AUTHORITY_URLS: 'http://tsa.example', TIMESTAMP_AUTHORITY_CA_FILE: notPem },
          /holds no PEM certificate/,
        ],
        [
          { TIMESTAMP_AUTHORITY_URLS: 'ftp://tsa.example', TIMESTAMP_AUTHORITY_CA_FILE: ca },
          /TIMESTAMP_AUTHORITY_URLS/,
        ],
        [
          { TIMESTAMP_AUTHORITY_URLS: 'not a url', TIMESTAMP_AUTHORITY_CA_FILE: ca },
          /TIMESTAMP_AUTHORITY_URLS/,
        ],
        [
          { TIMESTAMP_AUTHORITY_TIMEOUT_MS: '10' },
          /TIMESTAMP_AUTHORITY_TIMEOUT_MS must be at least 500/,
        ],
      ];
      for (const [env, message] of bad) {
        expect(() => loadConfig(env)).toThrow(ConfigError);
        expect(() => loadConfig(env)).toThrow(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
