import { promises as fs } from 'node:fs';
import path from 'node:path';
import { UploadRefused, uploadFile, type UploaderOptions } from './station-uploader';

interface QueueEntry {
  size: number;
  mtimeMs: number;
  /** When this size and time were first seen: a file unchanged for settleMs is finished. */
  stableSince: number;
  attempts: number;
  nextTryAt: number;
  lastError?: string;
  /** The file's resumable upload on the server: a restart resumes it instead of starting over. */
  uploadUrl?: string;
}

export interface WatchOptions {
  dir: string;
  doneDir: string;
  /** Files the archive refuses for good (wrong type, empty) go here with a .reason.txt. */
  rejectedDir: string;
  queueFile: string;
  settleMs: number;
  now?: () => number;
}

const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * A station's folder: every finished file is uploaded, then moved to done/ only once the archive's
 * SHA-256 equals the station's own. The queue (what is waiting, how often it failed, when to try
 * again) is kept in a file, so a restart of the station or a day offline loses nothing.
 */
export class WatchFolder {
  private queue: Record<string, QueueEntry> = {};

  constructor(
    private readonly opts: WatchOptions,
    private readonly upload: UploaderOptions,
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  async load(): Promise<void> {
    try {
      this.queue = JSON.parse(await fs.readFile(this.opts.queueFile, 'utf8')) as typeof this.queue;
    } catch {
      this.queue = {};
    }
  }

  private saving: Promise<void> = Promise.resolve();

  /**
   * Writes the queue (a temporary file renamed over the old one). Saves run one after another:
   * the upload URL's save can come while a pass saves too, and two writers of the one temporary
   * file would rename it from under each other. Each save writes the queue as it is by then.
   */
  private save(): Promise<void> {
    const next = this.saving.then(async () => {
      const tmp = `${this.opts.queueFile}.tmp`;
      await fs.writeFile(tmp, JSON.stringify(this.queue, null, 1));
      await fs.rename(tmp, this.opts.queueFile);
    });
    this.saving = next.catch(() => undefined);
    return next;
  }

  /** Files waiting (unfinished, or failed and waiting for their next try). */
  get waiting(): number {
    return Object.keys(this.queue).length;
  }

  /** One pass: notice new and changed files, upload those finished and due. */
  async pass(): Promise<string[]> {
    const now = this.now();
    const names = new Set<string>();
    const queueName = path.basename(this.opts.queueFile);
    for (const e of await fs.readdir(this.opts.dir, { withFileTypes: true })) {
      if (!e.isFile() || e.name.startsWith('.') || e.name === queueName) continue;
      if (/\.(part|tmp|partial|crdownload)$/i.test(e.name)) continue; // still being written
      names.add(e.name);
      const st = await fs.stat(path.join(this.opts.dir, e.name)).catch(() => undefined);
      if (!st) continue;
      const known = this.queue[e.name];
      if (!known || known.size !== st.size || known.mtimeMs !== st.mtimeMs) {
        this.queue[e.name] = {
          size: st.size,
          mtimeMs: st.mtimeMs,
          stableSince: now,
          attempts: known?.attempts ?? 0,
          nextTryAt: known?.nextTryAt ?? 0,
          // Other bytes are another upload; the same bytes keep theirs.
          uploadUrl: known?.size === st.size ? known.uploadUrl : undefined,
        };
      }
    }
    for (const name of Object.keys(this.queue)) if (!names.has(name)) delete this.queue[name];
    await this.save();

    const archived: string[] = [];
    for (const [name, entry] of Object.entries(this.queue)) {
      if (now - entry.stableSince < this.opts.settleMs || entry.nextTryAt > now) continue;
      const file = path.join(this.opts.dir, name);
      try {
        const result = await uploadFile({ ...this.upload, maxAttempts: 1 }, file, {
          url: entry.uploadUrl,
          save: async (url) => {
            entry.uploadUrl = url;
            await this.save();
          },
        });
        const st = await fs.stat(file);
        if (st.size !== entry.size || st.mtimeMs !== entry.mtimeMs) {
          this.upload.log(`${name}: changed while it was uploaded; it will be sent again`);
          continue;
        }
        await moveInto(file, this.opts.doneDir);
        delete this.queue[name];
        archived.push(name);
        this.upload.log(`${name}: archived as ${result.id} (SHA-256 ${result.sha256} matches)`);
      } catch (err) {
        if (err instanceof UploadRefused) {
          await moveInto(file, this.opts.rejectedDir);
          await fs.writeFile(
            path.join(this.opts.rejectedDir, `${name}.reason.txt`),
            `${err.message}\n`,
          );
          delete this.queue[name];
          this.upload.log(`${name}: refused by the archive (${err.message}); moved to rejected/`);
        } else {
          entry.attempts++;
          const backoff = Math.min(
            this.upload.backoffMs * 2 ** (entry.attempts - 1),
            MAX_BACKOFF_MS,
          );
          entry.nextTryAt = this.now() + backoff;
          entry.lastError = (err as Error).message.slice(0, 300);
          this.upload.log(
            `${name}: attempt ${entry.attempts} failed (${entry.lastError}); next try in ${Math.round(backoff / 1000)} s`,
          );
        }
      }
      await this.save();
    }
    return archived;
  }
}

/** Moves a file into a folder, across file systems too (copy, then remove the original). */
async function moveInto(file: string, dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const target = path.join(dir, path.basename(file));
  try {
    await fs.rename(file, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fs.copyFile(file, target);
    await fs.rm(file);
  }
}
