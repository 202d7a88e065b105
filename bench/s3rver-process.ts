/**
 * Runs s3rver in a process of its own for the benchmark, so the S3 server's CPU is not shared
 * with the load generator. Prints the S3 environment as one JSON line, then serves until killed.
 */
import { startS3Server } from '../tests/support/s3-server';

void startS3Server('bench').then((s3) => {
  console.log(JSON.stringify({ endpoint: s3.endpoint, bucket: s3.bucket, env: s3.env }));
  const stop = () => void s3.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
