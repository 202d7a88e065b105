import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { S3Config } from '../base/config';
import type { ByteRange, StoredObject } from './blob-store';

/*
 * Every quirk of S3 servers and of the AWS SDK in one module: client construction (timeouts,
 * checksums), the copy client with size-scaled timeouts, error classification, and the bucket
 * operations the blob, resumable and custody-record stores share.
 */

/** S3 allows a single CopyObject up to 5 GiB; larger blobs are copied with UploadPartCopy. */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;
const COPY_PART_BYTES = 1024 ** 3;

/** The slowest server-side copy rate (bytes/s) a healthy store is assumed to keep, by default. */
const DEFAULT_COPY_BYTES_PER_SECOND = 8 * 1024 ** 2;
/** Node's timers hold at most 2^31-1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How long a server-side copy of `bytes` (CopyObject, an UploadPartCopy part, or the
 * CompleteMultipartUpload of a copy) may take before its store is deemed not answering: the usual
 * request timeout plus the bytes at the slowest healthy copy rate. Many stores (MinIO among them)
 * send nothing, not even headers, until the copy is done.
 */
export function copyTimeoutMs(cfg: S3Config, bytes: number): number {
  const rate = cfg.copyBytesPerSecond ?? DEFAULT_COPY_BYTES_PER_SECOND;
  return Math.min(MAX_TIMER_MS, cfg.requestTimeoutMs + Math.ceil((bytes / rate) * 1000));
}

/**
 * An S3 client. `copies`: for server-side copies only, whose connections may stay silent for as
 * long as the largest single copy takes (each copy call passes its own, size-scaled
 * requestTimeout; smithy 4.x has no per-call socket timeout).
 */
export function createS3Client(
  cfg: S3Config,
  purpose: 'requests' | 'copies' = 'requests',
): S3Client {
  const agentOptions = { keepAlive: true, maxSockets: 64 };
  const silenceMs =
    purpose === 'copies' ? copyTimeoutMs(cfg, MAX_SINGLE_COPY_BYTES) : cfg.requestTimeoutMs;
  return new S3Client({
    endpoint: cfg.endpoint,
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle,
    credentials:
      cfg.accessKeyId && cfg.secretAccessKey
        ? { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey }
        : undefined,
    // @NOTE Since SDK 3.729 the default (WHEN_SUPPORTED) sends streamed bodies with aws-chunked
    // framing and trailing CRC32, which several S3-compatible servers store verbatim. We compute
    // and verify SHA-256 ourselves, so ask for checksums only where the API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({
      connectionTimeout: 10_000,
      // @NOTE @smithy/node-http-handler 4.x only logs a warning when requestTimeout passes unless
      // throwOnRequestTimeout is set: a frozen S3 server held uploads and downloads indefinitely.
      // requestTimeout bounds each request until its response starts; socketTimeout bounds the
      // silence of a response body being read (a download whose store stopped mid-way).
      // @NOTE It counts silence, not the store's fault: a download whose reader pauses (a paused
      // video, backpressure) for longer than this is cut too; the player resumes it with a Range
      // request (tests/storage/s3-client.test.ts, "reader pauses").
      requestTimeout: silenceMs,
      throwOnRequestTimeout: true,
      socketTimeout: silenceMs,
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
    }),
    maxAttempts: 3,
  });
}

/** The server does not implement the call (s3rver lacks several). */
export function isUnsupported(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.name === 'NotImplemented' ||
    e?.name === 'MethodNotAllowed' ||
    e?.$metadata?.httpStatusCode === 501 ||
    e?.$metadata?.httpStatusCode === 405
  );
}

/** A 4xx answer: the store understood and refused (as opposed to being unreachable). */
export function isClientError(err: unknown): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  return status !== undefined && status >= 400 && status < 500;
}

export function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

/** Object Lock headers of a new object (see S3ObjectLock.lockParams). */
export interface LockParams {
  ObjectLockMode?: 'GOVERNANCE' | 'COMPLIANCE';
  ObjectLockRetainUntilDate?: Date;
}

export interface S3BucketOptions {
  /** Objects above this many bytes are copied by multipart copy (tests lower it). */
  maxSingleCopyBytes?: number;
  /** Part size of a multipart copy; S3 wants at least 5 MiB but for the last part. */
  copyPartBytes?: number;
  /** The client for server-side copies (default: createS3Client(cfg, 'copies')). */
  copyClient?: S3Client;
}

/**
 * The configured bucket and key prefix, with the operations the stores share. Keys given and
 * returned are without the configured prefix.
 */
export class S3Bucket {
  constructor(
    readonly client: S3Client,
    readonly cfg: S3Config,
    private readonly opts: S3BucketOptions = {},
  ) {}

  private ownCopyClient?: S3Client;

  /** Server-side copies go through this client, each with a timeout scaled to its size. */
  private get copyClient(): S3Client {
    return this.opts.copyClient ?? (this.ownCopyClient ??= createS3Client(this.cfg, 'copies'));
  }

  /** Options of a server-side copy call of `bytes` (see copyTimeoutMs). */
  private copyOptions(bytes: number): { requestTimeout: number } {
    return { requestTimeout: copyTimeoutMs(this.cfg, bytes) };
  }

  get name(): string {
    return this.cfg.bucket;
  }

  objectKey(key: string): string {
    return `${this.cfg.prefix}${key}`;
  }

