import type { IncomingMessage } from 'node:http';
import type { EvidenceKind } from '../db/database';
import { AppError } from '../base/errors';
import type { BlobStore } from '../storage/blob-store';
import { IngestMeter } from './ingest-meter';
import { assertAllowed, type StagedUpload } from './upload-storage-engine';

/**
 * Stages a raw body (a phone system's PUT of a recording, or media fetched from a provider)
 * through the same single pass
 * as a multipart file: hashed, size-limited and type-sniffed while it streams into staging.
 * Rejects with the first real cause; `onRefused` is told as soon as the bytes refute the upload,
 * so the client is answered before it sends the rest.
 */
export async function stageRawBody(
  req: IncomingMessage,
  store: BlobStore,
  maxBytes: number,
  kind: EvidenceKind,
  onRefused: (err: AppError) => void = () => undefined,
): Promise<StagedUpload> {
  // Gone before we got here (while the key was checked): there is nothing to read.
  if (req.destroyed || req.readableAborted || req.errored) throw abortedError();
  const meter = new IngestMeter(maxBytes, (type) => assertAllowed(kind, type));
  // pipe, not pipeline: a refused upload must leave the request (and its socket) alive to be
  // answered; pipe unpipes on the meter's error, and a client that goes away ends the meter.
  const gone = () => {
    if (!req.complete) meter.destroy(abortedError());
  };
  req.once('close', gone);
  // The store may attach its reader after the first chunk was refused: the cause is kept in
  // meter.errored and reported below, never left as an unhandled 'error'.
  meter.on('error', () => undefined);
  req.pipe(meter);
  try {
    const stagingKey = await store.writeStaging(meter);
    if (!req.complete) {
      await store.discardStaging(stagingKey).catch(() => undefined);
      throw abortedError();
    }
    return { stagingKey, ...meter.measured };
  } catch (err) {
    const cause = meter.errored ?? err;
    if (cause instanceof AppError && cause.code !== 'upload_aborted') onRefused(cause);
    throw cause;
  } finally {
    req.off('close', gone);
  }
}

const abortedError = () =>
  new AppError(
    'upload_aborted',
    'The upload was interrupted before the end of the body; nothing was stored.',
  );
