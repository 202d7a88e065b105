import { promises as fs } from 'node:fs';
import { Writable } from 'node:stream';

// Durable writes on local disk, shared by the disk stores: "written" means fsynced.

/**
 * Network reads arrive in 16-64 KiB chunks; gathering them into 1 MiB writes halves the write
 * calls' cost on a busy disk. They are gathered by reference and written with one writev: no
 * copy, no new buffer.
 */
export const WRITE_BYTES = 1 << 20;
/** Below Linux's IOV_MAX (1024), so a batch of tiny chunks is still one call. */
const WRITE_CHUNKS = 512;

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
  let batch: Buffer[] = [];
  let batchBytes = 0;
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
  const writeBatch = async () => {
    if (batchBytes === 0) return;
    const buffers = batch;
    const length = batchBytes;
    batch = [];
    batchBytes = 0;
    await writeAll(handle, buffers, position);
    position += length;
    unsynced += length;
    if (unsynced >= EARLY_SYNC_BYTES && !syncing) earlySync();
  };
  return new Writable({
    highWaterMark: WRITE_BYTES,
    write(chunk: Buffer, _enc, cb) {
      if (syncFailed) return cb(syncFailed as Error);
      batch.push(chunk);
      batchBytes += chunk.length;
      if (batchBytes < WRITE_BYTES && batch.length < WRITE_CHUNKS) return cb();
      writeBatch().then(() => cb(), cb);
    },
    final(cb) {
      writeBatch()
        .then(() => syncing)
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

async function writeAll(handle: fs.FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let rest = buffers;
  for (let done = 0; rest.length > 0;) {
    const { bytesWritten } = await handle.writev(rest, position + done);
    if (bytesWritten === 0) throw new Error('writev wrote nothing');
    done += bytesWritten;
    // A short write (rare on a regular file): go on from the first byte not written.
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= rest[0]!.length) skip -= rest.shift()!.length;
    if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
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
