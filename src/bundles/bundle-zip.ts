import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { ZipFile } from 'yazl';

/**
 * yazl computes each entry's CRC-32 with the pure-JavaScript `buffer-crc32` (about 0.5 GB/s),
 * which would cap a bundle download well below a plain read. Node's zlib.crc32 (20.15+) gives the
 * very same values about ten times faster; point the instance yazl uses at it. The values are
 * identical, so the ZIP bytes are the same either way.
 */
const nativeCrc32 = (zlib as { crc32?: (data: Buffer, value?: number) => number }).crc32;
if (nativeCrc32) {
  const crc = createRequire(require.resolve('yazl'))('buffer-crc32') as {
    unsigned: (buf: Buffer, previous?: number) => number;
  };
  crc.unsigned = (buf, previous) => nativeCrc32(buf, previous ?? 0);
}

/** One file of the ZIP: small ones are held as bytes, evidence is opened when its turn comes. */
export type ZipEntry =
  { path: string; data: Buffer } | { path: string; size: number; open: () => Promise<Readable> };

/**
 * A ZIP of stored (uncompressed) entries with the same bytes every time for the same entries and
 * time: fixed modes, DOS timestamps only (no local-time-dependent extra field), entry sizes known
 * up front so the total size is known before a byte is sent. ZIP64 is used where sizes need it.
 * Evidence is streamed with backpressure, one file open at a time.
 */
export function buildZip(
  entries: ZipEntry[],
  mtime: Date,
  onEntryError?: (err: Error) => void,
): { size: number; stream: Readable } {
  const zip = new ZipFile();
  const options = { mtime: dosTime(mtime), compress: false, forceDosTimestamp: true };
  const output = zip.outputStream as unknown as Readable;
  let current: Readable | undefined;
  const fail = (err: Error) => {
    onEntryError?.(err);
    if (!output.destroyed) output.destroy(err);
  };
  // A client that goes away must not leave a store read open.
  output.once('close', () => current?.destroy());
  zip.on('error', fail);
  for (const entry of entries) {
    if ('data' in entry) {
      zip.addBuffer(entry.data, entry.path, options);
      continue;
    }
    zip.addReadStreamLazy(entry.path, { ...options, size: entry.size }, (cb) => {
      if (output.destroyed) return;
      entry.open().then(
        (body) => {
          current = body;
          // pipe() does not forward errors: a failing store read must end the download.
          body.once('error', fail);
          if (output.destroyed) body.destroy();
          cb(null, body);
        },
        (err: Error) => fail(err),
      );
    });
  }
  let size = -1;
  // (@types/yazl leaves out the callback's argument.)
  (zip as unknown as { end(o: object, cb: (total: number) => void): void }).end({}, (total) => {
    size = total;
  });
  if (size < 0) throw new Error('the ZIP size could not be computed up front');
  return { size, stream: output };
}

/** The size buildZip() will produce for these entries, without opening any evidence. */
export function zipSize(entries: ZipEntry[], mtime: Date): number {
  const idle = () => Promise.resolve(new Readable({ read() {} }));
  const { size, stream } = buildZip(
    entries.map((e) => ('data' in e ? e : { path: e.path, size: e.size, open: idle })),
    mtime,
  );
  stream.destroy();
  return size;
}

const DOS_MIN = Date.UTC(1980, 0, 1);
const DOS_MAX = Date.UTC(2107, 11, 31, 23, 59, 58);

/**
 * DOS times are wall-clock fields, which yazl reads with the local getters (getHours() …). Those
 * getters are given the UTC fields of `at` here, so the ZIP's bytes are the same whatever the time
 * zone of the instance serving the download, a daylight-saving gap included (a Date built from
 * the fields in local time would move an hour in a gap). The Date's own value is those fields read
 * in local time, so yazl's range clamp (against local 1980 and 2107 dates) agrees with them.
 */
function dosTime(at: Date): Date {
  const utc = new Date(Math.min(Math.max(at.getTime(), DOS_MIN), DOS_MAX));
  const fields = [
    utc.getUTCFullYear(),
    utc.getUTCMonth(),
    utc.getUTCDate(),
    utc.getUTCHours(),
    utc.getUTCMinutes(),
    utc.getUTCSeconds(),
  ] as const;
  return Object.assign(new Date(...fields), {
    getFullYear: () => fields[0],
    getMonth: () => fields[1],
    getDate: () => fields[2],
    getHours: () => fields[3],
    getMinutes: () => fields[4],
    getSeconds: () => fields[5],
  });
}

/**
 * Bytes `start`..`end` (inclusive) of a stream: those before are read and dropped, and the stream
 * is closed (with any store read it has open) once `end` has gone out. Resolves once the first
 * byte of the slice is there, so a failure on the way to it (bytes that hash wrong) is an answer,
 * not a connection cut. `signal` (the client went away) destroys the source, so the bytes before
 * the start stop being read and hashed: the promise then rejects with the abort's reason.
 */
export async function sliceStream(
  source: Readable,
  start: number,
  end: number,
  signal?: AbortSignal,
): Promise<Readable> {
  const abort = () => source.destroy(abortError(signal!));
  if (signal?.aborted) abort();
  else signal?.addEventListener('abort', abort, { once: true });
  async function* slice() {
    let at = 0;
    // Leaving the loop early destroys `source`.
    for await (const chunk of source as AsyncIterable<Buffer>) {
      const from = Math.max(0, start - at);
      const to = Math.min(chunk.length, end + 1 - at);
      at += chunk.length;
      if (to > from) yield chunk.subarray(from, to);
      if (at > end) return;
    }
  }
  const sliced = slice();
  let first: IteratorResult<Buffer>;
  try {
    first = await sliced.next();
  } catch (err) {
    signal?.removeEventListener('abort', abort);
    throw err;
  }
  async function* whole() {
    if (!first.done) yield first.value;
    yield* sliced;
  }
  const out = Readable.from(whole(), { objectMode: false });
  // Destroyed before or while it is read (the client went away while the range was prepared):
  // close the source too, whatever state the generators are in (one that never started never
  // runs its cleanup). 'close' also follows an error.
  out.once('close', () => {
    signal?.removeEventListener('abort', abort);
    source.destroy();
  });
  return out;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('the client went away before the range was ready');
  err.name = 'AbortError';
  return err;
}
