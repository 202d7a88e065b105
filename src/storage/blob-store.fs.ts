import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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
} from './blob-store';
import { WORM_NOT_CONFIGURED, type WormState } from './worm';

/** Blobs on local disk: fsync before acknowledging, promotion by an atomic no-clobber link. */
export class FsBlobStore implements BlobStore {
  readonly driver = 'fs' as const;

  constructor(
    private readonly root: string,
    /** The instance writing through this store: its id goes into staging keys. */
    private readonly opts: { stagingOwner?: StagingOwner } = {},
  ) {}

  async init(): Promise<this> {
    await fs.mkdir(path.join(this.root, STAGING_PREFIX), { recursive: true, mode: 0o750 });
    await fs.mkdir(path.join(this.root, 'sha256'), { recursive: true, mode: 0o750 });
    await fs.mkdir(path.join(this.root, RESUMABLE_PREFIX), { recursive: true, mode: 0o750 });
    return this;
  }

  private pathOf(key: string): string {
    // Keys are ours (staging uuid or hash-derived), never client input; refuse anything else.
    if (!isPromotableKey(key) && !isBlobKey(key)) {
      throw new Error(`invalid blob key: ${key}`);
    }
    return path.join(this.root, key);
  }

  async writeStaging(body: Readable): Promise<string> {
    const key = await newStagingKey(this.opts.stagingOwner);
    const file = this.pathOf(key);
    const handle = await fs.open(file, 'wx', 0o640);
    try {
      // fsync before the stream closes the file, so "written" means on disk.
      await pipeline(body, coalesce(WRITE_BYTES), durableWriter(handle, 0));
    } catch (err) {
      await handle.close().catch(() => undefined);
      await fs.rm(file, { force: true });
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
    const staged = this.pathOf(stagingKey);
    const target = this.pathOf(key);
    const dir = path.dirname(target);
    const firstCreated = await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    let created = true;
    try {
      // link() never replaces an existing file, unlike rename(): two uploads of the same bytes
      // racing here both end with one intact blob.
      await fs.link(staged, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A retried promotion whose first attempt got as far as removing the staged copy.
      if (code === 'ENOENT' && (await this.stat(key)) === size)
        return { key, created: false, worm: WORM_NOT_CONFIGURED };
      if (code !== 'EEXIST') throw err;
      created = false;
      const existing = await this.stat(key);
      if (existing !== size) {
        // The stored copy is damaged; the staged bytes were just hashed, so they restore it.
        await fs.rename(staged, target);
        created = true;
      }
    }
    await fs.rm(staged, { force: true });
    // The new name, and any directory created for it, must survive a crash once we acknowledge.
    await fsyncDir(dir);
    if (firstCreated) {
      for (let d = path.dirname(dir); ; d = path.dirname(d)) {
        await fsyncDir(d);
        if (d === path.dirname(firstCreated)) break;
      }
    }
    return { key, created, worm: WORM_NOT_CONFIGURED };
  }

  async repair(
    stagingKey: string,
    sha256: string,
    size: number,
    opts: { keepStaged?: boolean } = {},
  ): Promise<{ key: string }> {
    const key = blobKeyFor(sha256);
    const staged = this.pathOf(stagingKey);
    const target = this.pathOf(key);
    const actual = (await fs.stat(staged)).size;
    if (actual !== size) throw new Error(`staged ${stagingKey} holds ${actual} bytes, not ${size}`);
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
    let source = staged;
    if (opts.keepStaged) {
      // The staged copy stays (a retry after a failed commit needs it): a durable copy of it
      // next to the target is what replaces the damaged file.
      source = `${target}.${randomUUID()}.tmp`; // .tmp: never listed as a blob
      try {
        await fs.copyFile(staged, source);
        const handle = await fs.open(source, 'r');
        await handle.sync().finally(() => handle.close());
      } catch (err) {
        await fs.rm(source, { force: true });
        throw err;
      }
    }
    // rename() replaces the damaged file in one step: a reader sees the old file or the new one.
    await fs.rename(source, target);
    await fsyncDir(path.dirname(target));
    if (!opts.keepStaged) await fsyncDir(path.dirname(staged));
    return { key };
  }

  async createResumable(): Promise<{ key: string; state: ResumableState }> {
    const key = `${RESUMABLE_PREFIX}${randomUUID()}`;
    const file = this.pathOf(key);
    await (await fs.open(file, 'wx', 0o640)).close();
    await fsyncDir(path.dirname(file));
    return { key, state: {} };
  }

  async appendResumable(
    key: string,
    state: ResumableState,
    offset: number,
    body: AsyncIterable<Buffer>,
  ): Promise<ResumableState> {
    const handle = await fs.open(this.pathOf(key), 'r+');
    try {
      // Bytes past the recorded offset come from a write the database never acknowledged.
      await handle.truncate(offset);
    } catch (err) {
      await handle.close();
      throw err;
    }
    // The stream owns the handle from here: it fsyncs and closes it, or closes it on error.
    await pipeline(body, coalesce(WRITE_BYTES), durableWriter(handle, offset));
    return state;
  }

  async completeResumable(key: string, _state: ResumableState, size: number): Promise<void> {
    const actual = await this.stat(key);
    if (actual !== size)
      throw new Error(`resumable upload ${key} holds ${actual} bytes, not ${size}`);
  }

  async discardResumable(key: string): Promise<void> {
    await fs.rm(this.pathOf(key), { force: true });
  }

  async sweepResumable(before: Date, isLive: (key: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    for await (const o of this.list(RESUMABLE_PREFIX)) {
      if (o.lastModified < before && isPromotableKey(o.key) && !(await isLive(o.key))) {
        await fs.rm(this.pathOf(o.key), { force: true });
        removed++;
      }
    }
    return removed;
  }

  async discardStaging(stagingKey: string): Promise<void> {
    await fs.rm(this.pathOf(stagingKey), { force: true });
  }

  async sweepStaging(before: Date, isGone?: (owner: string) => Promise<boolean>): Promise<number> {
    const dir = path.join(this.root, STAGING_PREFIX);
    let removed = 0;
    for (const name of await fs.readdir(dir)) {
      const file = path.join(dir, name);
      const { mtime } = await fs.stat(file).catch(() => ({ mtime: new Date() }));
      const owner = stagingOwner(`${STAGING_PREFIX}${name}`);
      if (mtime < before || (owner && isGone && (await isGone(owner)))) {
        await fs.rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async stat(key: string): Promise<number | undefined> {
    try {
      return (await fs.stat(this.pathOf(key))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async read(key: string, expectedSize: number, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(key);
    // Open first so a missing blob rejects here rather than as a stream error mid-response.
    const handle = await fs.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? new BlobUnavailableError(key, 'missing') : err;
    });
    const { size } = await handle.stat();
    if (size !== expectedSize) {
      await handle.close();
      throw new BlobUnavailableError(
        key,
        'size_mismatch',
        `${size} bytes, expected ${expectedSize}`,
      );
    }
    return handle.createReadStream({
      start: range?.start,
      end: range?.end,
      highWaterMark: 1 << 20,
    });
  }

  async delete(key: string): Promise<void> {
    if (!isBlobKey(key)) throw new Error(`not a promoted blob key: ${key}`);
    const file = this.pathOf(key);
    await fs.rm(file, { force: true });
    await fsyncDir(path.dirname(file));
  }

  async *list(prefix: 'sha256/' | 'staging/' | 'resumable/'): AsyncIterable<StoredObject> {
    // Walks lazily, one directory at a time, in key order (as S3 lists): a store of millions of
    // blobs is never held in memory, and reconciliation can merge it with rows sorted the same way.
    async function* walk(dir: string, rel: string): AsyncGenerator<StoredObject> {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const entry of entries) {
        const key = `${rel}${entry.name}`;
        if (entry.isDirectory()) yield* walk(path.join(dir, entry.name), `${key}/`);
        else if (entry.isFile() && !entry.name.endsWith('.tmp')) {
          const st = await fs.stat(path.join(dir, entry.name)).catch(() => undefined);
          if (st) yield { key, size: st.size, lastModified: st.mtime };
        }
      }
    }
    yield* walk(path.join(this.root, prefix), prefix);
  }

  private recordPath(key: string): string {
    assertRecordKey(key);
    return path.join(this.root, key);
  }

  async putRecord(key: string, body: Buffer): Promise<WormState> {
    const file = this.recordPath(key);
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o750 });
    // Written whole under a temporary name, then linked into place: never replaced, never torn.
    const temp = `${file}.${randomUUID()}.tmp`;
    await fs.writeFile(temp, body, { mode: 0o440, flush: true });
    try {
      await fs.link(temp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const existing = await fs.readFile(file);
      if (!existing.equals(body))
        throw new Error(`custody record ${key} exists with other content`);
    } finally {
      await fs.rm(temp, { force: true });
    }
    await fsyncDir(path.dirname(file));
    return WORM_NOT_CONFIGURED;
  }

  async getRecord(key: string): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.recordPath(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async listRecords(prefix: string): Promise<string[]> {
    const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    assertRecordKey(base);
    const dir = path.join(this.root, base);
    let names: string[];
    try {
      names = await fs.readdir(dir, { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const keys: string[] = [];
    for (const name of names) {
      if (name.endsWith('.tmp')) continue;
      const st = await fs.stat(path.join(dir, name));
      if (st.isFile()) keys.push(`${base}/${name.split(path.sep).join('/')}`);
    }
    return keys.sort();
  }

  readonly legalHoldSupported = false;

  async setLegalHold(): Promise<void> {
    // A local disk has no legal-hold flag: the database's hold is the protection.
  }

  async verifyWorm(): Promise<WormState> {
    return WORM_NOT_CONFIGURED; // a local disk has no WORM of its own
  }

  async ping(): Promise<void> {
    await fs.access(path.join(this.root, STAGING_PREFIX), fs.constants.W_OK);
  }

  async close(): Promise<void> {}
}

/**
 * Network reads arrive in 16-64 KiB chunks; gathering them into 1 MiB writes halves the write
 * calls' cost on a busy disk, and costs one memcpy.
 */
const WRITE_BYTES = 1 << 20;

function coalesce(size: number): Transform {
  let parts: Buffer[] = [];
  let length = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      length += chunk.length;
      if (length < size) return cb();
      const out = Buffer.concat(parts, length);
      parts = [];
      length = 0;
      cb(null, out);
    },
    flush(cb) {
      cb(null, length ? Buffer.concat(parts, length) : undefined);
    },
  });
}

/** Bytes written but not yet handed to a background fdatasync. */
const EARLY_SYNC_BYTES = 2 << 20;

/**
 * Writes a file from `start` on and fsyncs it before finishing, so "written" means on disk. The
 * kernel would otherwise keep every byte dirty until that last fsync (a large share of RAM may be
 * dirty before it writes back on its own), and the fsync would then wait for the whole body: an
 * fdatasync started in the background every 2 MiB keeps the disk busy while bytes arrive, and the
 * last one waits only for the tail. That wait is on the answer's path of every tus PATCH.
 */
function durableWriter(handle: fs.FileHandle, start: number): Writable {
  let position = start;
  let unsynced = 0;
  let syncing: Promise<void> | undefined;
  let syncFailed: unknown;
  const earlySync = () => {
    unsynced = 0;
    syncing = handle.datasync().then(
      () => {
        syncing = undefined;
      },
      (err: unknown) => {
        syncing = undefined;
        syncFailed = err;
      },
    );
  };
  return new Writable({
    highWaterMark: WRITE_BYTES,
    write(chunk: Buffer, _enc, cb) {
      if (syncFailed) return cb(syncFailed as Error);
      writeAll(handle, chunk, position).then(() => {
        position += chunk.length;
        unsynced += chunk.length;
        if (unsynced >= EARLY_SYNC_BYTES && !syncing) earlySync();
        cb();
      }, cb);
    },
    final(cb) {
      Promise.resolve(syncing)
        .then(() => {
          if (syncFailed) throw syncFailed;
          return handle.sync();
        })
        .then(() => cb(), cb);
    },
    destroy(err, cb) {
      Promise.resolve(syncing)
        .then(() => handle.close())
        .then(
          () => cb(err),
          () => cb(err),
        );
    },
  });
}

async function writeAll(handle: fs.FileHandle, chunk: Buffer, position: number): Promise<void> {
  for (let done = 0; done < chunk.length;) {
    const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
