/**
 * Runs s3rver in a process of its own for the benchmark, so the S3 server's CPU is not shared
 * with the load generator, keeping its objects in RAM (/dev/shm) when it can: a real object store
 * does not write to this machine's disk, so neither should the one standing in for it.
 * Prints the S3 environment as one JSON line, then serves until killed.
 */
import { accessSync, constants } from 'node:fs';
import { startS3Server } from '../tests/support/s3-server';

const inRam = (() => {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return undefined;
  }
})();

void startS3Server('bench', inRam).then((s3) => {
  console.log(
    JSON.stringify({
      endpoint: s3.endpoint,
      bucket: s3.bucket,
      env: s3.env,
      inRam: Boolean(inRam),
    }),
  );
  const stop = () => void s3.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
