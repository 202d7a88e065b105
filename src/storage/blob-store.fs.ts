import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BlobUnavailableError,
  blobKeyFor,
  type BlobNamespace,
  isBlobKey,
  isPromotableKey,
  newStagingKey,
  RESUMABLE_PREFIX,
  STAGING_PREFIX,
  stagingOwner,
  type StagingOwner,
  type BlobStore,
  type ByteRange,
  type PromoteResult,
  type StoredObject,
} from './blob-store';
import { durableWriter, fsyncDir } from './fs-durable';
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
      await pipeline(body, durableWriter(handle, 0));
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
