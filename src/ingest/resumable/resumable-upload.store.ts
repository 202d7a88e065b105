import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { DataStore, ERRORS, Upload } from '@tus/utils';
import type { RequestActor } from '../../custody/audit.service';
import type { HashPool } from '../../custody/hash-pool';
import type { Db } from '../../db/database';
import { AppError } from '../../errors';
import type { Logger } from '../../logger';
import { blobKeyFor, type BlobStore } from '../../storage/blob-store';
import { sniffContentType, SNIFF_BYTES } from '../content-sniffer';
import type { IngestResult, IngestService } from '../ingest.service';
import {
  parseUploadFields,
  unknownField,
  UPLOAD_FIELD_NAMES,
  type UploadFields,
} from '../upload-form';
import { assertAllowed } from '../upload-storage-engine';
import type { ResumableUploadRepository, ResumableUploadRow } from './resumable-upload.repository';
import type { UploadLocker } from './upload-locker';

/** What the creating request established, handed from the route's hook to create(). */
export interface UploadRequestContext {
  actor: RequestActor;
  /** The raw field values as parseUploadFields accepts them (validated again when archived). */
  fields: Record<string, unknown>;
  filename?: string;
}

const UNFINISHED_GRACE_MS = 60_000;
const ORPHAN_GRACE_MS = 3_600_000;
const SWEEP_BATCH = 100;

/** The SHA-256 of an upload's bytes [0, offset), kept by the instance that received all of them. */
interface LiveHash {
  hash: Hash;
  offset: number;
  usedAt: number;
}

/**
 * The tus DataStore of the archive. The database row is the upload's truth: its offset and the
 * store's own progress are advanced together only once the bytes are durable, so any instance
 * resumes any upload, after a crash too.
 *
 * The SHA-256 is computed as the bytes arrive, with node:crypto, by the instance receiving them; it
 * lives in that instance's memory, one small object per upload. An upload whose PATCHes all reached
 * one instance (the normal case) is therefore hashed without a second read. One that moved to
 * another instance, or outlived a crash, is hashed by one read of its bytes when its last byte is
 * in: correct always, and the re-read is paid only then.
 *
 * An upload becomes evidence inside the request that delivers its last byte, before that request
 * is answered: a client that saw its upload complete finds the item. If that step is cut off, the
 * next HEAD (what a client sends to resume) or the sweep finishes it.
 */
