import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { chainHash, GENESIS_HASH } from '../../src/base/audit-chain';
import { chainedFormOf } from '../../src/base/audit.service';
import { AuditRepository } from '../../src/base/audit.repository';
import { AuditItemsRepository } from '../../src/custody/audit-items.repository';
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
  let content: Buffer;

  const verify = (publicKeyPem = app.ctx.signingKey.publicKeyPem): Promise<ChainReport> =>
    app.ctx.auditVerifier.verify(createPublicKey(publicKeyPem));
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
    await app.ctx.audit.settle(); // every event answered, linked, before it is tampered with
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
    content = fakeMedia('mp4', 5000);
    const res = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'c.mp4',
      content,
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
    // The view after the checkpoint: not yet covered, which is no problem by itself.
    expect(report.notYetCovered).toMatchObject({ count: 1, oldestSeq: seq + 1 });
    expect(report.notYetCovered!.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(report).toMatchObject({ itemsChecked: 1, itemsBeforeTrail: 0 });
  });

  /** As the DBA: the item's frozen columns rewritten with its triggers off. */
  const rewriteItem = async (set: Record<string, unknown>) => {
    await sql`alter table evidence_items disable trigger user`.execute(dba);
    try {
      await dba.updateTable('evidence_items').set(set).where('id', '=', itemId).execute();
    } finally {
      await sql`alter table evidence_items enable trigger user`.execute(dba);
    }
  };
  const itemProblems = (r: ChainReport) =>
    r.problems.filter((p) => p.kind === 'item_mismatch').map((p) => p.itemId);

  it('compares an item whose creation event is recorded but not yet linked (no false tamper alarm)', async () => {
    // An upload that commits after verify-audit linked what was waiting, before its snapshot:
    // its creation event still waits. Here nothing links it (the chainer stopped), and the
    // verifier's own linking is skipped, as if the upload had landed just after it.
    await app.ctx.audit.close();
    const late = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'late.mp4',
      content: fakeMedia('mp4', 4000),
    });
    expect(late.status).toBe(201);
    const lateId = late.json().id as string;
    const racing = new AuditVerifier({
      db: app.ctx.db,
      repo: new AuditRepository(),
      store: app.ctx.recordStore,
      items: new AuditItemsRepository(),
      audit: { settle: async () => undefined },
    });
    const key = createPublicKey(app.ctx.signingKey.publicKeyPem);
    expect(await racing.verify(key)).toMatchObject({ ok: true, itemsChecked: 2, problems: [] });
    // Compared all the same: its hash rewritten is caught.
    await sql`alter table evidence_items disable trigger user`.execute(dba);
    try {
      await sql`update evidence_items set sha256 = ${'0'.repeat(64)} where id = ${lateId}`.execute(
        dba,
      );
    } finally {
      await sql`alter table evidence_items enable trigger user`.execute(dba);
    }
    expect(itemProblems(await racing.verify(key))).toEqual([lateId]);
  });

  it('catches an item whose sha256, size or blob key was rewritten (its creation event differs)', async () => {
    const row = await dba
      .selectFrom('evidence_items')
      .select(['sha256', 'size_bytes', 'blob_key'])
      .where('id', '=', itemId)
      .executeTakeFirstOrThrow();
    // Another item, untouched: only the rewritten one is named.
    await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'd.mp4',
      content: fakeMedia('mp4', 6000),
    });
    expect(await verify()).toMatchObject({ ok: true, itemsChecked: 2 });

    const otherSha = 'ab'.repeat(32);
    for (const [set, words] of [
      // Hash and blob key together, as bytes swapped for others would be.
      [{ sha256: otherSha, blob_key: `sha256/ab/ab/${otherSha}` }, `sha256 ${otherSha}`],
      [{ size_bytes: Number(row.size_bytes) + 1 }, `size ${Number(row.size_bytes) + 1}`],
      [{ blob_key: `sha256/00/00/${'0'.repeat(64)}` }, 'blob key sha256/00/00/'],
    ] as const) {
      await rewriteItem(set);
      const report = await verify();
      expect(report.ok).toBe(false);
      expect(kinds(report)).toEqual(['item_mismatch']);
      expect(itemProblems(report)).toEqual([itemId]);
      expect(report.problems[0]!.message).toContain(words);
      await rewriteItem({ sha256: row.sha256, size_bytes: row.size_bytes, blob_key: row.blob_key });
      expect((await verify()).ok).toBe(true);
    }
  });

  it('accepts a repaired item, and names an item with no creation event', async () => {
    const row = await dba
      .selectFrom('evidence_items')
      .select(['blob_key'])
      .where('id', '=', itemId)
      .executeTakeFirstOrThrow();
    await tamperWithBlob(app, row.blob_key, Buffer.alloc(content.length, 7));
    await request(app.url)
      .post(`/v1/evidence/${itemId}/verify`)
      .set(bearer(app.keys.admin))
      .expect(200);
    const again = await upload(app.url, app.keys.ingest.key, [['kind', 'packing_video']], {
      filename: 'c.mp4',
      content,
    });
    expect(again.status).toBe(200);
    await app.ctx.audit.settle();
    const repairs = await dba
      .selectFrom('audit_events')
      .select('seq')
      .where('action', '=', 'evidence.repair')
      .execute();
    expect(repairs).toHaveLength(1);
    expect(await verify()).toMatchObject({ ok: true, itemsChecked: 1 });

    // A repair event rewritten to name another key (the chain rewritten to match) does not make a
    // moved blob_key pass: a repair writes the genuine bytes under the same content address.
    const forged = `sha256/00/00/${'0'.repeat(64)}`;
    await asDba(async () => {
      await sql`update audit_events set details = jsonb_set(details, '{blobKey}', to_jsonb(${forged}::text))
                 where seq = ${repairs[0]!.seq}`.execute(dba);
      await rechain(Number(repairs[0]!.seq));
    });
    await rewriteItem({ blob_key: forged });
    expect(itemProblems(await verify())).toEqual([itemId]);
    await rewriteItem({ blob_key: row.blob_key });

    // Its creation event's item removed (the chain rewritten to match): the item is unrecorded.
    await asDba(async () => {
      await sql`update audit_events set item_ids = '{}' where action = 'evidence.create'`.execute(
        dba,
      );
      await rechain(1);
    });
    const report = await verify();
    expect(kinds(report)).toEqual(['item_unrecorded']);
    expect(report.problems[0]).toMatchObject({ itemId });
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
    await app.ctx.audit.settle();
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
    const [key] = await app.ctx.recordStore.listRecords(CHECKPOINT_PREFIX);
    const original = (await app.ctx.recordStore.getRecord(key!))!.toString();
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
    const [first] = await app.ctx.recordStore.listRecords(CHECKPOINT_PREFIX);
    await deleteFromStore(app, first!);
    const report = await verify();
    expect(kinds(report)).toEqual(['checkpoint_missing']);
  });
});
