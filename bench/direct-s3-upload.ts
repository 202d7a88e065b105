/**
 * The S3 baseline of the ingest bench (bench/ingest-bench.ts), in a process of its own so its CPU
 * and memory are measured alone: one file straight to the S3 server with lib-storage, through the
 * service's own S3 client and with its part size and queue size, then a server-side CopyObject of
 * it (what the service's promotion costs there). The S3 settings come from the environment, as
 * the service's do. Prints one JSON line: seconds, CPU seconds and peak RSS of the upload itself.
 *
 *   node dist/bench/direct-s3-upload.js <file> <key> <partSize> <queueSize>
 */
import { createReadStream, readFileSync } from 'node:fs';
import { CopyObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { loadConfig } from '../src/base/config';
import { createS3Client } from '../src/storage/s3-client';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

async function main(): Promise<void> {
  const [file, Key, partSize, queueSize] = process.argv.slice(2) as [
    string,
    string,
    string,
    string,
  ];
  const cfg = loadConfig({ ...process.env, S3_PART_SIZE_BYTES: partSize });
  if (cfg.storage.driver !== 's3') throw new Error('STORAGE_DRIVER=s3 expected');
  const client = createS3Client(cfg.storage.s3);
  const Bucket = cfg.storage.s3.bucket;
  const peakRssMb = () =>
    Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  const startRssMb = peakRssMb();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Upload({
    client,
    params: { Bucket, Key, Body: createReadStream(file, { highWaterMark: 1 << 20 }) },
    partSize: Number(partSize),
    queueSize: Number(queueSize),
  }).done();
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const rssMb = peakRssMb();
  const c0 = performance.now();
  await client.send(
    new CopyObjectCommand({ Bucket, Key: `${Key}-copy`, CopySource: `${Bucket}/${Key}` }),
  );
  const copySecs = (performance.now() - c0) / 1000;
  client.destroy();
  console.log(
    JSON.stringify({ secs, cpuSecs: (cpu.user + cpu.system) / 1e6, rssMb, startRssMb, copySecs }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
