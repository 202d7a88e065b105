import { generateKeyPairSync, createHash, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { HAPROXY_BINARY, startHaproxy, freePort, type Balancer } from '../support/haproxy';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { eventually, leftovers } from '../support/leftovers';
import { fakeMedia, sha256 } from '../support/media';
import { MediaFiles } from '../support/media-files';
import { sql } from 'kysely';
import { MEDIA_QUEUE } from '../../src/media/media-jobs';
import { upload } from '../support/multipart';
import { startServiceProcess, type ServiceProcess } from '../support/service-process';
import { AbortedUpload, tusUpload } from '../support/tus';

jest.setTimeout(180_000);

const MiB = 1024 * 1024;
const TUS = { 'Tus-Resumable': '1.0.0' };
const ORDER = 'ORD-CLUSTER-1';

/**
 * Three real service processes on one PostgreSQL database and one S3 server (s3rver), behind
 * Debian's HAProxy running examples/haproxy/haproxy.cfg (the file docs/operations.md shows):
 * lookups reach every instance and agree, a tus upload moves between instances, and an instance
 * killed mid-upload loses nothing it acknowledged and leaves nothing of what it did not.
 */
// CI installs HAProxy (.ci/run) and runs this; elsewhere it is skipped when HAProxy is missing.
const haproxy = spawnSync(HAPROXY_BINARY, ['-v']).status === 0;
if (!haproxy && process.env.CI)
  throw new Error(`no HAProxy at ${HAPROXY_BINARY}: apt-get install haproxy`);

(haproxy ? describe : describe.skip)('three instances behind HAProxy', () => {
  let app: TestApp;
  let publicKeyPem: string;
  const instances: ServiceProcess[] = [];
  const dataDirs: string[] = [];
  let lb: Balancer;
  /** Every upload an instance acknowledged: its item and the sha256 of the bytes sent. */
  const acknowledged: { id: string; sha256: string }[] = [];

  beforeAll(async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signingKey = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    // Every instance signs checkpoints with the same key (docs/operations.md).
    app = await startTestApp('s3', { CUSTODY_SIGNING_KEY: signingKey });
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-cluster-'));
      dataDirs.push(dataDir);
      instances.push(
        await startServiceProcess(
          {
            DATABASE_URL: app.databaseUrl,
            APP_DATABASE_URL: app.appDatabaseUrl,
            DATA_DIR: dataDir,
            CUSTODY_SIGNING_KEY: signingKey,
            LOG_LEVEL: 'warn',
            DATABASE_POOL_SIZE: '4',
            LEFTOVER_SWEEP_SECONDS: '5',
            MEDIA_RETRY_DELAY_SECONDS: '1',
            ...app.s3!.env,
          },
          port,
        ),
      );
    }
    await Promise.all(instances.map((i) => i.ready(90_000)));
    lb = await startHaproxy(instances.map((i) => new URL(i.url).host));
    await lb.waitUp(3);
  });

  afterAll(async () => {
    await lb?.stop();
    for (const i of instances) await i.kill();
    await app?.close();
    for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  });

  const [A, B, C] = [0, 1, 2];

  async function archive(base: string, clip: Buffer): Promise<string> {
    const res = await upload(
      base,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', ORDER],
      ],
      {
        filename: 'clip.mp4',
        contentType: 'video/mp4',
        content: clip,
      },
    );
    expect([200, 201]).toContain(res.status);
    const item = res.json() as { id: string; sha256: string };
    expect(item.sha256).toBe(sha256(clip));
    acknowledged.push({ id: item.id, sha256: item.sha256 });
    return item.id;
  }

  const get = (base: string, p: string, key = app.keys.support.key) =>
    fetch(`${base}${p}`, { headers: { Authorization: `Bearer ${key}` } });

  /** Items with these bytes, straight from the database. */
  const itemsWith = async (sha: string) =>
    (await app.ctx.db.selectFrom('evidence_items').select('id').where('sha256', '=', sha).execute())
      .length;

  it('spreads lookups over all three instances, which answer the same', async () => {
    for (let i = 0; i < 6; i++) await archive(lb.url, fakeMedia('mp4', 256 * 1024));
    const servedBy = new Set<string>();
    const bodies = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const res = await get(lb.url, `/v1/orders/${ORDER}/evidence`);
      expect(res.status).toBe(200);
      servedBy.add(res.headers.get('x-served-by')!);
      bodies.add(await res.text());
    }
    expect([...servedBy].sort()).toEqual(['instance-1', 'instance-2', 'instance-3']);
    expect(bodies.size).toBe(1);
    const items = (JSON.parse([...bodies][0]!) as { items: { id: string }[] }).items;
    expect(items.map((i) => i.id).sort()).toEqual(acknowledged.map((a) => a.id).sort());
    // Each instance directly, too.
    for (const instance of instances) {
      expect(await (await get(instance.url, `/v1/orders/${ORDER}/evidence`)).text()).toBe(
        [...bodies][0],
      );
    }
  });

  it('resumes a tus upload begun on one instance through another and through the balancer', async () => {
    const clip = fakeMedia('mp4', 5 * MiB + 3);
    const meta = { kind: 'packing_video', orderId: ORDER, filename: 'moved.mp4' };
    const opts = { chunkSize: MiB, retryDelays: null };
    const begun = await tusUpload(instances[A]!.url, app.keys.ingest, clip, meta, {
      ...opts,
      abortAfter: MiB,
    }).catch((err: unknown) => err);
    expect(begun).toBeInstanceOf(AbortedUpload);
    const uploadPath = new URL((begun as AbortedUpload).url).pathname;
    const onB = await tusUpload(instances[B]!.url, app.keys.ingest, clip, meta, {
      ...opts,
      uploadUrl: `${instances[B]!.url}${uploadPath}`,
      abortAfter: 3 * MiB,
    }).catch((err: unknown) => err);
    expect(onB).toBeInstanceOf(AbortedUpload);
    const done = await tusUpload(lb.url, app.keys.ingest, clip, meta, {
      ...opts,
      uploadUrl: `${lb.url}${uploadPath}`,
    });
    expect(done.digest).toBe(`sha-256=:${createHash('sha256').update(clip).digest('base64')}:`);
    expect(done.itemId).toBeTruthy();
    acknowledged.push({ id: done.itemId!, sha256: sha256(clip) });
    const item = (await (await get(lb.url, `/v1/evidence/${done.itemId}`)).json()) as {
      sha256: string;
    };
    expect(item.sha256).toBe(sha256(clip));
  });

  it('an instance killed mid-upload: nothing acknowledged is lost, nothing unacknowledged is kept, retries through the balancer succeed', async () => {
    const c = instances[C]!;
    // A tus upload on C with 2 MiB acknowledged, and a PATCH of more in flight.
    const tusClip = fakeMedia('mp4', 4 * MiB + 11);
    const meta = { kind: 'packing_video', orderId: ORDER, filename: 'killed.mp4' };
    const begun = await tusUpload(c.url, app.keys.ingest, tusClip, meta, {
      chunkSize: MiB,
      retryDelays: null,
      abortAfter: 2 * MiB,
    }).catch((err: unknown) => err);
    expect(begun).toBeInstanceOf(AbortedUpload);
    const uploadPath = new URL((begun as AbortedUpload).url).pathname;
    const inFlight = new Promise<number>((resolve) => {
      const req = http.request(`${c.url}${uploadPath}`, {
        method: 'PATCH',
        headers: {
          ...bearer(app.keys.ingest),
          ...TUS,
          'Upload-Offset': String(2 * MiB),
          'Content-Type': 'application/offset+octet-stream',
          'Content-Length': 2 * MiB,
        },
      });
      req.on('response', (res) => resolve(res.statusCode!));
      req.on('error', () => resolve(0));
      req.write(tusClip.subarray(2 * MiB, 2 * MiB + 256 * 1024)); // and never the rest
    });
    // A multipart upload on C, 1 MiB sent of 3 MiB, the rest held back until C is gone.
    const multipartClip = fakeMedia('mp4', 3 * MiB);
    let sentHalf!: () => void;
    const halfSent = new Promise<void>((r) => (sentHalf = r));
    const never = new Promise<void>(() => undefined);
    const body = Readable.from(
      (async function* () {
        yield multipartClip.subarray(0, MiB);
        sentHalf();
        await never;
      })(),
    );
    const multipart = upload(
      c.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', ORDER],
      ],
      { filename: 'killed.mp4', contentType: 'video/mp4', content: body },
    ).then(
      (r) => r.status,
      () => 0,
    );
    await halfSent;
    await new Promise((r) => setTimeout(r, 500)); // the bytes reach C and its store

    await c.kill();
    expect(await multipart).toBe(0);
    expect(await inFlight).toBe(0);
    body.destroy();
    // Nothing of the unacknowledged upload became evidence.
    expect(await itemsWith(sha256(multipartClip))).toBe(0);
    expect(await itemsWith(sha256(tusClip))).toBe(0);
    await lb.waitUp(2);

    // The client retries through the balancer: the multipart from the start, tus from its offset.
    await archive(lb.url, multipartClip);
    const head = await fetch(`${lb.url}${uploadPath}`, {
      method: 'HEAD',
      headers: { ...bearer(app.keys.ingest), ...TUS },
    });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('upload-offset'))).toBeGreaterThanOrEqual(2 * MiB);
    const resumed = await tusUpload(lb.url, app.keys.ingest, tusClip, meta, {
      chunkSize: MiB,
      uploadUrl: `${lb.url}${uploadPath}`,
    });
    expect(resumed.digest).toBe(
      `sha-256=:${createHash('sha256').update(tusClip).digest('base64')}:`,
    );
    acknowledged.push({ id: resumed.itemId!, sha256: sha256(tusClip) });
    expect(await itemsWith(sha256(multipartClip))).toBe(1);

    // Every acknowledged upload is there, bytes and all, through the two instances left.
    for (const { id, sha256: sha } of acknowledged) {
      const res = await get(lb.url, `/v1/evidence/${id}/content`);
      expect(res.status).toBe(200);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha);
    }
    // What C staged is removed by the others once they see it gone (its lock released).
    const left = await eventually(
      () => leftovers(app.ctx.db, app.s3!),
      (l) => l.orphans.length === 0 && l.staging.length === 0,
      30_000,
    );
    expect(left).toEqual({ orphans: [], staging: [] });
  });

  it('an instance killed mid-job: another hands its job back at once and finishes it', async () => {
    const media = new MediaFiles();
    // Long enough that its transcoding is under way when the test kills the instance.
    const clip = media.mov(20, '640x360');
    media.cleanup();
    const res = await upload(
      lb.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', ORDER],
      ],
      { filename: 'job.mov', contentType: 'video/quicktime', content: clip },
    );
    expect(res.status).toBe(201);
    const itemId = (res.json() as { id: string }).id;
    acknowledged.push({ id: itemId, sha256: sha256(clip) });
    const db = app.ctx.db;
    const status = async () =>
      (
        await db
          .selectFrom('item_media')
          .select('status')
          .where('item_id', '=', itemId)
          .executeTakeFirst()
      )?.status;
    // The instance running the job (by its registration), once the job is under way.
    const runner = await eventually(
      async () =>
        (await status()) !== 'processing'
          ? undefined
          : db
              .selectFrom('job_runs as r')
              .innerJoin('service_instances as i', 'i.id', 'r.instance_id')
              .innerJoin(
                sql<{ id: string; singleton_key: string }>`pgboss.job`.as('j'),
                'j.id',
                'r.job_id',
              )
              .select('i.pid')
              .where('r.queue', '=', MEDIA_QUEUE)
              .where('j.singleton_key', '=', itemId)
              .executeTakeFirst(),
      (r) => r !== undefined,
      30_000,
    );
    const victim = instances.find((i) => i.proc.pid === runner?.pid);
    expect(victim?.alive()).toBe(true);
    expect(await status()).toBe('processing');
    await victim!.kill();
    // pg-boss alone would retry it once it expires (MEDIA_TIMEOUT_SECONDS x 4 + 10 minutes).
    const finished = await eventually(status, (s) => s === 'done', 60_000);
    expect(finished).toBe('done');
    // Done on its second attempt: the first died with its instance. (Its outcome is recorded
    // just after the item's media status.)
    const jobs = await eventually(
      async () =>
        (
          await sql<{ state: string; retry_count: number }>`
            select state, retry_count from pgboss.job
            where name = ${MEDIA_QUEUE} and singleton_key = ${itemId}`.execute(db)
        ).rows,
      (rows) => rows.some((r) => r.state === 'completed'),
    );
    expect(jobs).toEqual([{ state: 'completed', retry_count: 1 }]);
    const runs = () =>
      db.selectFrom('job_runs').selectAll().where('queue', '=', MEDIA_QUEUE).execute();
    expect(await eventually(runs, (rows) => rows.length === 0)).toEqual([]);
  });

  it('keeps one audit chain for all instances, which verifies', async () => {
    const report = await app.ctx.auditVerifier.verify(createPublicKey(publicKeyPem));
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    // Each instance appended to it: uploads and reads went through all three.
    expect(report.eventsChecked).toBeGreaterThan(acknowledged.length + 12);
  });
});
