import { HoldService } from '../../src/custody/hold.service';
import { DeletionService } from '../../src/custody/deletion.service';
import type { RequestActor } from '../../src/base/actor';
import { complaintRow, evidenceRow, uuid } from '../support/rows';
import { code, MemoryState, memoryRepos, memoryStore, type MemoryStore } from './in-memory';

/**
 * Legal holds and deletion, as business rules: what a hold covers (an item; a complaint's linked
 * items and its orders' items), that held evidence is refused deletion until released, and what
 * is recorded. In memory: the database's own guard (its trigger) is the storage tier's to test.
 */
const admin: RequestActor = { keyId: 'key-admin', role: 'admin', name: 'Ada' };

function setup(opts: { legalHold?: boolean } = {}) {
  const s = new MemoryState();
  const r = memoryRepos(s);
  const store = memoryStore(s, opts);
  const holds = new HoldService({
    db: r.db,
    repo: r.holds,
    evidence: r.evidence,
    complaints: r.complaints,
    store,
    audit: r.audit,
    logger: r.logger,
  });
  const deletion = new DeletionService({
    db: r.db,
    repo: r.deletion,
    holds: r.holds,
    evidence: r.evidence,
    store,
    audit: r.audit,
    logger: r.logger,
    opts: { now: () => new Date('2026-03-01T00:00:00Z') },
  });
  s.complaints.set('CMP-1', complaintRow({ id: 'CMP-1', order_ids: ['ORD-1'] }));
  const linked = s.addItem(evidenceRow({ id: uuid(1), complaint_ids: ['CMP-1'] }));
  const viaOrder = s.addItem(evidenceRow({ id: uuid(2), order_ids: ['ORD-1'] }));
  const other = s.addItem(evidenceRow({ id: uuid(3), order_ids: ['ORD-9'] }));
  return { s, holds, deletion, store: store as unknown as MemoryStore, linked, viaOrder, other };
}

describe('legal holds', () => {
  it('a hold on a complaint covers its linked items and its orders’ items, nothing else', async () => {
    const { s, holds, linked, viaOrder, other } = setup();
    const placed = await holds.placeOnComplaint(admin, 'CMP-1', 'chargeback');
    expect(placed.itemIds).toEqual([linked.id, viaOrder.id]);
    expect(placed.hold).toMatchObject({ complaintId: 'CMP-1', itemId: null, active: true });
    expect([linked.id, viaOrder.id, other.id].map((id) => s.isHeld(id))).toEqual([
      true,
      true,
      false,
    ]);
    const event = (await s.trail()).at(-1)!;
    expect(event).toMatchObject({
      action: 'hold.place',
      complaint_id: 'CMP-1',
      item_ids: [linked.id, viaOrder.id],
      actor_key_id: 'key-admin',
    });
  });

  it('refuses a hold on a complaint nobody knows (a typo would protect nothing)', async () => {
    const { s, holds } = setup();
    expect(await code(holds.placeOnComplaint(admin, 'CMP-TYPO', 'x'))).toBe('not_found');
    expect(s.holds).toEqual([]);
    expect(await s.trail()).toEqual([]);
  });

  it('refuses a hold on a deleted item', async () => {
    const { s, holds, other } = setup();
    s.items.get(other.id)!.deleted_at = new Date('2026-02-01T00:00:00Z');
    expect(await code(holds.placeOnItem(admin, other.id, 'x'))).toBe('evidence_deleted');
  });

  it('releases once: a second release of the same hold is hold_not_found', async () => {
    const { s, holds, other } = setup();
    const { hold } = await holds.placeOnItem(admin, other.id, 'dispute');
    const released = await holds.release(admin, hold.id, { reason: 'settled' });
    expect(released.hold).toMatchObject({ active: false, releaseReason: 'settled' });
    expect(s.isHeld(other.id)).toBe(false);
    expect(await code(holds.release(admin, hold.id, { reason: 'again' }))).toBe('hold_not_found');
    expect((await s.trail()).map((e) => e.action)).toEqual(['hold.place', 'hold.release']);
  });

  it('mirrors to the objects’ legal-hold flags what is still held after a release', async () => {
    const { holds, store, linked, viaOrder } = setup({ legalHold: true });
    const onItem = await holds.placeOnItem(admin, linked.id, 'item');
    const onComplaint = await holds.placeOnComplaint(admin, 'CMP-1', 'complaint');
    expect(onComplaint.objectLegalHold).toBe('mirrored');
    expect(store.legalHolds.get(linked.blob_key)).toBe(true);
    expect(store.legalHolds.get(viaOrder.blob_key)).toBe(true);
    await holds.release(admin, onComplaint.hold.id, { reason: 'closed' });
    // The item's own hold still stands; the order's item is free.
    expect(store.legalHolds.get(linked.blob_key)).toBe(true);
    expect(store.legalHolds.get(viaOrder.blob_key)).toBe(false);
    await holds.release(admin, onItem.hold.id, { reason: 'closed' });
    expect(store.legalHolds.get(linked.blob_key)).toBe(false);
  });

  it('says when the store has no legal-hold flags', async () => {
    const { holds, other } = setup({ legalHold: false });
    const placed = await holds.placeOnItem(admin, other.id, 'x');
    expect(placed.objectLegalHold).toBe('not_supported');
  });
});

describe('deletion', () => {
  it('refuses held evidence (held through a complaint’s order) and changes nothing', async () => {
    const { s, holds, deletion, viaOrder } = setup();
    await holds.placeOnComplaint(admin, 'CMP-1', 'chargeback');
    const events = (await s.trail()).length;
    expect(await code(deletion.deleteItem(admin, viaOrder.id, 'gdpr'))).toBe('legal_hold');
    expect(s.items.get(viaOrder.id)!.deleted_at).toBeNull();
    expect(s.blobs.has(viaOrder.blob_key)).toBe(true);
    expect(await s.trail()).toHaveLength(events);
  });

  it('deletes once the hold is released: a tombstone, the bytes gone, both recorded', async () => {
    const { s, holds, deletion, linked } = setup();
    const { hold } = await holds.placeOnItem(admin, linked.id, 'dispute');
    expect(await code(deletion.deleteItem(admin, linked.id, 'gdpr'))).toBe('legal_hold');
    await holds.release(admin, hold.id, { reason: 'settled' });
    const view = await deletion.deleteItem(admin, linked.id, 'gdpr');
    expect(view).toMatchObject({
      id: linked.id,
      status: 'deleted',
      deletedAt: '2026-03-01T00:00:00.000Z',
      deletionReason: 'gdpr',
      sha256: linked.sha256,
    });
    expect(s.blobs.has(linked.blob_key)).toBe(false);
    expect(s.items.get(linked.id)!.blob_purged_at).toEqual(new Date('2026-03-01T00:00:00Z'));
    const [del, purge] = (await s.trail()).slice(-2);
    expect(del).toMatchObject({
      action: 'evidence.delete',
      item_ids: [linked.id],
      details: { reason: 'gdpr', sha256: linked.sha256, size: linked.size_bytes },
    });
    expect(purge).toMatchObject({ action: 'evidence.purge', item_ids: [linked.id] });
  });

  it('refuses a second deletion and an unknown item', async () => {
    const { deletion, other } = setup();
    await deletion.deleteItem(admin, other.id, 'duplicate');
    expect(await code(deletion.deleteItem(admin, other.id, 'again'))).toBe('evidence_deleted');
    expect(await code(deletion.deleteItem(admin, uuid(99), 'x'))).toBe('not_found');
  });
});