export class ResumableUploadStore extends DataStore {
  private readonly pending = new WeakMap<Upload, UploadRequestContext>();
  /**
   * Why the bytes of the current request (a PATCH, or a POST with its first bytes) were refused
   * mid-stream. tus reports a write stopped from inside the stream as a plain abort; the route
   * asks here for the real cause. Held by the request's own scope (see inRequest()), never by
   * upload id: no other request can take it, and nothing outlives the request.
   */
  private readonly requests = new AsyncLocalStorage<{
    refusal?: AppError;
    /** The discarding of the refused upload, which the answer waits for. */
    discarded?: Promise<void>;
  }>();
  /** Hashes of the uploads this instance received from their first byte on, by upload id. */
  private readonly live = new Map<string, LiveHash>();
  /**
   * The row getUpload() read, for the write() that tus calls next in the same request. tus calls
   * getUpload() only under the upload's lock (HEAD, PATCH, DELETE, the POST that creates it; GET
   * is not routed), and only a lock holder changes a row, so the row is current when write() runs.
   */
  private readonly loaded = new Map<string, ResumableUploadRow>();
  /** Which key created each upload this instance has seen: that never changes. */
  private readonly owners = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly rows: ResumableUploadRepository,
    private readonly store: BlobStore,
    private readonly ingest: IngestService,
    private readonly locker: UploadLocker,
    private readonly hashes: HashPool,
    private readonly logger: Logger,
    private readonly opts: {
      expiryMs: number;
      /** Told of a discarded upload whose bytes were promoted but never archived. */
      onAbandonedDigest?: (sha256: string) => Promise<void>;
    },
  ) {
    super();
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration'];
  }

  /** Called by the creation hook: the request's actor and fields travel with the Upload object. */
  attach(upload: Upload, ctx: UploadRequestContext): void {
    this.pending.set(upload, ctx);
  }

  override async create(upload: Upload): Promise<Upload> {
    const ctx = this.pending.get(upload);
    if (!ctx || upload.size === undefined) throw new Error('upload created outside its request');
    const { key, state } = await this.store.createResumable();
    const now = new Date();
    try {
      await this.rows.insert(this.db, {
        id: upload.id,
        created_by_key_id: ctx.actor.keyId,
        actor: ctx.actor,
        fields: ctx.fields,
        metadata: upload.metadata ?? {},
        filename: ctx.filename ?? null,
        upload_length: upload.size,
        storage_key: key,
        storage_state: state,
        created_at: now,
        expires_at: new Date(now.getTime() + this.opts.expiryMs),
      });
    } catch (err) {
      await this.store.discardResumable(key, state).catch(() => undefined);
      throw err;
    }
    this.owners.set(upload.id, ctx.actor.keyId);
    upload.creation_date = now.toISOString();
    return upload;
  }

  override async getUpload(id: string): Promise<Upload> {
    const row = await this.rows.find(this.db, id);
    if (!row) {
      this.loaded.delete(id);
      throw ERRORS.FILE_NOT_FOUND;
    }
    this.loaded.set(id, row);
    return toUpload(row);
  }

  /** Runs one request's handling by tus, so that a refusal of its bytes is kept for it alone. */
  inRequest<T>(fn: () => Promise<T>): Promise<T> {
    return this.requests.run({}, fn);
  }

  /**
   * The refusal that stopped the current request's bytes (inside inRequest()), once, when the
   * refused upload is gone: tus may answer before write() returns.
   */
  async takeRefusal(): Promise<AppError | undefined> {
    const scope = this.requests.getStore();
    const err = scope?.refusal;
    if (scope) scope.refusal = undefined;
    await scope?.discarded;
    return err;
  }

  /**
   * Discards an upload its creating request failed to create as the client asked (it was answered
   * with no Location, so no client can resume it): its row and bytes go now, not at its expiry.
   * An upload already archived stays (its item is evidence). Takes the upload's lock.
   */
  async abandon(id: string): Promise<void> {
    await this.withLock(id, async () => {
      const row = await this.rows.find(this.db, id);
      if (row && !row.item_id) await this.discard(row);
    });
  }

  /**
   * What the route checks before tus handles a request: whose upload it is, whether every byte is
   * in, and the archived item's result once there is one. One read of the row.
   */
  async status(
    id: string,
  ): Promise<{ owner: string; complete: boolean; result?: IngestResult } | undefined> {
    const row = await this.rows.find(this.db, id);
    if (!row) return undefined;
    this.owners.set(id, row.created_by_key_id);
    return {
      owner: row.created_by_key_id,
      complete: row.upload_offset === row.upload_length,
      result: row.item_id ? (row.result as IngestResult) : undefined,
    };
  }

  /**
   * The id of the key that created the upload, for the route's check before a PATCH: from memory
   * after the first request, as it never changes (an upload removed since is tus's 404 then).
   */
  async owner(id: string): Promise<string | undefined> {
    return this.owners.get(id) ?? (await this.status(id))?.owner;
  }

  override async write(
    stream: IncomingMessage | Readable,
    id: string,
    offset: number,
  ): Promise<number> {
    const loaded = this.loaded.get(id);
    this.loaded.delete(id);
    const row = loaded?.upload_offset === offset ? loaded : await this.rows.find(this.db, id);
    if (!row) throw ERRORS.FILE_NOT_FOUND;
    if (row.item_id) return row.upload_offset;
    if (row.upload_offset !== offset) throw ERRORS.INVALID_OFFSET;
    const kind = (row.fields as { kind: UploadFields['kind'] }).kind;
    // The running hash, if this instance holds one over exactly the bytes recorded so far (bytes
    // below the recorded offset never change, so the offsets agreeing is enough); otherwise the
    // upload is hashed by a read at its end. Taken out of the map until this write is recorded.
    let live = this.live.get(id);
    this.live.delete(id);
    if (live?.offset !== offset) live = offset === 0 ? newLiveHash() : undefined;
    const length = row.upload_length;
    let written = 0;
    let head = row.head;
    let contentType = row.content_type;
    async function* measured(): AsyncGenerator<Buffer> {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (offset + written + chunk.length > length) throw ERRORS.ERR_SIZE_EXCEEDED;
        live?.hash.update(chunk);
        written += chunk.length;
        if (contentType === null) {
          head = Buffer.concat([head, chunk.subarray(0, SNIFF_BYTES - head.length)]);
          if (head.length >= SNIFF_BYTES || offset + written === length) {
            // The bytes decide the type, as for every upload; a wrong one stops it right here.
            contentType = sniffContentType(head);
            assertAllowed(kind, contentType);
          }
        }
        yield chunk;
      }
    }
    let storageState;
    try {
      storageState = await this.store.appendResumable(
        row.storage_key,
        row.storage_state,
        offset,
        measured(),
      );
    } catch (err) {
      if (err instanceof AppError) {
        const discarded = this.discard(row);
        const scope = this.requests.getStore();
        if (scope) {
          scope.refusal = err;
          scope.discarded = discarded.catch(() => undefined);
        }
        await discarded;
      }
      throw err;
    }
    const newOffset = offset + written;
    // Recorded on the session that holds the upload's lock, so an instance that lost its lock
    // (and whose upload another may have taken and truncated since) records nothing.
    const advance = this.rows
      .advanceQuery(this.db, id, offset, {
        offset: newOffset,
        storageState,
        head: contentType === null ? head : Buffer.alloc(0),
        contentType,
      })
      .compile();
    const res = await this.locker.fenced(id, advance.sql, advance.parameters);
    if (res.rowCount !== 1) throw ERRORS.INVALID_OFFSET;
    if (live) this.live.set(id, { hash: live.hash, offset: newOffset, usedAt: Date.now() });
    if (newOffset === length) await this.finish(id);
    return newOffset;
  }

  /**
   * Archives an upload whose every byte is in, once: the item's result is kept on the row, so a
   * repeated call (a client's HEAD after a lost answer) returns it again. Call under the lock.
   */
  async finish(id: string): Promise<IngestResult | undefined> {
    const row = await this.rows.find(this.db, id);
    if (!row || row.upload_offset !== row.upload_length) return undefined;
    if (row.item_id) return row.result as IngestResult;
    const size = row.upload_length;
    let result: IngestResult;
    try {
      // Recorded before the bytes move: a first attempt that promoted them and then failed leaves
      // them at their address, and only the digest says where that is.
      const sha256 = row.sha256 ?? (await this.digest(row));
      if (
        (await this.store.stat(blobKeyFor(sha256))) !== size ||
        // A damaged blob has the right size: these bytes are needed to repair it.
        (await this.ingest.isDamaged(sha256))
      ) {
        await this.store.completeResumable(row.storage_key, row.storage_state, size);
      }
      result = await this.ingest.ingest({
        principal: row.actor as RequestActor,
        staged: {
          stagingKey: row.storage_key,
          sha256,
          size,
          contentType: row.content_type ?? sniffContentType(row.head),
        },
        fields: row.fields,
        originalFilename: row.filename ?? undefined,
        // The upload's own id: a repeated finish answers with the first result, not a duplicate.
        idempotencyKey: `tus-${id}`,
        keepStaged: true,
      });
    } catch (err) {
      // Refused for what the bytes or fields are (hash mismatch, a deleted item's bytes): the
      // upload can never succeed, so nothing of it is kept. Other failures are retried (not_ready:
      // this instance lost its registration mid-commit; the next attempt archives it).
      if (err instanceof AppError && err.code !== 'not_ready') await this.discard(row);
      throw err;
    }
    await this.rows.markArchived(this.db, id, result.item.id, result);
    // The bytes now live at their content address; whatever the store kept of the upload goes.
    await this.store.discardResumable(row.storage_key, row.storage_state).catch((err) => {
      this.logger.warn({ err, uploadId: id }, 'resumable upload leftovers not removed');
    });
    return result;
  }

  /** The SHA-256 of every byte of a complete upload: the running hash, or one read of them. */
  private async digest(row: ResumableUploadRow): Promise<string> {
    const size = row.upload_length;
    const live = this.live.get(row.id);
    this.live.delete(row.id);
    let sha256: string;
    if (live?.offset === size) {
      sha256 = live.hash.digest('hex');
    } else {
      // Complete first: on S3 the bytes are readable only as one object.
      await this.store.completeResumable(row.storage_key, row.storage_state, size);
      const read = await this.hashes.hash(() => this.store.read(row.storage_key, size));
      if (read.size !== size) throw new Error(`upload ${row.id}: read ${read.size} of ${size}`);
      sha256 = read.sha256;
      this.logger.info(
        { uploadId: row.id, size },
        'resumable upload hashed by a read of its bytes',
      );
    }
    await this.rows.setDigest(this.db, row.id, sha256);
    return sha256;
  }

  override async remove(id: string): Promise<void> {
    const row = await this.rows.find(this.db, id);
    if (!row) throw ERRORS.FILE_NOT_FOUND;
    await this.discard(row);
    this.logger.info({ uploadId: id, offset: row.upload_offset }, 'resumable upload terminated');
  }

  override getExpiration(): number {
    return this.opts.expiryMs;
  }

  /**
   * Removes expired uploads (their bytes and rows), store leftovers no row knows, and finishes
   * uploads whose last byte arrived but whose archiving was cut off. Safe on every instance.
   */
  override async deleteExpired(): Promise<number> {
    return this.sweep(new Date());
  }

  /** The sweep as it runs at `now` (tests look ahead in time with it). */
  async sweep(now: Date): Promise<number> {
    let removed = 0;
    for (const row of await this.rows.expired(this.db, now, SWEEP_BATCH)) {
      await this.withLock(row.id, async () => {
        const current = await this.rows.find(this.db, row.id);
        if (current) await this.discard(current);
      });
      removed++;
    }
    // Running hashes of uploads that went quiet here (finished elsewhere, abandoned, expired): a
    // client that comes back later costs one read at the end instead.
    // Rows a HEAD read and no PATCH took, and owners of uploads that may be gone: a request in
    // between reads its row again.
    this.loaded.clear();
    this.owners.clear();
    for (const [id, live] of this.live) {
      if (live.usedAt < now.getTime() - ORPHAN_GRACE_MS) this.live.delete(id);
    }
    removed += await this.store.sweepResumable(new Date(now.getTime() - ORPHAN_GRACE_MS), (key) =>
      this.rows.existsByKey(this.db, key),
    );
    const stalled = await this.rows.unfinished(
      this.db,
      new Date(now.getTime() - UNFINISHED_GRACE_MS),
      SWEEP_BATCH,
    );
    for (const id of stalled) {
      await this.withLock(id, () => this.finish(id)).catch((err) => {
        this.logger.warn({ err, uploadId: id }, 'finishing a complete resumable upload failed');
      });
    }
    return removed;
  }

  async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const lock = this.locker.newLock(id);
    await lock.lock(new AbortController().signal, () => undefined);
    try {
      return await fn();
    } finally {
      await lock.unlock();
    }
  }

  private async discard(row: ResumableUploadRow): Promise<void> {
    this.live.delete(row.id);
    this.loaded.delete(row.id);
    this.owners.delete(row.id);
    if (!row.item_id) await this.store.discardResumable(row.storage_key, row.storage_state);
    await this.rows.delete(this.db, row.id);
    // A first attempt may have promoted the bytes before failing: no row needs them now.
    if (!row.item_id && row.sha256) await this.opts.onAbandonedDigest?.(row.sha256);
  }
}

