import type { BundleManifest } from '../../src/bundles/bundle-format';
import { BundleService, type CutMaker } from '../../src/bundles/bundle.service';
import { systemActor, type RequestActor } from '../../src/base/actor';
import {
  complaintRow,
  cutRow,
  evidenceRow,
  segmentRow,
  TEST_SIGNING_KEY,
  uuid,
} from '../support/rows';
import { code, memoryCheckpoints, MemoryState, memoryRepos, memoryStore } from './in-memory';

/**
 * Dispute bundles as business rules: what a bundle may take (the complaint's evidence, never
 * another's; no deleted or damaged bytes; a segment only of the complaint's orders), in what order,
 * with which audit excerpt, and when a made bundle is no longer served. In memory; the ZIP's bytes
 * and the HTTP download are the unit and API tiers'.
 */
const support: RequestActor = { keyId: 'key-sup', role: 'support', name: 'Sam' };

async function setup(media: Partial<CutMaker> = {}) {
  const s = new MemoryState();
  const r = memoryRepos(s);
  const made: string[] = [];
  const bundles = new BundleService({
    db: r.db,
    repo: r.bundles,
    evidenceRepo: r.evidence,
    complaints: r.complaints,
    segments: r.segments,
    store: memoryStore(s),
    audit: r.audit,
    auditRepo: r.auditRepo,
    checkpoints: memoryCheckpoints(s),
    key: TEST_SIGNING_KEY,
    media: {
      ffmpegAvailable: false,
      toolsProblem: 'ffmpeg is not installed',
      process: async (itemId: string) => made.push(itemId),
      ...media,
    },
    logger: r.logger,
  });
  s.complaints.set('CMP-1', complaintRow({ id: 'CMP-1', order_ids: ['ORD-1', 'ORD-2'] }));
  // Linked to the complaint: a call (captured second) and a clip (captured first).
  const call = s.addItem(
    evidenceRow({
      id: uuid(1),
      captured_at: new Date('2026-01-10T10:00:00Z'),
      complaint_ids: ['CMP-1'],
    }),
  );
  const clip = s.addItem(
    evidenceRow({
      id: uuid(2),
      kind: 'packing_video',
      content_type: 'video/mp4',
      original_filename: 'clip.mp4',
      captured_at: new Date('2026-01-09T10:00:00Z'),
      complaint_ids: ['CMP-1'],
    }),
  );
  // Linked only to the complaint's orders: a long clip of two parcels, one of them another customer's.
  const long = s.addItem(
    evidenceRow({
      id: uuid(3),
      kind: 'packing_video',
      content_type: 'video/mp4',
      captured_at: new Date('2026-01-08T10:00:00Z'),
      order_ids: ['ORD-2', 'ORD-77'],
    }),
  );
  const ours = segmentRow({
    id: uuid(31),
    item_id: long.id,
    order_id: 'ORD-2',
    start_sec: '5',
    end_sec: '9',
  });
  const theirs = segmentRow({
    id: uuid(32),
    item_id: long.id,
    order_id: 'ORD-77',
    start_sec: '0',
    end_sec: '5',
  });
  for (const seg of [ours, theirs]) {
    s.segments.set(seg.id, seg);
    const cut = cutRow(seg, long);
    s.cuts.set(seg.id, cut);
    s.blobs.set(cut.blob_key, Buffer.alloc(cut.size_bytes!));
  }
  const stranger = s.addItem(evidenceRow({ id: uuid(4), order_ids: ['ORD-77'] }));
  // Their arrival, as ingest records it (the chain a bundle's checkpoint signs).
  await r.db.transaction().execute((tx) =>
    r.audit.append(
      tx,
      [call, clip, long, stranger].map((i) => ({
        action: 'evidence.create' as const,
        actor: systemActor('ingest'),
        itemIds: [i.id],
      })),
    ),
  );
  return { s, r, bundles, made, call, clip, long, ours, theirs, stranger };
}

