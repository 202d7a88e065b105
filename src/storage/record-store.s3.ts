import { createHash } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { S3Config } from '../base/config';
import { assertRecordKey, type CustodyRecordStore } from './record-store';
import { isNotFound, S3Bucket } from './s3-client';
import { S3ObjectLock } from './s3-object-lock';
import type { WormLedger, WormState } from './worm';

/**
 * Custody records in an S3-compatible bucket, under Object Lock retention where it is configured.
 * Shares the blob store's client; closing that store closes it.
 */
export class S3CustodyRecordStore implements CustodyRecordStore {
  private readonly bucket: S3Bucket;
  private readonly lock: S3ObjectLock;

  constructor(client: S3Client, cfg: S3Config, opts: { worm?: WormLedger } = {}) {
    this.bucket = new S3Bucket(client, cfg);
    this.lock = new S3ObjectLock(this.bucket, opts.worm);
  }

  async putRecord(key: string, body: Buffer): Promise<WormState> {
    assertRecordKey(key);
    const existing = await this.getRecord(key);
    if (existing) {
      if (existing.equals(body)) return this.lock.ensureRetention(key, 'record');
      throw new Error(`custody record ${key} exists with other content`);
    }
    await this.bucket.client.send(
      new PutObjectCommand({
        Bucket: this.bucket.name,
        Key: this.bucket.objectKey(key),
        Body: body,
        ContentType: 'application/json',
        // S3 requires Content-MD5 (or a checksum) on every PUT into an Object Lock bucket.
        ContentMD5: createHash('md5').update(body).digest('base64'),
        ...this.lock.lockParams(),
      }),
    );
    return this.lock.ensureRetention(key, 'record');
  }

  async getRecord(key: string): Promise<Buffer | undefined> {
    assertRecordKey(key);
    try {
      const res = await this.bucket.client.send(
        new GetObjectCommand({ Bucket: this.bucket.name, Key: this.bucket.objectKey(key) }),
      );
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async listRecords(prefix: string): Promise<string[]> {
    assertRecordKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
    const keys: string[] = [];
    for await (const o of this.bucket.listObjects(prefix)) keys.push(o.key);
    return keys.sort();
  }
}
