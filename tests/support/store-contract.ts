import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { loadConfig, type AppConfig, type S3Config } from '../../src/base/config';
import { createS3Client } from '../../src/storage/s3-client';
import { createStores, type Stores } from '../../src/storage/stores';
import { cephBucket, type CephAvailability } from './ceph';
import { listStoreKeys } from './harness';
import { startS3Server, type TestS3 } from './s3-server';

/*
 * What the storage contract suites share: the stores of each driver over real storage (disk,
 * s3rver, and Ceph's gateway: a bucket with Object Lock enabled, hence versioned), and a client
 * that records the requests it sends.
 */

export type ContractDriver = 'fs' | 's3' | 'ceph';

/** Disk and s3rver always; Ceph where it runs (cephForTests says why not, and fails in CI). */
export function contractDrivers(ceph: CephAvailability): ContractDriver[] {
  return ['fs', 's3', ...(ceph.ok ? (['ceph'] as const) : [])];
}

export interface ContractStores extends Stores {
  config: AppConfig;
  /** The S3 server or Ceph bucket (undefined for the disk driver). */
  s3: TestS3 | undefined;
  dataDir: string;
  /** Every key in the store, sorted: objects in the bucket, or files under the disk root. */
  keys(): Promise<string[]>;
  /** The stores of the same storage, written through by another instance (the caller closes them). */
  another(opts: { stagingOwner?: string }): Promise<Stores>;
  close(): Promise<void>;
}

/** The stores of one driver; 5 MiB parts, so bodies above that take S3's multipart path. */
export async function startContractStores(
  driver: ContractDriver,
  ceph: CephAvailability,
): Promise<ContractStores> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-store-'));
  const s3 =
    driver === 's3'
      ? await startS3Server()
      : driver === 'ceph' && ceph.ok
        ? await cephBucket(ceph)
        : undefined;
  const config = loadConfig({
    DATA_DIR: dataDir,
    S3_PART_SIZE_BYTES: String(5 * 1024 * 1024),
    ...s3?.env,
  });
  const stores = await createStores(config);
  return {
    ...stores,
    config,
    s3,
    dataDir,
    keys: () => listStoreKeys(s3 ?? path.join(dataDir, 'blobs')),
    another: (opts) => createStores(loadConfig({ DATA_DIR: dataDir, ...s3?.env }), opts),
    async close() {
      await stores.blobs.close(); // closes the connection the other stores share
      await s3?.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface SentRequest {
  method: string;
  path: string;
  query: Record<string, unknown>;
  headers: Record<string, string>;
  body?: unknown;
}

/** An S3 client (of `purpose`, as createS3Client) that appends every request it sends to `sent`. */
export function recordingS3Client(
  cfg: S3Config,
  sent: SentRequest[],
  purpose: 'requests' | 'copies' = 'requests',
): S3Client {
  const client = createS3Client(cfg, purpose);
  client.middlewareStack.add(
    (next) => async (args) => {
      const req = args.request as SentRequest;
      sent.push({
        method: req.method,
        path: req.path,
        query: req.query,
        headers: { ...req.headers },
        body: req.body,
      });
      return next(args);
    },
    { step: 'finalizeRequest', name: 'recordRequests' },
  );
  return client;
}

/** S3 settings for `s3` with WORM configured: COMPLIANCE for 30 days. */
export function compliance30Days(s3: TestS3): S3Config {
  return s3ConfigOf(
    loadConfig({
      ...s3.env,
      S3_OBJECT_LOCK_MODE: 'COMPLIANCE',
      S3_OBJECT_LOCK_RETENTION_DAYS: '30',
    }),
  );
}

/** The S3 settings of a config that must be for S3. */
export function s3ConfigOf(config: AppConfig): S3Config {
  if (config.storage.driver !== 's3') throw new Error('not an S3 configuration');
  return config.storage.s3;
}

export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function chunked(buf: Buffer, size = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
    })(),
  );
}
