import { promises as fs } from 'node:fs';
import { Transform, Writable } from 'node:stream';

// Durable writes on local disk, shared by the disk stores: "written" means fsynced.

/**
 * Network reads arrive in 16-64 KiB chunks; gathering them into 1 MiB writes halves the write
 * calls' cost on a busy disk, and costs one memcpy.
 */
export const WRITE_BYTES = 1 << 20;

export function coalesce(size: number): Transform {
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
export function durableWriter(handle: fs.FileHandle, start: number): Writable {
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

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
