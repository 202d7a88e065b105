import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface Digest {
  sha256: string;
  size: number;
}

/** A pass-through that hashes and counts what flows through it. */
function hashingTap(): { tap: Transform; digest: () => Digest } {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  return { tap, digest: () => ({ sha256: hash.digest('hex'), size }) };
}

/** A private working directory for one media job, removed when the job ends. */
export class Scratch {
  constructor(readonly dir: string) {}

  path(name: string): string {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new Error(`bad scratch name ${name}`);
    return path.join(this.dir, name);
  }

  /** Writes a stream to a file here, hashing it in the same pass. */
  async writeFrom(name: string, body: Readable): Promise<Digest> {
    const { tap, digest } = hashingTap();
    await pipeline(body, tap, createWriteStream(this.path(name), { mode: 0o600 }));
    return digest();
  }

  /** Size of a file here, or undefined when the tool wrote none (or an empty one). */
  async sizeOf(name: string): Promise<number | undefined> {
    try {
      const { size } = await fs.stat(this.path(name));
      return size > 0 ? size : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Reads a file here once, for the blob store, and hashes it on the way: `digest` resolves when
   * the stream has been read to its end.
   */
  readHashed(name: string): { body: Readable; digest: () => Digest } {
    const { tap, digest } = hashingTap();
    const source = createReadStream(this.path(name), { highWaterMark: 1 << 20 });
    source.on('error', (err) => tap.destroy(err));
    return { body: source.pipe(tap), digest };
  }

  async dispose(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/** Creates and sweeps media scratch directories (disk is the only place ffmpeg reads from). */
export class ScratchRepository {
  constructor(private readonly root: string = os.tmpdir()) {}

  get rootDir(): string {
    return this.root;
  }

  /** Removes job directories left by a crash (older than `before`: others may be in use). */
  async sweep(before: Date): Promise<number> {
    let removed = 0;
    const entries = await fs.readdir(this.root, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory() || !e.name.startsWith('job-')) continue;
      const dir = path.join(this.root, e.name);
      const { mtime } = await fs.stat(dir);
      if (mtime < before) {
        await fs.rm(dir, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  async create(): Promise<Scratch> {
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    return new Scratch(await fs.mkdtemp(path.join(this.root, 'job-')));
  }
}
