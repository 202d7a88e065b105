import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, GetObjectRetentionCommand, S3Client } from '@aws-sdk/client-s3';
import type { TestS3 } from './s3-server';

/*
 * Ceph's S3 gateway (radosgw 16.2 from Debian's packages) on loopback: a real S3 implementation
 * with Object Lock and versioning, which s3rver lacks. tests/support/ceph.sh starts and stops the
 * one-node cluster; jest's global setup starts it once per run, in the background, when a selected
 * test file uses it (CEPH_DIR tells the workers where), and the global teardown stops it. A file
 * run without the global setup's cluster (CEPH_DIR unset) starts its own.
 */

const SCRIPT = path.join(__dirname, 'ceph.sh');
const START_TIMEOUT_MS = 240_000;

export type CephAvailability =
  | { ok: true; endpoint: string; accessKeyId: string; secretAccessKey: string }
  | { ok: false; reason: string };

import { freePort } from './free-port';

export { freePort };

/** The projects named after --selectProjects on jest's command line (undefined: all of them). */
export function selectedProjects(argv: string[]): string[] | undefined {
  const i = argv.findIndex((a) => a === '--selectProjects' || a.startsWith('--selectProjects='));
  if (i < 0) return undefined;
  if (argv[i]!.includes('=')) return argv[i]!.split('=')[1]!.split(',');
  const names: string[] = [];
  for (const a of argv.slice(i + 1)) {
    if (a.startsWith('-')) break;
    names.push(a);
  }
  return names;
}

/** Starts the cluster in the background; returns its directory at once. `watchPid`: see ceph.sh. */
export async function startCeph(watchPid = process.pid): Promise<string> {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'evidence-ceph-')), 'cluster');
  const [mon, rgw] = [await freePort(), await freePort()];
  // Detached: its own process group, which `stop` ends as a whole.
  const child = spawn('bash', [SCRIPT, 'start', dir, String(mon), String(rgw), String(watchPid)], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return dir;
}

export function stopCeph(dir: string): void {
  execFileSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 60_000 });
  rmSync(path.dirname(dir), { recursive: true, force: true });
}

/** CEPH_TESTS=off skips the Ceph suites for a quick local run; CI runs them regardless. */
const cephOptedOut = () => process.env.CEPH_TESTS === 'off' && process.env.CI !== 'true';

/**
 * Does any selected test file use Ceph? (The global setup starts it only then.) `projects`: the
 * jest projects (tiers, tests/<name>) chosen with --selectProjects, when some were.
 */
