import type { Readable } from 'node:stream';
import { HeadBucketCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { S3Config } from '../base/config';
import {
  BlobUnavailableError,
  blobKeyFor,
  type BlobNamespace,
  type BlobStore,
  type ByteRange,
  isBlobKey,
  isPromotableKey,
  newStagingKey,
  type PromoteResult,
  STAGING_PREFIX,
  type StagingOwner,
  stagingOwner,
  type StoredObject,
} from './blob-store';
import { isNotFound, S3Bucket, type S3BucketOptions } from './s3-client';
import { S3ObjectLock } from './s3-object-lock';
import { uploadStream } from './s3-stream-upload';
import type { WormLedger, WormState } from './worm';

export interface S3BlobStoreOptions extends S3BucketOptions {
  /** The instance writing through this store: its id goes into staging keys. */
  stagingOwner?: StagingOwner;
  /** Told every WORM read-back (metrics, /readyz). */
  worm?: WormLedger;
}

/**
 * Blobs in an S3-compatible bucket. The S3 client's quirks live in s3-client.ts, Object Lock's in
 * s3-object-lock.ts; this store owns the client (close() destroys it).
 */
export class S3BlobStore implements BlobStore {
  readonly driver = 's3' as const;
  private readonly bucket: S3Bucket;
  private readonly lock: S3ObjectLock;

  constructor(
    client: S3Client,
    cfg: S3Config,
    private readonly opts: S3BlobStoreOptions = {},
  ) {
    this.bucket = new S3Bucket(client, cfg, opts);
    this.lock = new S3ObjectLock(this.bucket, opts.worm);
    if (cfg.objectLock) opts.worm?.setRechecker((problem) => this.lock.recheck(problem));
  }

  get legalHoldSupported(): boolean {
    return this.lock.configured;
  }

  async writeStaging(body: Readable): Promise<string> {
    const key = await newStagingKey(this.opts.stagingOwner);
    try {
      // Not destroyed when S3 fails: the caller reports the body's own error, if any, else S3's.
      await uploadStream(this.bucket, key, body.iterator({ destroyOnReturn: false }));
    } catch (err) {
      // A body that failed after a PutObject began, or a server that lost the abort: never a
      // partial object left behind under the key.
      await this.bucket.deleteObject(key).catch(() => undefined);
      throw err;
    }
    return key;
  }

  async promote(
    stagingKey: string,
    sha256: string,
    size: number,
    namespace: BlobNamespace = 'evidence',
  ): Promise<PromoteResult> {
    const key = blobKeyFor(sha256, namespace);
    const existing = await this.stat(key);
    let created = false;
    if (existing !== size) {
      await this.bucket.copy(stagingKey, key, size, this.lock.lockParams(key));
      created = true;
    }
    // Read back, never assumed: a new copy and an existing blob alike (one promoted before WORM
    // was configured, or by a store that dropped the lock, gets it now).
    const worm = await this.lock.ensureRetention(key, 'evidence');
    // The blob is safe at its content address; a staging copy that fails to delete now is
    // removed by the staging sweep, and must not turn a durable upload into an error.
    await this.discardStaging(stagingKey).catch(() => undefined);
    return { key, created, worm };
  }

  async repair(
    stagingKey: string,
    sha256: string,
    size: number,
    opts: { keepStaged?: boolean } = {},
  ): Promise<{ key: string; previous?: string }> {
    const key = blobKeyFor(sha256);
    const Key = this.bucket.objectKey(key);
    const head = await this.bucket.client
      .send(new HeadObjectCommand({ Bucket: this.bucket.name, Key }))
      .catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
    // Never a delete: the copy is a new object (a new version where the bucket keeps versions,
    // with the damaged one left as it is, locked or not).
    await this.bucket.copy(stagingKey, key, size, this.lock.lockParams(key));
    // A resumable upload's copy stays until it is archived (a retry after a failed commit needs it).
    if (!opts.keepStaged) await this.discardStaging(stagingKey).catch(() => undefined);
    const previous = head?.VersionId && head.VersionId !== 'null' ? head.VersionId : undefined;
    return { key, ...(previous ? { previous } : {}) };
  }

  async discardStaging(stagingKey: string): Promise<void> {
    if (!isPromotableKey(stagingKey)) throw new Error(`not a staging key: ${stagingKey}`);
    await this.bucket.deleteObject(stagingKey);
  }

  async sweepStaging(before: Date, isGone?: (owner: string) => Promise<boolean>): Promise<number> {
    const stale = async (key: string, at: Date) => {
      const owner = stagingOwner(key);
      return at < before || Boolean(owner && isGone && (await isGone(owner)));
    };
    let removed = 0;
    for await (const o of this.list(STAGING_PREFIX)) {
      if (await stale(o.key, o.lastModified)) {
        await this.bucket.deleteObject(o.key);
        removed++;
      }
    }
    // A large upload cut off by a crash is an unfinished multipart upload, not an object: its
    // parts are invisible to listings and billed until aborted.
    for (const u of await this.bucket.listMultipart(STAGING_PREFIX)) {
      if (isPromotableKey(u.key) && (await stale(u.key, u.initiated))) {
        await this.bucket.abortMultipart(u.key, u.uploadId);
        removed++;
      }
    }
    return removed;
  }

  async stat(key: string): Promise<number | undefined> {
    return this.bucket.stat(key);
  }

  async read(key: string, expectedSize: number, range?: ByteRange): Promise<Readable> {
    const res = await this.bucket.getObject(key, range).catch((err: unknown) => {
      throw isNotFound(err) ? new BlobUnavailableError(key, 'missing') : err;
    });
    if (res.total !== expectedSize) {
      res.body.destroy();
      throw new BlobUnavailableError(
        key,
        'size_mismatch',
        `${res.total} bytes, expected ${expectedSize}`,
      );
    }
    return res.exact();
  }

  async delete(key: string): Promise<void> {
    if (!isBlobKey(key)) throw new Error(`not a promoted blob key: ${key}`);
    await this.bucket.deleteObject(key);
  }

  list(prefix: 'sha256/' | 'staging/' | 'resumable/'): AsyncIterable<StoredObject> {
    return this.bucket.listObjects(prefix);
  }

  async setLegalHold(key: string, on: boolean): Promise<void> {
    await this.lock.setLegalHold(key, on);
  }

  async verifyWorm(key: string, opts: { apply?: boolean } = {}): Promise<WormState> {
    if (!isBlobKey(key)) throw new Error(`not a promoted blob key: ${key}`);
    if (opts.apply === false) return this.lock.currentRetention(key);
    return this.lock.ensureRetention(key, 'evidence');
  }

  async ping(): Promise<void> {
    await this.bucket.client.send(new HeadBucketCommand({ Bucket: this.bucket.name }));
  }

  async close(): Promise<void> {
    this.bucket.close();
  }
}
