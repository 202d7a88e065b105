import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from './fs-durable';
import { assertRecordKey, type CustodyRecordStore } from './record-store';
import { WORM_NOT_CONFIGURED, type WormState } from './worm';

/** Custody records on local disk: written whole, linked into place, never replaced. */
export class FsCustodyRecordStore implements CustodyRecordStore {
  constructor(private readonly root: string) {}

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
}
