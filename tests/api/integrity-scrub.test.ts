import { utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import request from 'supertest';
import type { ScrubReport } from '../../src/custody/scrub.service';
import { createDb, type Db } from '../../src/db/database';
import {
  bearer,
  deleteFromStore,
  DRIVERS,
  startTestApp,
  storedKeys,
  tamperWithBlob,
  type TestApp,
} from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';
import { rawS3Client } from '../support/s3-server';

const keyOf = (hex: string) => `sha256/${hex.slice(0, 2)}/${hex.slice(2, 4)}/${hex}`;

/**
 * Tampering with stored evidence behind the service's back, as a failing disk, whoever
 * administers the bucket, or a database superuser would. Each must be caught by the verify
 * endpoint and the scrub, recorded on the item and in the audit trail, and raised as a metric.
 */
describe.each(DRIVERS)('integrity verification and scrub (%s driver)', (driver) => {
  let app: TestApp;
  let dba: Db;
  let clip: Buffer;
  let item: { id: string; sha256: string };

  beforeEach(async () => {
    app = await startTestApp(driver);
    dba = createDb(app.databaseUrl, 1);
    clip = fakeMedia('mp4', 50_000);
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'clip.mp4',
      content: clip,
    });
    item = res.json();
  });
  afterEach(async () => {
    await dba.destroy();
    await app.close();
  });

  const verify = () =>
    request(app.url).post(`/v1/evidence/${item.id}/verify`).set(bearer(app.keys.support));
  const scrub = async (): Promise<ScrubReport> =>
    (await app.ctx.jobs.run('scrub')).stats as unknown as ScrubReport;
  const metrics = async () =>
    (await request(app.url).get('/metrics').set(bearer(app.keys.admin)).expect(200)).text;
  const metric = (text: string, name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(name));
    return line ? Number(line.split(' ').at(-1)) : undefined;
  };
  const itemView = async () =>
    (await request(app.url).get(`/v1/evidence/${item.id}`).set(bearer(app.keys.support))).body;

  it('verifies an untouched item, and the scrub finds nothing wrong', async () => {
    const res = await verify();
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      status: 'ok',
      computed: { sha256: item.sha256, size: clip.length },
      recordedAtCreation: { sha256: item.sha256, size: clip.length },
      problems: [],
    });
    expect((await itemView()).lastVerification.status).toBe('ok');
    const report = await scrub();
    expect(report).toMatchObject({ ok: true, verified: 1, failures: [] });
    expect(report.reconcile).toMatchObject({ blobsListed: 1, orphanBlobs: 0, missingBlobs: 0 });
    expect(report.chain.ok).toBe(true);
    expect(metric(await metrics(), 'custody_job_last_run_ok{job="scrub"}')).toBe(1);
  });

  it('catches one byte flipped in the stored blob', async () => {
    const flipped = Buffer.from(clip);
    flipped[12345] = flipped[12345]! ^ 0x01;
    await tamperWithBlob(app, keyOf(item.sha256), flipped);
    const res = await verify();
    expect(res.body.status).toBe('mismatch');
    expect(res.body.computed.sha256).toBe(sha256(flipped));
    expect(res.body.problems.join(' ')).toMatch(/hash to/);
    expect((await itemView()).lastVerification.status).toBe('mismatch');
    const events = await request(app.url)
      .get(`/v1/evidence/${item.id}/audit`)
      .set(bearer(app.keys.support));
    expect(events.body.events.at(-2)).toMatchObject({
      action: 'evidence.verify',
      outcome: 'failed',
      details: { status: 'mismatch' },
    });
    // The damaged bytes are never served as evidence.
    const report = await scrub();
    expect(report.ok).toBe(false);
    expect(report.failures).toEqual([
      expect.objectContaining({ itemId: item.id, status: 'mismatch' }),
    ]);
    const text = await metrics();
    expect(metric(text, 'evidence_integrity_failing_items{status="mismatch"}')).toBe(1);
    expect(metric(text, 'custody_job_last_run_ok{job="scrub"}')).toBe(0);
    expect(metric(text, 'evidence_integrity_checks_total{result="mismatch"}')).toBe(2);
  });

  it('catches a blob deleted behind the service, in verify and in reconciliation', async () => {
    await deleteFromStore(app, keyOf(item.sha256));
    expect((await verify()).body.status).toBe('missing');
    const report = await scrub();
    expect(report.reconcile).toMatchObject({ missingBlobs: 1, missingSamples: [item.id] });
    expect(report.failures[0]).toMatchObject({ itemId: item.id, status: 'missing' });
    const text = await metrics();
    expect(metric(text, 'custody_scrub_findings{finding="missing_blobs"}')).toBe(1);
    expect(metric(text, 'evidence_integrity_failing_items{status="missing"}')).toBe(1);
    const status = await request(app.url)
      .get('/v1/custody/status')
      .set(bearer(app.keys.admin))
      .expect(200);
    expect(status.body.failingItems).toEqual([
      expect.objectContaining({ itemId: item.id, status: 'missing' }),
    ]);
    expect(status.body.lastRuns.scrub.outcome).toBe('problems');
  });

  it("catches an item's sha256 changed by SQL (with the bytes to match), against the creation record", async () => {
    // A superuser swaps in other bytes and rewrites the row to match them, triggers off.
    const forged = fakeMedia('mp4', 50_000);
    const forgedHash = sha256(forged);
    await tamperWithBlob(app, keyOf(forgedHash), forged);
    await sql`alter table evidence_items disable trigger user`.execute(dba);
    await sql`update evidence_items set sha256 = ${forgedHash}, blob_key = ${keyOf(forgedHash)}
      where id = ${item.id}`.execute(dba);
    await sql`alter table evidence_items enable trigger user`.execute(dba);
    const res = await verify();
    expect(res.body.status).toBe('mismatch');
    expect(res.body.computed.sha256).toBe(forgedHash); // the bytes match the forged row...
    expect(res.body.recordedAtCreation.sha256).toBe(item.sha256); // ...not what arrived
    expect(res.body.problems.join(' ')).toMatch(/differ from those recorded at creation/);
    const report = await scrub();
    expect(report.failures[0]).toMatchObject({ itemId: item.id, status: 'mismatch' });
    // The original blob, no longer referenced by any row, is an orphan.
    const orphaned = await app.ctx.scrub.run({
      intervalMinutes: 60,
      fullPassDays: 30,
      stagingGraceHours: 24,
      orphanGraceMs: 0,
    });
    expect(orphaned.reconcile.orphanSamples).toEqual([keyOf(item.sha256)]);
  });

  it('reports a blob without a row, and removes staging leftovers older than the grace period', async () => {
    const stray = fakeMedia('mp4', 1000);
    await tamperWithBlob(app, keyOf(sha256(stray)), stray);
    await putStaging(app, 'staging/left-over', Buffer.from('partial upload'));
    const young = await scrub(); // default grace: neither is old enough yet
    expect(young.reconcile.orphanBlobs).toBe(0);
    expect(young.stagingRemoved).toBe(0);
    const report = await app.ctx.scrub.run({
      intervalMinutes: 60,
      fullPassDays: 30,
      stagingGraceHours: 0,
      orphanGraceMs: 0,
    });
    expect(report.reconcile).toMatchObject({
      orphanBlobs: 1,
      orphanSamples: [keyOf(sha256(stray))],
    });
    expect(report.stagingRemoved).toBe(1);
    expect((await storedKeys(app)).filter((k) => k.startsWith('staging/'))).toEqual([]);
    await app.ctx.audit.settle(); // every event answered, linked
    const event = await app.ctx.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'evidence.reconcile')
      .executeTakeFirstOrThrow();
    expect(event.details).toMatchObject({ orphanBlobs: 1 });
  });

  it('raises a broken audit chain as a metric after the scrub', async () => {
    await request(app.url).post('/v1/custody/checkpoints').set(bearer(app.keys.admin)).expect(201);
    await sql`alter table audit_events disable trigger user`.execute(dba);
    await sql`delete from audit_events where seq = 1`.execute(dba);
    await sql`alter table audit_events enable trigger user`.execute(dba);
    const report = await scrub();
    expect(report.chain.ok).toBe(false);
    expect(metric(await metrics(), 'custody_scrub_findings{finding="audit_chain_broken"}')).toBe(1);
  });

  it('raises an edited checkpoint file as a metric after the scrub', async () => {
    const res = await request(app.url)
      .post('/v1/custody/checkpoints')
      .set(bearer(app.keys.admin))
      .expect(201);
    expect((await scrub()).chain.ok).toBe(true);
    const key = `custody/checkpoints/${String(res.body.checkpoint.checkpoint.seq).padStart(20, '0')}.json`;
    const edited = JSON.parse((await app.ctx.recordStore.getRecord(key))!.toString());
    edited.checkpoint.signedAt = '2020-01-01T00:00:00.000Z';
    await tamperWithBlob(app, key, Buffer.from(JSON.stringify(edited)));
    const report = await scrub();
    expect(report.chain).toMatchObject({ ok: false });
    expect(report.chain.firstBrokenLink).toMatch(/signature does not verify/);
    expect(metric(await metrics(), 'custody_scrub_findings{finding="audit_chain_broken"}')).toBe(1);
  });

  it('re-verifies a rotating slice: every item once per full pass', async () => {
    for (let i = 0; i < 9; i++) {
      await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
        filename: 'c.mp4',
        content: fakeMedia('mp4', 2000),
      });
    }
    // 10 items, a pass every 5 runs: 2 per run, never the same twice within the pass.
    const seen = new Set<string>();
    for (let run = 0; run < 5; run++) {
      const r = await app.ctx.scrub.run({
        intervalMinutes: 288,
        fullPassDays: 1,
        stagingGraceHours: 24,
      });
      expect(r.verified).toBe(2);
    }
    const rows = await app.ctx.db
      .selectFrom('evidence_items')
      .select(['id', 'verified_at'])
      .execute();
    for (const r of rows) {
      expect(r.verified_at).not.toBeNull();
      seen.add(r.id);
    }
    expect(seen.size).toBe(10);
  });
});