function toUpload(row: ResumableUploadRow): Upload {
  return new Upload({
    id: row.id,
    size: row.upload_length,
    offset: row.upload_offset,
    metadata: row.metadata,
    creation_date: row.created_at.toISOString(),
  });
}

const newLiveHash = (): LiveHash => ({ hash: createHash('sha256'), offset: 0, usedAt: Date.now() });

/**
 * Keys tus clients add by habit, accepted and never trusted: Uppy sends `name`, `type` and
 * `relativePath` (often the string "null"), and copies them to `filename` and `filetype` as
 * tus-js-client and tusd use them. A name becomes the original file name (checked and sanitized
 * like any); a type is ignored, as the bytes decide it; a path is ignored.
 */
const NAME_KEYS = ['filename', 'name'] as const;
const IGNORED_KEYS = ['filetype', 'type', 'relativePath'] as const;

/** Every key tus Upload-Metadata may carry: the upload fields and the habitual ones. */
export const METADATA_KEYS: readonly string[] = [
  ...UPLOAD_FIELD_NAMES,
  ...NAME_KEYS,
  ...IGNORED_KEYS,
];

/**
 * The upload fields in tus Upload-Metadata: the multipart names, lists comma-separated. A key
 * with no value (tus 1.0 allows it) carries nothing and counts as absent, whatever its name; an
 * unknown key with a value is refused, so that a typo never drops an order link.
 */
export function fieldsFromMetadata(metadata: Record<string, string | null> | undefined): {
  fields: Record<string, unknown>;
  filename?: string;
} {
  const fields: Record<string, unknown> = {};
  const names: Partial<Record<(typeof NAME_KEYS)[number], string>> = {};
  for (const [name, value] of Object.entries(metadata ?? {})) {
    if (value === null || value === '') continue;
    if (!METADATA_KEYS.includes(name)) throw unknownField(name, METADATA_KEYS);
    if (name === 'filename' || name === 'name') names[name] = value;
    else if ((IGNORED_KEYS as readonly string[]).includes(name)) continue;
    else if (name === 'orderId' || name === 'complaintId') {
      fields[name] = value
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
    } else fields[name] = value;
  }
  parseUploadFields(fields);
  // `filename` when both are sent (Uppy copies `name` into it unless the page set it).
  return { fields, filename: names.filename ?? names.name };
}