const manifestOf = (s: MemoryState, id: string) =>
  JSON.parse(s.bundles.get(id)!.manifest) as BundleManifest;

describe('making a bundle', () => {
  it('takes every item linked to the complaint, in capture order, and leaves out deleted ones', async () => {
    const { s, bundles, call, clip } = await setup();
    const gone = s.addItem(
      evidenceRow({
        id: uuid(5),
        complaint_ids: ['CMP-1'],
        deleted_at: new Date('2026-01-20T00:00:00Z'),
      }),
    );
    const view = await bundles.create(support, 'CMP-1', {});
    expect(view).toMatchObject({ complaintId: 'CMP-1', fileCount: 2, itemIds: [clip.id, call.id] });
    const m = manifestOf(s, view.id);
    expect(m.selection).toEqual({ mode: 'all_linked', itemIds: [], segmentIds: [] });
    expect(m.files.map((f) => f.itemId)).toEqual([clip.id, call.id]);
    expect(m.omitted).toEqual([
      { itemId: gone.id, reason: 'deleted', deletedAt: '2026-01-20T00:00:00.000Z' },
    ]);
    expect(m.checkpoint.checkpoint.keyFingerprint).toBe(TEST_SIGNING_KEY.fingerprint);
    expect((await s.trail()).at(-1)).toMatchObject({
      action: 'bundle.create',
      complaint_id: 'CMP-1',
      item_ids: [clip.id, call.id],
      details: { bundleId: view.id, fileCount: 2, manifestSha256: view.manifestSha256 },
    });
  });

  it('signs the chain head first and puts the items’ custody events in the excerpt, never reads', async () => {
    const { s, r, bundles, call, stranger } = await setup();
    await r.audit.record({ action: 'evidence.view', actor: support, itemIds: [call.id] });
    const view = await bundles.create(support, 'CMP-1', { itemIds: [call.id] });
    const m = manifestOf(s, view.id);
    // The checkpoint covers every event before the bundle (the view included)...
    expect(m.checkpoint.checkpoint.seq).toBe(5);
    expect(s.checkpoints.map((c) => c.seq)).toEqual([5]);
    // ...and the excerpt only the call's custody: not the stranger's, not who looked at it.
    expect(m.auditExcerpt).toMatchObject({ events: 1, firstSeq: 1, lastSeq: 1 });
    const excerpt = s.bundles.get(view.id)!.texts['audit.jsonl']!;
    expect(excerpt).toContain('"evidence.create"');
    expect(excerpt).not.toContain(stranger.id);
    expect(excerpt).not.toContain('evidence.view');
  });

  it('takes selected items and the complaint’s segments of a long clip, each cut after its item', async () => {
    const { s, bundles, call, long, ours } = await setup();
    const view = await bundles.create(support, 'CMP-1', {
      itemIds: [call.id],
      segmentIds: [ours.id],
    });
    const m = manifestOf(s, view.id);
    expect(m.selection).toEqual({ mode: 'selected', itemIds: [call.id], segmentIds: [ours.id] });
    expect(m.files.map((f) => [f.type, f.itemId, f.segment?.orderId ?? null])).toEqual([
      ['segment', long.id, 'ORD-2'],
      ['original', call.id, null],
    ]);
    // The cut's bytes are what the ZIP streams, not the whole recording.
    expect(s.bundles.get(view.id)!.entries[0]!.blobKey).toBe(s.cuts.get(ours.id)!.blob_key);
  });

  it('refuses another customer’s parcel: a segment of an order not the complaint’s', async () => {
    const { s, bundles, long, theirs } = await setup();
    await expect(
      bundles.create(support, 'CMP-1', { segmentIds: [theirs.id] }),
    ).rejects.toMatchObject({
      code: 'bundle_item_not_linked',
      extra: { itemIds: [long.id] },
    });
    expect(s.bundles.size).toBe(0);
  });

  it('refuses items not linked to the complaint or its orders, unknown ids and deleted items', async () => {
    const { s, bundles, call, stranger } = await setup();
    expect(await code(bundles.create(support, 'CMP-1', { itemIds: [call.id, stranger.id] }))).toBe(
      'bundle_item_not_linked',
    );
    expect(await code(bundles.create(support, 'CMP-1', { itemIds: [uuid(404)] }))).toBe(
      'bundle_unknown_items',
    );
    s.items.get(call.id)!.deleted_at = new Date('2026-02-01T00:00:00Z');
    expect(await code(bundles.create(support, 'CMP-1', { itemIds: [call.id] }))).toBe(
      'bundle_item_deleted',
    );
    expect(s.bundles.size).toBe(0);
  });

  it('never bundles bytes known to be damaged, and signs nothing for a refused bundle', async () => {
    const { s, bundles, clip } = await setup();
    s.items.get(clip.id)!.damaged_at = new Date('2026-02-01T00:00:00Z');
    await expect(bundles.create(support, 'CMP-1', {})).rejects.toMatchObject({
      code: 'evidence_damaged',
      extra: { itemIds: [clip.id] },
    });
    expect(s.checkpoints).toEqual([]);
    expect((await s.trail()).map((e) => e.action)).not.toContain('bundle.create');
  });

  it('makes a missing cut when it can, and says why when it cannot', async () => {
    const { s, bundles, ours, long } = await setup();
    s.cuts.delete(ours.id);
    await expect(bundles.create(support, 'CMP-1', { segmentIds: [ours.id] })).rejects.toMatchObject(
      {
        code: 'segment_cut_unavailable',
        message: expect.stringContaining('ffmpeg is not installed'),
      },
    );
    const able = await setup({ ffmpegAvailable: true });
    able.s.cuts.delete(able.ours.id);
    await expect(
      able.bundles.create(support, 'CMP-1', { segmentIds: [able.ours.id] }),
    ).rejects.toMatchObject({ code: 'segment_cut_unavailable' });
    expect(able.made).toEqual([long.id]);
  });

  it('has nothing to bundle for a complaint without live evidence, and no complaint for a typo', async () => {
    const { s, bundles } = await setup();
    s.complaints.set('CMP-EMPTY', complaintRow({ id: 'CMP-EMPTY' }));
    expect(await code(bundles.create(support, 'CMP-EMPTY', {}))).toBe('bundle_empty');
    expect(await code(bundles.create(support, 'CMP-TYPO', {}))).toBe('not_found');
  });

  it('is support’s and an admin’s to make, not an ingest key’s', async () => {
    const { bundles } = await setup();
    const ingest: RequestActor = { keyId: 'key-in', role: 'ingest', name: 'station' };
    expect(await code(bundles.create(ingest, 'CMP-1', {}))).toBe('forbidden');
  });
});

describe('serving a bundle made before', () => {
  it('is refused once one of its items was deleted, or its stored bytes went missing', async () => {
    const { s, bundles, call, clip } = await setup();
    const view = await bundles.create(support, 'CMP-1', {});
    const prepared = await bundles.prepare(support, view.id);
    expect(prepared).toMatchObject({ size: view.zipBytes, etag: `"${view.manifestSha256}"` });
    expect(prepared.filename).toBe(`bundle-CMP-1-${view.id}.zip`);

    s.blobs.delete(clip.blob_key);
    expect(await code(bundles.prepare(support, view.id))).toBe('evidence_unavailable');
    s.items.get(call.id)!.deleted_at = new Date('2026-02-01T00:00:00Z');
    expect(await code(bundles.prepare(support, view.id))).toBe('evidence_deleted');
    // The record stays, and still names what was bundled.
    expect((await bundles.get(support, view.id)).itemIds).toEqual([clip.id, call.id]);
  });
});
