import type { Request } from 'express';
import type { StorageEngine } from 'multer';
import type { Readable } from 'node:stream';
import type { EvidenceKind } from '../db/database';
import { AppError } from '../base/errors';
import { assertAcceptableFilename } from '../evidence/filename';
import type { BlobStore } from '../storage/blob-store';
import { IngestMeter, type Measured } from './ingest-meter';
import { describeAllowed, EVIDENCE_KINDS, isAllowedType } from '../base/kinds';

export interface StagedUpload extends Measured {
  stagingKey: string;
}

declare module 'express-serve-static-core' {
  interface Request {
    staged?: StagedUpload;
  }
}

/**
 * A multer storage engine that streams the file part through IngestMeter straight into the
 * blob store's staging area: no temp copy, no second read.
 */
export class StagingStorageEngine implements StorageEngine {
  /**
   * @param onRefused called as soon as the bytes themselves refute the upload (wrong type after
   *   the first 4 KiB, size over the limit), so the client can be answered before it sends the
   *   rest of a multi-GB body.
   */
  constructor(
    private readonly store: BlobStore,
    private readonly maxBytes: number,
    private readonly onRefused: (req: Request, err: AppError) => void = () => undefined,
  ) {}

  _handleFile(
    req: Request,
    file: Express.Multer.File,
    cb: (error?: unknown, info?: Partial<Express.Multer.File>) => void,
  ): void {
    try {
      assertAcceptableFilename(file.originalname);
    } catch (err) {
      return cb(err);
    }
    // Fields sent before the file let us refuse a wrong type after its first 4 KB, not at the end.
    const meter = new IngestMeter(this.maxBytes, (type) => {
      const kind = (req.body as Record<string, unknown>)?.kind;
      if (typeof kind === 'string' && (EVIDENCE_KINDS as readonly string[]).includes(kind)) {
        assertAllowed(kind as EvidenceKind, type);
      }
    });
    // Piped, not pipeline(): a failure downstream (a full disk) must not destroy the part's
    // stream at once, since multer answers the request on that stream's error without waiting
    // for this engine; the part is destroyed only once the staged file is removed, so a refusal
    // is never answered while any of its bytes are still on disk. Its own errors (a client gone)
    // still end the write.
    file.stream.on('error', (err) => meter.destroy(err));
    // The meter can refuse before the store attaches to it (a short file's type, at its end): the
    // refusal is read from meter.errored below, never an unhandled 'error'.
    meter.on('error', () => undefined);
    const source = file.stream.pipe(meter) as Readable;
    this.store.writeStaging(source).then(
      (stagingKey) => {
        req.staged = { stagingKey, ...meter.measured };
        cb(null, { size: meter.measured.size });
      },
      (err) => {
        // Busboy does not tell us why a part ended early; report the first real cause.
        const cause = meter.errored ?? file.stream.errored ?? err;
        if (cause instanceof AppError) this.onRefused(req, cause);
        if (!file.stream.destroyed) file.stream.destroy(cause as Error);
        cb(cause);
      },
    );
  }

  _removeFile(req: Request, _file: Express.Multer.File, cb: (error: Error | null) => void): void {
    const staged = req.staged;
    req.staged = undefined;
    if (!staged) return cb(null);
    this.store.discardStaging(staged.stagingKey).then(
      () => cb(null),
      (err: Error) => cb(err),
    );
  }
}

export function assertAllowed(kind: EvidenceKind, contentType: string): void {
  if (!isAllowedType(kind, contentType)) {
    throw new AppError(
      'unsupported_media_type',
      `The file's content is ${contentType}, which is not accepted for kind "${kind}" (expected ${describeAllowed(kind)}).`,
      { detectedType: contentType, kind },
    );
  }
}
