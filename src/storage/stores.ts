import type { AppConfig } from '../base/config';
import type { BlobStore } from './blob-store';
import { FsBlobStore } from './blob-store.fs';
import { S3BlobStore, type S3BlobStoreOptions } from './blob-store.s3';
import type { CustodyRecordStore } from './record-store';
import { FsCustodyRecordStore } from './record-store.fs';
import { S3CustodyRecordStore } from './record-store.s3';
import type { ResumableStore } from './resumable-store';
import { FsResumableStore } from './resumable-store.fs';
import { S3ResumableStore } from './resumable-store.s3';
import { createS3Client } from './s3-client';

/** The configured storage, behind one interface per concern. */
export interface Stores {
  /** Staging and promoted blobs; owns the storage's connection (ping, close). */
  blobs: BlobStore;
  resumable: ResumableStore;
  records: CustodyRecordStore;
}

/** The stores of the configured driver, on one disk root or sharing one S3 client. */
export async function createStores(
  config: AppConfig,
  opts: S3BlobStoreOptions = {},
): Promise<Stores> {
  if (config.storage.driver === 's3') {
    const cfg = config.storage.s3;
    const client = createS3Client(cfg);
    return {
      blobs: new S3BlobStore(client, cfg, opts),
      resumable: new S3ResumableStore(client, cfg),
      records: new S3CustodyRecordStore(client, cfg, { worm: opts.worm }),
    };
  }
  const root = config.storage.root;
  return {
    blobs: await new FsBlobStore(root, opts).init(),
    resumable: await new FsResumableStore(root).init(),
    records: new FsCustodyRecordStore(root),
  };
}
