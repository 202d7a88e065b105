import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../base/errors';
import { sniffContentType, SNIFF_BYTES } from './content-sniffer';

export interface Measured {
  sha256: string;
  size: number;
  contentType: string;
}

/**
 * The single pass over an upload's bytes: hashes, counts against the size limit and sniffs the
 * type from the first bytes while passing every chunk on unchanged, with backpressure.
 * `onSniffed` may throw to stop an upload early (a video sent as a call recording).
 */
export class IngestMeter extends Transform {
  private readonly hash = createHash('sha256');
  private byteCount = 0;
  private head: Buffer[] = [];
  private headLength = 0;
  private contentType?: string;
  private result?: Measured;

  constructor(
    private readonly maxBytes: number,
    private readonly onSniffed: (contentType: string) => void = () => undefined,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.byteCount += chunk.length;
    if (this.byteCount > this.maxBytes) {
      return cb(
        new AppError(
          'file_too_large',
          `The file is larger than the limit of ${this.maxBytes} bytes.`,
        ),
      );
    }
    this.hash.update(chunk);
    if (this.contentType === undefined) {
      this.head.push(chunk.subarray(0, SNIFF_BYTES - this.headLength));
      this.headLength += this.head.at(-1)!.length;
      if (this.headLength >= SNIFF_BYTES) {
        const err = this.sniff();
        if (err) return cb(err);
      }
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.contentType === undefined) {
      const err = this.sniff();
      if (err) return cb(err);
    }
    this.result = {
      sha256: this.hash.digest('hex'),
      size: this.byteCount,
      contentType: this.contentType!,
    };
    cb();
  }

  private sniff(): Error | undefined {
    this.contentType = sniffContentType(Buffer.concat(this.head));
    this.head = [];
    if (this.byteCount === 0) return undefined; // an empty file is refused as such, not by its type
    try {
      this.onSniffed(this.contentType);
      return undefined;
    } catch (err) {
      return err as Error;
    }
  }

  /** Available once the stream has been fully consumed. */
  get measured(): Measured {
    if (!this.result) throw new Error('IngestMeter read before the stream ended');
    return this.result;
  }
}
