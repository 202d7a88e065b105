import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isPromotableKey, RESUMABLE_PREFIX } from './blob-store';
import { durableWriter, fsyncDir } from './fs-durable';
import type { ResumableState, ResumableStore } from './resumable-store';

/** Resumable uploads on local disk: one file per upload, appended in place and fsynced. */
export class FsResumableStore implements ResumableStore {
  constructor(private readonly root: string) {}

  async init(): Promise<this> {
    await fs.mkdir(path.join(this.root, RESUMABLE_PREFIX), { recursive: true, mode: 0o750 });
    return this;
  }

  private pathOf(key: string): string {
    // Keys are ours (a uuid under resumable/), never client input; refuse anything else.
    if (!key.startsWith(RESUMABLE_PREFIX) || !isPromotableKey(key)) {
      throw new Error(`invalid resumable upload key: ${key}`);
    }
    return path.join(this.root, key);
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
    await pipeline(body, durableWriter(handle, offset));
    return state;
  }

  async completeResumable(key: string, _state: ResumableState, size: number): Promise<void> {
    const actual = await fs.stat(this.pathOf(key)).then(
      (st) => st.size,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      },
    );
    if (actual !== size)
      throw new Error(`resumable upload ${key} holds ${actual} bytes, not ${size}`);
  }

  async discardResumable(key: string): Promise<void> {
    await fs.rm(this.pathOf(key), { force: true });
  }

  async sweepResumable(before: Date, isLive: (key: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    const dir = path.join(this.root, RESUMABLE_PREFIX);
    let names: string[];
    try {
      names = (await fs.readdir(dir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    for (const name of names) {
      const key = `${RESUMABLE_PREFIX}${name}`;
      if (!isPromotableKey(key)) continue;
      const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
      if (st?.isFile() && st.mtime < before && !(await isLive(key))) {
        await fs.rm(this.pathOf(key), { force: true });
        removed++;
      }
    }
    return removed;
  }
}
