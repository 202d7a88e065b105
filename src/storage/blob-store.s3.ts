import { createHash, randomUUID } from 'node:crypto';
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
  GetObjectLegalHoldCommand,
  GetObjectRetentionCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { S3Config } from '../base/config';
import {
  assertRecordKey,
  BlobUnavailableError,
  blobKeyFor,
  type BlobNamespace,
  isBlobKey,
  isPromotableKey,
  newStagingKey,
  RESUMABLE_PREFIX,
  type ResumableState,
  STAGING_PREFIX,
  stagingOwner,
  type StagingOwner,
  type BlobStore,
  type ByteRange,
  type PromoteResult,
  type StoredObject,
  WormNotInForceError,
} from './blob-store';
import {
  WORM_NOT_CONFIGURED,
  type WormLedger,
  type WormObject,
  type WormState,
  type WormStatus,
} from './worm';

/** S3 allows a single CopyObject up to 5 GiB; larger blobs are promoted with UploadPartCopy. */
const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;
const COPY_PART_BYTES = 1024 ** 3;
/**
 * How far short of now plus the configured days a retention read back may end and still count as
 * the configured one: the copy (or a clock between us and the store) may take a while.
 */
const RETENTION_SLACK_MS = 15 * 60_000;

export interface S3BlobStoreOptions {
  /** The instance writing through this store: its id goes into staging keys. */
  stagingOwner?: StagingOwner;
  /** Told every WORM read-back (metrics, /readyz). */
  worm?: WormLedger;
  /** Blobs above this many bytes are promoted by multipart copy (tests lower it). */
  maxSingleCopyBytes?: number;
  /** Part size of a multipart copy; S3 wants at least 5 MiB but for the last part. */
  copyPartBytes?: number;
  /** The client for server-side copies (default: createS3Client(cfg, 'copies')). */
  copyClient?: S3Client;
}

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
      // request (tests/storage/blob-store.contract.test.ts, "reader pauses").
      requestTimeout: silenceMs,
      throwOnRequestTimeout: true,
      socketTimeout: silenceMs,
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
    }),
    maxAttempts: 3,
  });
}

/** Blobs in an S3-compatible bucket. Every quirk of S3 servers is handled in this one module. */
export class S3BlobStore implements BlobStore {
  readonly driver = 's3' as const;

  constructor(
    private readonly client: S3Client,
    private readonly cfg: S3Config,
    private readonly opts: S3BlobStoreOptions = {},
  ) {
    if (cfg.objectLock) opts.worm?.setRechecker((problem) => this.recheckWorm(problem));
  }

  private ownCopyClient?: S3Client;

  /** Server-side copies go through this client, each with a timeout scaled to its size. */
  private get copyClient(): S3Client {
    return this.opts.copyClient ?? (this.ownCopyClient ??= createS3Client(this.cfg, 'copies'));
  }

  /** Options of a server-side copy call of `bytes` (see copyTimeoutMs). */
  private copyOptions(bytes: number): { requestTimeout: number } {
    return { requestTimeout: copyTimeoutMs(this.cfg, bytes) };
  }

  get legalHoldSupported(): boolean {
    return this.cfg.objectLock !== undefined;
  }

  /**
   * Object Lock retention for a new evidence object or record; none without WORM configured, and
   * none for derivatives, which are rebuilt from the originals and must go when their original does.
   */
  private lockParams(key?: string) {
    const lock = this.cfg.objectLock;
    if (!lock || key?.startsWith('derived/')) return {};
    return {
      ObjectLockMode: lock.mode,
      ObjectLockRetainUntilDate: new Date(Date.now() + lock.retentionDays * 86_400_000),
    };
  }

  private objectKey(key: string): string {
    return `${this.cfg.prefix}${key}`;
  }

