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
    // pipeline closes the file however the reader of `tap` ends (it destroys tap on failure).
    pipeline(createReadStream(this.path(name), { highWaterMark: 1 << 20 }), tap).catch(
      () => undefined,
    );
    return { body: tap, digest };
  }

  async dispose(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates and sweeps media scratch directories (disk is the only place ffmpeg reads from). */
export class ScratchRepository {
  constructor(private readonly root: string = os.tmpdir()) {}

  /**
   * Removes what crashed runs left: job directories older than `before` (a live job's is younger)
   * and launcher directories of processes no longer running.
   */
  async sweep(before: Date): Promise<number> {
    let removed = 0;
    const entries = await fs.readdir(this.root, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const dir = path.join(this.root, e.name);
      const tools = /^tools-(\d+)-/.exec(e.name);
      const stale = tools
        ? !isAlive(Number(tools[1]))
        : e.name.startsWith('job-') && (await fs.stat(dir)).mtime < before;
      if (stale) {
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
