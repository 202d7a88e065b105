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

/** The service's settings for an s3rver bucket. */
function s3rverEnv(endpoint: string, bucket: string): Record<string, string> {
  return {
    STORAGE_DRIVER: 's3',
    S3_ENDPOINT: endpoint,
    S3_BUCKET: bucket,
    S3_REGION: 'us-east-1',
    S3_ACCESS_KEY_ID: 'S3RVER',
    S3_SECRET_ACCESS_KEY: 'S3RVER',
    S3_FORCE_PATH_STYLE: 'true',
  };
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
    env: s3rverEnv(endpoint, bucket),
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

/** An s3rver in a child process: a store that a test can freeze, thaw, kill and start again. */
export interface S3Process extends TestS3 {
  /** SIGSTOP: the server accepts connections (the kernel does) but never answers. */
  freeze(): void;
  /** SIGCONT. */
  thaw(): void;
  /** SIGKILL, waiting for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (after kill). */
  restart(): Promise<void>;
}

export async function startS3Process(bucket = 'evidence-test'): Promise<S3Process> {
  const { spawn } = await import('node:child_process');
  const directory = mkdtempSync(path.join(tmpdir(), 'evidence-s3p-'));
  const script = path.join(__dirname, 's3rver-process.js');
  let proc: import('node:child_process').ChildProcess;
  const launch = (port: number) =>
    new Promise<number>((resolve, reject) => {
      proc = spawn(process.execPath, [script, directory, bucket, String(port)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      proc.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const line = /\{"port":(\d+)\}/.exec(out);
        if (line) resolve(Number(line[1]));
      });
      proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
      proc.once('exit', (code) => reject(new Error(`s3rver exited (${code}): ${out}`)));
    });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const kill = () =>
    alive()
      ? new Promise<void>((resolve) => {
          proc.once('exit', () => resolve());
          proc.kill('SIGCONT');
          proc.kill('SIGKILL');
        })
      : Promise.resolve();
  const port = await launch(0);
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    env: s3rverEnv(endpoint, bucket),
    freeze: () => void proc.kill('SIGSTOP'),
    thaw: () => void proc.kill('SIGCONT'),
    kill,
    async restart() {
      await kill();
      // The port was ours a moment ago; another process taking it meanwhile is not expected.
      for (let i = 0; ; i++) {
        try {
          await launch(port);
          return;
        } catch (err) {
          if (i >= 20) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    async close() {
      await kill();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
