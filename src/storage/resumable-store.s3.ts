import { createHash, randomUUID } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Config } from '../base/config';
import { isPromotableKey, RESUMABLE_PREFIX } from './blob-store';
import type { ResumableState, ResumableStore } from './resumable-store';
import { S3Bucket } from './s3-client';

/**
 * Resumable uploads in an S3-compatible bucket. Shares the blob store's client; closing that store
 * closes it.
 */
export class S3ResumableStore implements ResumableStore {
  private readonly bucket: S3Bucket;

  constructor(client: S3Client, cfg: S3Config) {
    this.bucket = new S3Bucket(client, cfg);
  }

  /*
   * A resumable upload is an S3 multipart upload at its key. S3 parts must be at least 5 MiB
   * (but the last), while a tus PATCH ends wherever the client's connection did: whole parts go up
   * as they fill, and the remainder is kept as a small "tail" object named after the offset it
   * ends at, read back and prepended by the next PATCH. Part numbers follow from offsets, so a
   * write cut off by a crash is simply overwritten by the retry.
   */

  async createResumable(): Promise<{ key: string; state: ResumableState }> {
    const key = `${RESUMABLE_PREFIX}${randomUUID()}`;
    const { UploadId } = await this.bucket.client.send(
      new CreateMultipartUploadCommand({
        Bucket: this.bucket.name,
        Key: this.bucket.objectKey(key),
      }),
    );
    const state: MultipartState = {
      uploadId: UploadId!,
      partSize: this.bucket.cfg.partSizeBytes,
      parts: [],
      tail: 0,
    };
    return { key, state: { ...state } };
  }

  async appendResumable(
    key: string,
    raw: ResumableState,
    offset: number,
    body: AsyncIterable<Buffer>,
  ): Promise<ResumableState> {
    const state = multipartState(raw);
    const parts = [...state.parts];
    if (offset !== parts.length * state.partSize + state.tail) {
      throw new Error(`resumable upload ${key}: offset ${offset} does not match its parts`);
    }
    // Tails of writes the database never acknowledged.
    for await (const o of this.bucket.listObjects(`${key}.tail-`)) {
      if (o.key !== tailKey(key, offset)) await this.bucket.deleteObject(o.key);
    }
    const pending: Buffer[] = state.tail > 0 ? [await this.getTail(key, offset, state.tail)] : [];
    let length = state.tail;
    for await (const chunk of body) {
      pending.push(chunk);
      length += chunk.length;
      while (length >= state.partSize) {
        const all = Buffer.concat(pending, length);
        const part = all.subarray(0, state.partSize);
        parts.push(await this.uploadPart(key, state.uploadId, parts.length + 1, part));
        pending.length = 0;
        length -= part.length;
        if (length > 0) pending.push(all.subarray(state.partSize));
      }
    }
    if (length > 0) {
      await this.bucket.client.send(
        new PutObjectCommand({
          Bucket: this.bucket.name,
          Key: this.bucket.objectKey(tailKey(key, parts.length * state.partSize + length)),
          Body: Buffer.concat(pending, length),
        }),
      );
    }
    return { ...state, parts, tail: length };
  }

  async completeResumable(key: string, raw: ResumableState, size: number): Promise<void> {
    const state = multipartState(raw);
    if ((await this.bucket.stat(key)) === size) return; // completed by an earlier attempt
    const parts = [...state.parts];
    if (state.tail > 0) {
      const end = parts.length * state.partSize + state.tail;
      const tail = await this.getTail(key, end, state.tail);
      parts.push(await this.uploadPart(key, state.uploadId, parts.length + 1, tail));
    }
    await this.bucket.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket.name,
        Key: this.bucket.objectKey(key),
        UploadId: state.uploadId,
        MultipartUpload: { Parts: parts.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    const stored = await this.bucket.stat(key);
    if (stored !== size)
      throw new Error(`resumable upload ${key} completed with ${stored} bytes, not ${size}`);
    for await (const o of this.bucket.listObjects(`${key}.tail-`))
      await this.bucket.deleteObject(o.key);
  }

  async discardResumable(key: string, raw: ResumableState): Promise<void> {
    const { uploadId } = multipartState(raw);
    await this.bucket.abortMultipart(key, uploadId);
    for await (const o of this.bucket.listObjects(`${key}.tail-`))
      await this.bucket.deleteObject(o.key);
    await this.bucket.deleteObject(key);
  }

  async sweepResumable(before: Date, isLive: (key: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    for await (const o of this.bucket.listObjects(RESUMABLE_PREFIX)) {
      const key = o.key.replace(/\.tail-\d+$/, '');
      if (o.lastModified < before && isPromotableKey(key) && !(await isLive(key))) {
        await this.bucket.deleteObject(o.key);
        removed++;
      }
    }
    // Multipart uploads whose row never committed (or whose abort failed) hold parts S3 bills for.
    for (const u of await this.bucket.listMultipart(RESUMABLE_PREFIX)) {
      if (u.initiated < before && isPromotableKey(u.key) && !(await isLive(u.key))) {
        await this.bucket.abortMultipart(u.key, u.uploadId);
        removed++;
      }
    }
    return removed;
  }

  private async uploadPart(
    key: string,
    uploadId: string,
    n: number,
    body: Buffer,
  ): Promise<string> {
    const { ETag } = await this.bucket.client.send(
      new UploadPartCommand({
        Bucket: this.bucket.name,
        Key: this.bucket.objectKey(key),
        UploadId: uploadId,
        PartNumber: n,
        Body: body,
        ContentLength: body.length,
        ContentMD5: createHash('md5').update(body).digest('base64'),
      }),
    );
    if (!ETag) throw new Error(`storage returned no ETag for part ${n} of ${key}`);
    return ETag;
  }

  private async getTail(key: string, end: number, size: number): Promise<Buffer> {
    const res = await this.bucket.client.send(
      new GetObjectCommand({
        Bucket: this.bucket.name,
        Key: this.bucket.objectKey(tailKey(key, end)),
      }),
    );
    const bytes = Buffer.from(await res.Body!.transformToByteArray());
    if (bytes.length !== size) {
      throw new Error(`resumable upload ${key}: tail holds ${bytes.length} bytes, not ${size}`);
    }
    return bytes;
  }
}

interface MultipartState {
  uploadId: string;
  partSize: number;
  /** ETags of parts 1..n, each exactly partSize bytes. */
  parts: string[];
  /** Bytes after the last whole part, kept in the tail object. */
  tail: number;
}

function multipartState(raw: ResumableState): MultipartState {
  const s = raw as Partial<MultipartState>;
  if (
    typeof s.uploadId !== 'string' ||
    typeof s.partSize !== 'number' ||
    !Array.isArray(s.parts) ||
    typeof s.tail !== 'number'
  ) {
    throw new Error('not the state of an S3 resumable upload');
  }
  return s as MultipartState;
}

const tailKey = (key: string, end: number) => `${key}.tail-${end}`;