  async writeStaging(body: Readable): Promise<string> {
    const key = await newStagingKey(this.opts.stagingOwner);
    // lib-storage sends small bodies as one PutObject and large ones as a multipart upload,
    // holding at most partSize × queueSize bytes in memory.
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.cfg.bucket, Key: this.objectKey(key), Body: body },
      partSize: this.cfg.partSizeBytes,
      queueSize: this.cfg.uploadConcurrency,
      leavePartsOnError: false,
    });
    // A failing source stream must abort the upload rather than complete it with fewer bytes.
    const sourceFailed = new Promise<never>((_, reject) => body.once('error', reject));
    const done = upload.done();
    // Once the source failed, done() rejects too (aborted); that second rejection is expected.
    done.catch(() => undefined);
    try {
      await Promise.race([done, sourceFailed]);
    } catch (err) {
      await upload.abort().catch(() => undefined);
      await this.deleteObject(key).catch(() => undefined);
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
      await this.copy(stagingKey, key, size);
      created = true;
    }
    // Read back, never assumed: a new copy and an existing blob alike (one promoted before WORM
    // was configured, or by a store that dropped the lock, gets it now).
    const worm = await this.ensureRetention(key, 'evidence');
    // The blob is safe at its content address; a staging copy that fails to delete now is
    // removed by the staging sweep, and must not turn a durable upload into an error.
    await this.discardStaging(stagingKey).catch(() => undefined);
    return { key, created, worm };
  }

  /**
   * Makes sure the configured Object Lock retention is on an evidence object or custody record, as
   * read back from the store. Some stores ignore the lock headers of a CopyObject or multipart
   * upload (Ceph radosgw 16.2 does, while honouring them on PutObject), and a bucket default
   * retention may have given the object a shorter one: a retention counts as in force only when it
   * reaches the configured one (now plus the days, less RETENTION_SLACK_MS), otherwise it is
   * extended with PutObjectRetention (extending is allowed in both modes; a longer retention is
   * kept as it is) and read back again. What the store still does not show is `not_in_force`.
   */
  private async ensureRetention(
    key: string,
    object: WormObject,
    observe = true,
  ): Promise<WormState> {
    const lock = this.cfg.objectLock;
    if (!lock || key.startsWith('derived/')) return WORM_NOT_CONFIGURED;
    let found = await this.readRetention(key);
    if (!this.reachesConfigured(found)) {
      const wanted = Date.now() + lock.retentionDays * 86_400_000;
      try {
        await this.client.send(
          new PutObjectRetentionCommand({
            Bucket: this.cfg.bucket,
            Key: this.objectKey(key),
            Retention: {
              // COMPLIANCE cannot be turned into GOVERNANCE: an object under it stays so.
              Mode: found.mode === 'COMPLIANCE' ? 'COMPLIANCE' : lock.mode,
              RetainUntilDate: new Date(Math.max(wanted, found.until?.getTime() ?? 0)),
            },
          }),
        );
      } catch (err) {
        // A store (or bucket) without Object Lock refuses it: reported below as not in force.
        if (!isClientError(err) && !isUnsupported(err)) throw err;
      }
      found = await this.readRetention(key);
    }
    const state: WormState = {
      status: this.reachesConfigured(found) ? 'in_force' : 'not_in_force',
      mode: found.mode,
      retainUntil: found.until ?? null,
    };
    if (observe) this.opts.worm?.observe(object, key, state.status);
    return state;
  }

  /** Retention of the configured mode (or COMPLIANCE) until at least now plus the days (less slack). */
  private reachesConfigured(r: { mode: WormState['mode']; until?: Date }): boolean {
    const lock = this.cfg.objectLock!;
    // COMPLIANCE is stronger than GOVERNANCE: either satisfies GOVERNANCE.
    const modeOk = r.mode === lock.mode || r.mode === 'COMPLIANCE';
    const required = Date.now() + lock.retentionDays * 86_400_000 - RETENTION_SLACK_MS;
    return modeOk && r.until !== undefined && r.until.getTime() >= required;
  }

  /** The object's retention as the store reports it (mode null: none, or not one S3 defines). */
  private async readRetention(key: string): Promise<{ mode: WormState['mode']; until?: Date }> {
    const head = await this.client.send(
      new HeadObjectCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
    );
    let mode: string | undefined = head.ObjectLockMode;
    let until = head.ObjectLockRetainUntilDate;
    if (!mode) {
      // Not every store reports retention on HEAD: ask for it directly.
      try {
        const { Retention } = await this.client.send(
          new GetObjectRetentionCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
        );
        mode = Retention?.Mode;
        until = Retention?.RetainUntilDate;
      } catch (err) {
        // No retention on the object (ObjectLockConfigurationNotFoundError, 404), or no Object
        // Lock at all: not in force.
        if (!isClientError(err) && !isUnsupported(err)) throw err;
      }
    }
    return {
      mode: mode === 'GOVERNANCE' || mode === 'COMPLIANCE' ? mode : null,
      ...(until ? { until } : {}),
    };
  }

  /**
   * An archived blob's retention judged against now, read only: `in_force` while a retention of
   * the configured mode lasts, `expired` once its retain-until has passed (what the scrub records
   * for an item whose recorded retention lapsed), `not_in_force` with none at all.
   */
  private async currentRetention(key: string): Promise<WormState> {
    const lock = this.cfg.objectLock;
    if (!lock) return WORM_NOT_CONFIGURED;
    const found = await this.readRetention(key);
    const modeOk = found.mode === lock.mode || found.mode === 'COMPLIANCE';
    const status =
      !modeOk || !found.until
        ? 'not_in_force'
        : found.until.getTime() > Date.now()
          ? 'in_force'
          : 'expired';
    return { status, mode: found.mode, retainUntil: found.until ?? null };
  }

  /** /readyz's re-check of a latched problem's object (see WormLedger.refresh). */
  private async recheckWorm(problem: { object: WormObject; key: string }): Promise<WormStatus> {
    if (problem.object === 'legal_hold') {
      // Read only: whether a hold is wanted is the database's to say (the scrub mirrors it).
      const { LegalHold } = await this.client.send(
        new GetObjectLegalHoldCommand({
          Bucket: this.cfg.bucket,
          Key: this.objectKey(problem.key),
        }),
      );
      return LegalHold?.Status === 'ON' ? 'in_force' : 'not_in_force';
    }
    // As after a write: the configured retention, applied where the object lacks it.
    return (await this.ensureRetention(problem.key, problem.object, false)).status;
  }

  async repair(
    stagingKey: string,
    sha256: string,
    size: number,
    opts: { keepStaged?: boolean } = {},
  ): Promise<{ key: string; previous?: string }> {
    const key = blobKeyFor(sha256);
    const Key = this.objectKey(key);
    const head = await this.client
      .send(new HeadObjectCommand({ Bucket: this.cfg.bucket, Key }))
      .catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
    // Never a delete: the copy is a new object (a new version where the bucket keeps versions,
    // with the damaged one left as it is, locked or not).
    await this.copy(stagingKey, key, size);
    // A resumable upload's copy stays until it is archived (a retry after a failed commit needs it).
    if (!opts.keepStaged) await this.discardStaging(stagingKey).catch(() => undefined);
    const previous = head?.VersionId && head.VersionId !== 'null' ? head.VersionId : undefined;
    return { key, ...(previous ? { previous } : {}) };
  }

  /**
   * A server-side copy with the object's lock headers: one CopyObject up to the single-copy limit,
   * UploadPartCopy above it; through the copy client, with a timeout scaled to the size.
   */
  private async copy(from: string, to: string, size: number): Promise<void> {
    if (size > (this.opts.maxSingleCopyBytes ?? MAX_SINGLE_COPY_BYTES)) {
      await this.copyInParts(from, to, size);
      return;
    }
    await this.copyClient.send(
      new CopyObjectCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(to),
        CopySource: this.copySource(from),
        ...this.lockParams(to),
      }),
      this.copyOptions(size),
    );
  }

  private copySource(key: string): string {
    return encodeURI(`${this.cfg.bucket}/${this.objectKey(key)}`);
  }

  private async copyInParts(from: string, to: string, size: number): Promise<void> {
    const Bucket = this.cfg.bucket;
    const Key = this.objectKey(to);
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket, Key, ...this.lockParams(to) }),
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

  async discardStaging(stagingKey: string): Promise<void> {
    if (!isPromotableKey(stagingKey)) throw new Error(`not a staging key: ${stagingKey}`);
    await this.deleteObject(stagingKey);
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
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
    );
    const state: MultipartState = {
      uploadId: UploadId!,
      partSize: this.cfg.partSizeBytes,
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
    for await (const o of this.listObjects(`${key}.tail-`)) {
      if (o.key !== tailKey(key, offset)) await this.deleteObject(o.key);
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
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.cfg.bucket,
          Key: this.objectKey(tailKey(key, parts.length * state.partSize + length)),
          Body: Buffer.concat(pending, length),
        }),
      );
    }
    return { ...state, parts, tail: length };
  }

  async completeResumable(key: string, raw: ResumableState, size: number): Promise<void> {
    const state = multipartState(raw);
    if ((await this.stat(key)) === size) return; // completed by an earlier attempt
    const parts = [...state.parts];
    if (state.tail > 0) {
      const end = parts.length * state.partSize + state.tail;
      const tail = await this.getTail(key, end, state.tail);
      parts.push(await this.uploadPart(key, state.uploadId, parts.length + 1, tail));
    }
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(key),
        UploadId: state.uploadId,
        MultipartUpload: { Parts: parts.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    const stored = await this.stat(key);
    if (stored !== size)
      throw new Error(`resumable upload ${key} completed with ${stored} bytes, not ${size}`);
    for await (const o of this.listObjects(`${key}.tail-`)) await this.deleteObject(o.key);
  }

  async discardResumable(key: string, raw: ResumableState): Promise<void> {
    const { uploadId } = multipartState(raw);
    await this.abortMultipart(key, uploadId);
    for await (const o of this.listObjects(`${key}.tail-`)) await this.deleteObject(o.key);
    await this.deleteObject(key);
  }

  async sweepResumable(before: Date, isLive: (key: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    for await (const o of this.listObjects(RESUMABLE_PREFIX)) {
      const key = o.key.replace(/\.tail-\d+$/, '');
      if (o.lastModified < before && isPromotableKey(key) && !(await isLive(key))) {
        await this.deleteObject(o.key);
        removed++;
      }
    }
    // Multipart uploads whose row never committed (or whose abort failed) hold parts S3 bills for.
    for (const u of await this.listMultipart(RESUMABLE_PREFIX)) {
      if (u.initiated < before && isPromotableKey(u.key) && !(await isLive(u.key))) {
        await this.abortMultipart(u.key, u.uploadId);
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
    const { ETag } = await this.client.send(
      new UploadPartCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(key),
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
    const res = await this.client.send(
      new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(tailKey(key, end)) }),
    );
    const bytes = Buffer.from(await res.Body!.transformToByteArray());
    if (bytes.length !== size) {
      throw new Error(`resumable upload ${key}: tail holds ${bytes.length} bytes, not ${size}`);
    }
    return bytes;
  }

  private async abortMultipart(key: string, uploadId: string): Promise<void> {
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
  private async listMultipart(
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

  async sweepStaging(before: Date, isGone?: (owner: string) => Promise<boolean>): Promise<number> {
    const stale = async (key: string, at: Date) => {
      const owner = stagingOwner(key);
      return at < before || Boolean(owner && isGone && (await isGone(owner)));
    };
    let removed = 0;
    for await (const o of this.list(STAGING_PREFIX)) {
      if (await stale(o.key, o.lastModified)) {
        await this.deleteObject(o.key);
        removed++;
      }
    }
    // A large upload cut off by a crash is an unfinished multipart upload, not an object: its
    // parts are invisible to listings and billed until aborted.
    for (const u of await this.listMultipart(STAGING_PREFIX)) {
      if (isPromotableKey(u.key) && (await stale(u.key, u.initiated))) {
        await this.abortMultipart(u.key, u.uploadId);
        removed++;
      }
    }
    return removed;
  }

  private async deleteObject(key: string): Promise<void> {
    await this.client.send(
      new DeleteObjectCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
    );
  }

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

  async read(key: string, expectedSize: number, range?: ByteRange): Promise<Readable> {
    // Always an explicit first-last range: some S3-compatible servers (s3rver) mishandle suffix
    // ranges, and we already know the size.
    const res = await this.client
      .send(
        new GetObjectCommand({
          Bucket: this.cfg.bucket,
          Key: this.objectKey(key),
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      )
      .catch((err: unknown) => {
        throw isNotFound(err) ? new BlobUnavailableError(key, 'missing') : err;
      });
    const body = res.Body as Readable;
    const total = parseContentRangeTotal(res.ContentRange) ?? res.ContentLength;
    if (total !== expectedSize) {
      body.destroy();
      throw new BlobUnavailableError(
        key,
        'size_mismatch',
        `${total} bytes, expected ${expectedSize}`,
      );
    }
    if (!range) return body;
    // Trust the bytes, not the server: if it answered with more than asked (a 200 with the whole
    // object, or a wider range), cut exactly the requested window out of what it sent.
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
  }

  async delete(key: string): Promise<void> {
    if (!isBlobKey(key)) throw new Error(`not a promoted blob key: ${key}`);
    await this.deleteObject(key);
  }

  list(prefix: 'sha256/' | 'staging/' | 'resumable/'): AsyncIterable<StoredObject> {
    return this.listObjects(prefix);
  }

  /** Every object under a prefix (keys without the configured prefix), page by page, in key order. */
  private async *listObjects(prefix: string): AsyncGenerator<StoredObject> {
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

  async putRecord(key: string, body: Buffer): Promise<WormState> {
    assertRecordKey(key);
    const existing = await this.getRecord(key);
    if (existing) {
      if (existing.equals(body)) return this.ensureRetention(key, 'record');
      throw new Error(`custody record ${key} exists with other content`);
    }
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(key),
        Body: body,
        ContentType: 'application/json',
        // S3 requires Content-MD5 (or a checksum) on every PUT into an Object Lock bucket.
        ContentMD5: createHash('md5').update(body).digest('base64'),
        ...this.lockParams(),
      }),
    );
    return this.ensureRetention(key, 'record');
  }

  async getRecord(key: string): Promise<Buffer | undefined> {
    assertRecordKey(key);
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
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
    for await (const o of this.listObjects(prefix)) keys.push(o.key);
    return keys.sort();
  }

  async setLegalHold(key: string, on: boolean): Promise<void> {
    if (!this.cfg.objectLock) return;
    const want = on ? 'ON' : 'OFF';
    await this.client.send(
      new PutObjectLegalHoldCommand({
        Bucket: this.cfg.bucket,
        Key: this.objectKey(key),
        LegalHold: { Status: want },
      }),
    );
    // Read back: a store that accepted the request without setting the flag is found out here.
    let got: string | undefined;
    try {
      const { LegalHold } = await this.client.send(
        new GetObjectLegalHoldCommand({ Bucket: this.cfg.bucket, Key: this.objectKey(key) }),
      );
      got = LegalHold?.Status;
    } catch (err) {
      if (!isClientError(err) && !isUnsupported(err)) throw err;
    }
    const shows = (got ?? 'OFF') === want;
    if (on) this.opts.worm?.observe('legal_hold', key, shows ? 'in_force' : 'not_in_force');
    if (!shows)
      throw new WormNotInForceError(
        key,
        `legal hold ${want} requested, the store shows ${got ?? 'none'}`,
      );
  }

  async verifyWorm(key: string, opts: { apply?: boolean } = {}): Promise<WormState> {
    if (!isBlobKey(key)) throw new Error(`not a promoted blob key: ${key}`);
    if (opts.apply === false) return this.currentRetention(key);
    return this.ensureRetention(key, 'evidence');
  }

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.cfg.bucket }));
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.ownCopyClient?.destroy();
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

function isUnsupported(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.name === 'NotImplemented' ||
    e?.name === 'MethodNotAllowed' ||
    e?.$metadata?.httpStatusCode === 501 ||
    e?.$metadata?.httpStatusCode === 405
  );
}

/** A 4xx answer: the store understood and refused (as opposed to being unreachable). */
function isClientError(err: unknown): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  return status !== undefined && status >= 400 && status < 500;
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
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
