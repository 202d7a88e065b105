import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

export interface TestS3 {
  endpoint: string;
  bucket: string;
  env: Record<string, string>;
  close(): Promise<void>;
}

/** A real S3-protocol server (s3rver) on loopback with one bucket, in a temporary directory. */
export async function startS3Server(
  bucket = 'evidence-test',
  parentDir = tmpdir(),
): Promise<TestS3> {
  const directory = mkdtempSync(path.join(parentDir, 'evidence-s3-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    env: {
      STORAGE_DRIVER: 's3',
      S3_ENDPOINT: endpoint,
      S3_BUCKET: bucket,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    },
    async close() {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A plain SDK client for reaching behind the service: listing or tampering with objects. */
export function rawS3Client(
  s3: Pick<TestS3, 'endpoint'> & { env?: Record<string, string> },
): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    // The bucket's own credentials (Ceph's gateway checks them; s3rver takes any).
    credentials: {
      accessKeyId: s3.env?.S3_ACCESS_KEY_ID ?? 'S3RVER',
      secretAccessKey: s3.env?.S3_SECRET_ACCESS_KEY ?? 'S3RVER',
    },
  });
}
