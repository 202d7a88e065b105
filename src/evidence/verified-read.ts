import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { AppError } from '../base/errors';

/** The bytes streamed did not hash to what was expected: the error the stream ends with. */
function damagedBytes(expected: string, computed: string): AppError {
  const err = new AppError(
    'evidence_damaged',
    'The stored bytes did not match the archived SHA-256 as they were read; the transfer was cut.',
  );
  err.cause = new Error(`stored bytes hash to ${computed}, expected ${expected}`);
  return err;
}

/**
 * Passes bytes through while hashing them, holding back the latest chunk: only once the whole
 * has hashed to `expectedSha256` does the last chunk go out. Otherwise `onMismatch` runs and the
 * stream fails, so a reader never receives all of a body that is not the evidence.
 */
export function verifyingStream(
  expectedSha256: string,
  onMismatch: (computed: { sha256: string; size: number }) => Promise<void>,
): Transform {
  const hash = createHash('sha256');
  let size = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      const previous = held;
      held = chunk;
      callback(null, previous);
    },
    flush(callback) {
      const computed = hash.digest('hex');
      if (computed === expectedSha256) return callback(null, held);
      onMismatch({ sha256: computed, size }).then(
        () => callback(damagedBytes(expectedSha256, computed)),
        (err: unknown) => callback(err as Error),
      );
    },
  });
}
