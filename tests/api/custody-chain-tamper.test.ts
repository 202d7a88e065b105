import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { chainHash, GENESIS_HASH } from '../../src/custody/audit-chain';
import { chainedFormOf } from '../../src/custody/audit.service';
import { AuditVerifier, type ChainReport } from '../../src/custody/audit-verifier';
import { CHECKPOINT_PREFIX } from '../../src/custody/checkpoint.service';
import { createDb, type Db } from '../../src/db/database';
import {
  bearer,
  deleteFromStore,
  DRIVERS,
  startTestApp,
  tamperWithBlob,
  type TestApp,
} from '../support/harness';
import { fakeMedia } from '../support/media';
import { upload } from '../support/multipart';

/**
 * Tampering with the audit trail as someone who administers the database (a superuser who can
 * switch triggers off and knows the hashing scheme) or the bucket. Each must be detected.
 */
describe.each(DRIVERS)('tampering with the custody chain (%s driver)', (driver) => {
  let app: TestApp;
  let dba: Db; // the owner's connection: no least-privilege role, triggers can be disabled
  let itemId: string;

  const verify = (publicKeyPem = app.ctx.signingKey.publicKeyPem): Promise<ChainReport> =>
    new AuditVerifier({
      db: app.ctx.db,
      repo: app.ctx.auditRepo,
      store: app.ctx.blobStore,
      publicKey: createPublicKey(publicKeyPem),
    }).verify();
  const kinds = (r: ChainReport) => [...new Set(r.problems.map((p) => p.kind))].sort();
  const view = () =>
    request(app.url).get(`/v1/evidence/${itemId}`).set(bearer(app.keys.support)).expect(200);
  const checkpoint = async () => {
    const res = await request(app.url).post('/v1/custody/checkpoints').set(bearer(app.keys.admin));
    expect(res.status).toBe(201);
    return res.body.checkpoint.checkpoint.seq as number;
  };
  /** As the DBA: triggers off, do it, triggers on. */
  const asDba = async (fn: () => Promise<void>) => {
    await sql`alter table audit_events disable trigger user`.execute(dba);
    try {
      await fn();
    } finally {
      await sql`alter table audit_events enable trigger user`.execute(dba);
    }
  };
  /** Recomputes every hash from `fromSeq` on, exactly as the service would, and moves the head. */
  const rechain = async (fromSeq: number) => {
    const rows = await dba.selectFrom('audit_events').selectAll().orderBy('seq').execute();
    let prev = GENESIS_HASH;
    for (const row of rows) {
      if (row.seq >= fromSeq) {
        const hash = chainHash(prev, chainedFormOf(row));
        await dba
          .updateTable('audit_events')
          .set({ prev_hash: prev, hash })
          .where('seq', '=', row.seq)
          .execute();
        prev = hash;
      } else prev = row.hash;
    }
    await dba
      .updateTable('audit_chain_head')
      .set({ seq: rows.at(-1)!.seq, hash: prev })
      .execute();
  };

  beforeEach(async () => {
    app = await startTestApp(driver);
    dba = createDb(app.databaseUrl, 1);
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'c.mp4',
      content: fakeMedia('mp4', 5000),
    });
    itemId = res.json().id;
    for (let i = 0; i < 3; i++) await view();
  });
  afterEach(async () => {
    await dba.destroy();
    await app.close();
  });

  it('finds an untouched chain intact, with its signed checkpoints', async () => {
    const seq = await checkpoint();
    await view();
    const report = await verify();
    expect(report).toMatchObject({ ok: true, checkpointsChecked: 1, problems: [] });
    expect(report.lastCheckpoint?.seq).toBe(seq);
    expect(report.eventsChecked).toBe(report.headSeq);
  });

  it('catches an event edited in place (its hash no longer matches)', async () => {
    await asDba(async () => {
      await sql`update audit_events set actor_name = 'someone else' where seq = 6`.execute(dba);
    });
    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.firstBrokenLink).toMatchObject({ kind: 'hash_mismatch', seq: 6 });
  });

  it('catches a deleted event even after the chain was recomputed (the signed checkpoint)', async () => {
    const signedAt = await checkpoint();
    for (let i = 0; i < 3; i++) await view(); // events after the checkpoint too
    const viewOf = await dba
      .selectFrom('audit_events')
      .select('seq')
      .where('action', '=', 'evidence.view')
      .orderBy('seq')
      .executeTakeFirstOrThrow();
    await asDba(async () => {
      await dba.deleteFrom('audit_events').where('seq', '=', viewOf.seq).execute();
      // Close the gap: renumber everything after it (out of the way first, keys are unique).
      await sql`update audit_events set seq = seq + 1000000 where seq > ${viewOf.seq}`.execute(dba);
      await sql`update audit_events set seq = seq - 1000001 where seq > 1000000`.execute(dba);
      await rechain(viewOf.seq);
    });
    const report = await verify();
    expect(report.ok).toBe(false);
    // The chain is self-consistent again: only the checkpoint betrays it.
    expect(kinds(report)).toEqual(['checkpoint_mismatch']);
    expect(report.firstBrokenLink).toMatchObject({ kind: 'checkpoint_mismatch', seq: signedAt });
  });

  it('catches events cut off the end with the head moved back', async () => {
    const signedAt = await checkpoint();
    await asDba(async () => {
      await dba
        .deleteFrom('audit_events')
        .where('seq', '>=', signedAt - 1)
        .execute();
      await rechain(1);
    });
    const report = await verify();
    expect(kinds(report)).toEqual(['checkpoint_beyond_chain']);
  });

  it('catches an edited checkpoint file, and one signed by another key', async () => {
    await checkpoint();
    const [key] = await app.ctx.blobStore.listRecords(CHECKPOINT_PREFIX);
    const original = (await app.ctx.blobStore.getRecord(key!))!.toString();
    const edited = JSON.parse(original);
    edited.checkpoint.seq -= 1; // point the signed head somewhere else
    await tamperWithBlob(app, key!, Buffer.from(JSON.stringify(edited)));
    expect(kinds(await verify())).toContain('checkpoint_bad_signature');

    const stranger = generateKeyPairSync('ed25519').publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    await tamperWithBlob(app, key!, Buffer.from(original));
    expect((await verify()).ok).toBe(true);
    expect(kinds(await verify(stranger.toString()))).toEqual(['checkpoint_wrong_key']);
  });

  it('catches a checkpoint file deleted from the store', async () => {
    await checkpoint();
    await view();
    await checkpoint();
    const [first] = await app.ctx.blobStore.listRecords(CHECKPOINT_PREFIX);
    await deleteFromStore(app, first!);
    const report = await verify();
    expect(kinds(report)).toEqual(['checkpoint_missing']);
  });
});