describe('custody jobs on the PostgreSQL queue', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', {}, { jobQueue: true });
    await app.ctx.jobs.start({ workers: true });
  });
  afterAll(() => app.close());

  it('runs an on-demand scrub through pg-boss and shows it in the custody status', async () => {
    const res = await request(app.url).post('/v1/custody/jobs/scrub').set(bearer(app.keys.admin));
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ job: 'scrub', status: 'queued' });
    await request(app.url).post('/v1/custody/jobs/scrub').set(bearer(app.keys.support)).expect(403);
    await request(app.url).post('/v1/custody/jobs/nope').set(bearer(app.keys.admin)).expect(404);
    let status;
    for (let i = 0; i < 100; i++) {
      status = (await request(app.url).get('/v1/custody/status').set(bearer(app.keys.admin))).body;
      if (status.lastRuns.scrub && status.lastRuns.checkpoint) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status.lastRuns.scrub).toMatchObject({ outcome: 'ok' });
    // Starting the workers scheduled the periodic jobs at once: the chain head is signed.
    expect(status.lastRuns.checkpoint.outcome).toBe('ok');
    expect(status.auditChain.lastCheckpoint).not.toBeNull();
  }, 30_000);
});

/** A staging object as an upload cut off by a crash leaves it, dated an hour back. */
async function putStaging(app: TestApp, key: string, body: Buffer): Promise<void> {
  if (app.s3) {
    const client = rawS3Client(app.s3);
    await client.send(new PutObjectCommand({ Bucket: app.s3.bucket, Key: key, Body: body }));
    client.destroy();
    return;
  }
  const file = path.join(app.dataDir, 'blobs', key);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, body);
  const past = new Date(Date.now() - 3600_000);
  utimesSync(file, past, past);
}