  /** Size of an object, or undefined when it does not exist. */
  async stat(key: string): Promise<number | undefined> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
      );
      return head.ContentLength;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * An object, or the inclusive range of it, with its whole size as the server reports it.
   * exact() gives exactly the bytes asked for (it throws, having destroyed the body, when the
   * server served from past the range's start). Rejects with the SDK's error (isNotFound).
   */
  async getObject(
    key: string,
    range?: ByteRange,
  ): Promise<{ body: Readable; total: number | undefined; exact(): Readable }> {
    // Always an explicit first-last range: some S3-compatible servers (s3rver) mishandle suffix
    // ranges, and we already know the size.
    const res = await this.client.send(
      new GetObjectCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(key),
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }),
    );
    const body = res.Body as Readable;
    const total = parseContentRangeTotal(res.ContentRange) ?? res.ContentLength;
    const exact = (): Readable => {
      if (!range) return body;
      // Trust the bytes, not the server: if it answered with more than asked (a 200 with the
      // whole object, or a wider range), cut exactly the requested window out of what it sent.
      const servedFrom = parseContentRangeStart(res.ContentRange) ?? 0;
      const served = res.ContentLength;
      const wanted = range.end - range.start + 1;
      if (servedFrom === range.start && served === wanted) return body;
      if (servedFrom > range.start) {
        body.destroy();
        throw new Error(`storage served bytes from ${servedFrom}, asked from ${range.start}`);
      }
      // pipeline forwards errors both ways and stops reading the source once the window is full.
      return pipeline(body, new ByteWindow(range.start - servedFrom, wanted), () => undefined);
    };
    return { body, total, exact };
  }

  async deleteObject(key: string): Promise<void> {
    await this.client.send(
      new DeleteObjectCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
    );
  }

  /** Every object under a prefix, page by page, in key order. */
  async *listObjects(prefix: string): AsyncGenerator<StoredObject> {
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.cfg.bucket,
          Prefix: this.objectKey(prefix),
          ContinuationToken,
        }),
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key.slice(this.cfg.prefix.length),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
        };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({
          Bucket: this.cfg.bucket,
          Key: this.objectKey(key),
          UploadId: uploadId,
        }),
      );
    } catch (err) {
      // Already completed or aborted; a server without the call (s3rver) leaves it to lifecycle.
      if (!isNotFound(err) && !isUnsupported(err) && (err as Error).name !== 'NoSuchUpload')
        throw err;
    }
  }

  /** Multipart uploads in progress under a prefix; empty where the server cannot list them. */
  async listMultipart(
    prefix: string,
  ): Promise<{ key: string; uploadId: string; initiated: Date }[]> {
    const found: { key: string; uploadId: string; initiated: Date }[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.cfg.bucket,
            Prefix: this.objectKey(prefix),
            KeyMarker,
            UploadIdMarker,
          }),
        );
        for (const u of page.Uploads ?? []) {
          if (!u.Key || !u.UploadId) continue;
          found.push({
            key: u.Key.slice(this.cfg.prefix.length),
            uploadId: u.UploadId,
            initiated: u.Initiated ?? new Date(0),
          });
        }
        KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      } while (KeyMarker);
    } catch (err) {
      if (isUnsupported(err)) return found;
      throw err;
    }
    return found;
  }

  /**
   * A server-side copy with the given lock headers: one CopyObject up to the single-copy limit,
   * UploadPartCopy above it; through the copy client, with a timeout scaled to the size.
   */
  async copy(from: string, to: string, size: number, lock: LockParams): Promise<void> {
    if (size > (this.opts.maxSingleCopyBytes ?? MAX_SINGLE_COPY_BYTES)) {
      await this.copyInParts(from, to, size, lock);
      return;
    }
    await this.copyClient.send(
      new CopyObjectCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(to),
        CopySource: this.copySource(from),
        ...lock,
      }),
      this.copyOptions(size),
    );
  }

  private copySource(key: string): string {
    return encodeURI(`${this.cfg.bucket}/${this.objectKey(key)}`);
  }

  private async copyInParts(from: string, to: string, size: number, lock: LockParams) {
    const Bucket = this.cfg.bucket;
    const Key = this.objectKey(to);
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket, Key, ...lock }),
    );
    try {
      const parts: { ETag?: string; PartNumber: number }[] = [];
      const partBytes = this.opts.copyPartBytes ?? COPY_PART_BYTES;
      for (let start = 0, n = 1; start < size; start += partBytes, n++) {
        const end = Math.min(start + partBytes, size) - 1;
        const { CopyPartResult } = await this.copyClient.send(
          new UploadPartCopyCommand({
            Bucket,
            Key,
            UploadId,
            PartNumber: n,
            CopySource: this.copySource(from),
            CopySourceRange: `bytes=${start}-${end}`,
          }),
          this.copyOptions(end - start + 1),
        );
        parts.push({ ETag: CopyPartResult?.ETag, PartNumber: n });
      }
      await this.copyClient.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
        this.copyOptions(size),
      );
    } catch (err) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }))
        .catch(() => undefined);
      throw err;
    }
  }

  /** Destroys the clients' connections. */
  close(): void {
    this.client.destroy();
    this.ownCopyClient?.destroy();
  }
}

function parseContentRangeStart(header: string | undefined): number | undefined {
  const m = header && /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header);
  return m ? Number(m[1]) : undefined;
}

function parseContentRangeTotal(header: string | undefined): number | undefined {
  const m = header && /^bytes \d+-\d+\/(\d+)$/.exec(header);
  return m ? Number(m[1]) : undefined;
}

/** Passes through `length` bytes after skipping `skip`, then ends. */
class ByteWindow extends Transform {
  constructor(
    private skip: number,
    private remaining: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.remaining === 0) return cb();
    if (this.skip >= chunk.length) {
      this.skip -= chunk.length;
      return cb();
    }
    const part = chunk.subarray(this.skip, this.skip + this.remaining);
    this.skip = 0;
    this.remaining -= part.length;
    if (part.length) this.push(part);
    if (this.remaining === 0) this.push(null);
    cb();
  }
}