export function cephWanted(
  testPathPattern: string | undefined,
  rootDir: string,
  projects?: string[],
): boolean {
  if (cephOptedOut()) return false;
  const pattern = testPathPattern ? new RegExp(testPathPattern, 'i') : undefined;
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.test.ts')) files.push(p);
    }
  };
  for (const dir of projects ? projects.map((p) => path.join('tests', p)) : ['tests']) {
    if (existsSync(path.join(rootDir, dir))) walk(path.join(rootDir, dir));
  }
  return files.some(
    (f) => (!pattern || pattern.test(f)) && readFileSync(f, 'utf8').includes("support/ceph'"),
  );
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Waits (synchronously: test files decide at load time whether to skip) for the cluster. */
export function waitForCeph(dir: string, timeoutMs = START_TIMEOUT_MS): CephAvailability {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(path.join(dir, 'ready'))) {
      const env = Object.fromEntries(
        readFileSync(path.join(dir, 'ready'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      return {
        ok: true,
        endpoint: env.CEPH_S3_ENDPOINT!,
        accessKeyId: env.CEPH_S3_ACCESS_KEY_ID!,
        secretAccessKey: env.CEPH_S3_SECRET_ACCESS_KEY!,
      };
    }
    if (existsSync(path.join(dir, 'failed'))) {
      return { ok: false, reason: readFileSync(path.join(dir, 'failed'), 'utf8').trim() };
    }
    if (!existsSync(dir)) return { ok: false, reason: `the Ceph cluster in ${dir} is gone` };
    if (Date.now() > deadline) {
      return { ok: false, reason: `Ceph did not come up within ${timeoutMs / 1000} s (${dir})` };
    }
    sleepSync(250);
  }
}

let own: string | undefined;

/**
 * The run's Ceph gateway, for a test file deciding at load time. Outside CI an unavailable Ceph
 * skips the Ceph suites (saying why); in CI (CI=true) it fails them.
 */
export function cephForTests(): CephAvailability {
  if (cephOptedOut()) {
    console.warn('Ceph S3 tests skipped: CEPH_TESTS=off');
    return { ok: false, reason: 'CEPH_TESTS=off' };
  }
  let dir = process.env.CEPH_DIR;
  if (!dir) {
    // Not started by the global setup (a pattern it did not foresee): this file starts its own.
    // Synchronous start, so the file can still decide at load time.
    dir = own ??= path.join(mkdtempSync(path.join(tmpdir(), 'evidence-ceph-')), 'cluster');
    if (!existsSync(path.join(dir, 'start.pid'))) {
      const ports = execFileSync(process.execPath, [
        '-e',
        "const s=[0,0].map(()=>require('net').createServer().listen(0,'127.0.0.1'));" +
          "Promise.all(s.map(x=>new Promise(r=>x.on('listening',r)))).then(()=>{" +
          "console.log(s.map(x=>x.address().port).join(' '));s.forEach(x=>x.close())})",
      ])
        .toString()
        .trim()
        .split(' ');
      spawn('bash', [SCRIPT, 'start', dir, ports[0]!, ports[1]!, String(process.pid)], {
        detached: true,
        stdio: 'ignore',
      }).unref();
      afterAll(() => stopCeph(dir!));
    }
  }
  const ceph = waitForCeph(dir);
  if (!ceph.ok) {
    if (process.env.CI === 'true') throw new Error(`Ceph is required in CI: ${ceph.reason}`);
    console.warn(`Ceph S3 tests skipped: ${ceph.reason}`);
  }
  return ceph;
}

let bucketSeq = 0;

/**
 * A new bucket on the gateway, with Object Lock enabled (which enables versioning) unless asked
 * otherwise, in the shape of s3-server.ts's TestS3 so suites can run against either.
 */
export async function cephBucket(
  ceph: Extract<CephAvailability, { ok: true }>,
  opts: { objectLock?: boolean; prefix?: string } = {},
): Promise<TestS3> {
  const bucket = `${opts.prefix ?? 'evidence'}-${process.pid}-${Date.now().toString(36)}-${++bucketSeq}`;
  const client = cephClient(ceph);
  await client.send(
    new CreateBucketCommand({
      Bucket: bucket,
      ObjectLockEnabledForBucket: opts.objectLock ?? true,
    }),
  );
  client.destroy();
  return {
    endpoint: ceph.endpoint,
    bucket,
    env: {
      STORAGE_DRIVER: 's3',
      S3_ENDPOINT: ceph.endpoint,
      S3_BUCKET: bucket,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: ceph.accessKeyId,
      S3_SECRET_ACCESS_KEY: ceph.secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
    },
    // The cluster, and every bucket in it, goes with the run (objects under COMPLIANCE
    // retention could not be deleted anyway).
    async close() {},
  };
}

/** A plain SDK client for reaching behind the service: reading retention, versions, holds. */
export function cephClient(ceph: Extract<CephAvailability, { ok: true }>): S3Client {
  return new S3Client({
    endpoint: ceph.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
  });
}

/** An object's retention as the store reports it; undefined when it has none. */
export async function retentionOf(raw: S3Client, bucket: string, key: string) {
  try {
    const { Retention } = await raw.send(
      new GetObjectRetentionCommand({ Bucket: bucket, Key: key }),
    );
    return Retention ? { mode: Retention.Mode, until: Retention.RetainUntilDate } : undefined;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
      return undefined;
    throw err;
  }
}
