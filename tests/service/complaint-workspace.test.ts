import { ComplaintWorkspaceService } from '../../src/complaints/complaint-workspace.service';
import type { RequestActor } from '../../src/base/actor';
import { complaintRow, evidenceRow, segmentRow, uuid } from '../support/rows';
import { MemoryState, memoryRepos } from './in-memory';

/**
 * The complaint workspace as business rules: which evidence is the complaint's story (linked, its
 * orders', the parts of long clips that are its orders, calls with the customer near the time),
 * what is suggested and why, and what accepting a suggestion records. In memory.
 */
const support: RequestActor = { keyId: 'key-sup', role: 'support', name: 'Sam' };
const DAY = 86_400_000;
const opened = new Date('2026-01-20T12:00:00Z');
const CUSTOMER = '+442079460958';

function setup() {
  const s = new MemoryState();
  const r = memoryRepos(s);
  const workspace = new ComplaintWorkspaceService({
    db: r.db,
    complaints: r.complaints,
    evidence: r.evidence,
    segments: r.segments,
    audit: r.audit,
    opts: { suggestionWindowDays: 7 },
  });
  s.complaints.set(
    'CMP-1',
    complaintRow({
      id: 'CMP-1',
      order_ids: ['ORD-1'],
      tracking_numbers: ['1Z999'],
      customer_phone_e164: CUSTOMER,
      opened_at: opened,
    }),
  );
  const at = (days: number) => new Date(opened.getTime() + days * DAY);
  const linked = s.addItem(
    evidenceRow({ id: uuid(1), captured_at: at(-1), complaint_ids: ['CMP-1'] }),
  );
  const orderClip = s.addItem(
    evidenceRow({ id: uuid(2), kind: 'packing_video', captured_at: at(-3), order_ids: ['ORD-1'] }),
  );
  // A long clip of several parcels, linked to none: its segment names the order.
  const long = s.addItem(evidenceRow({ id: uuid(3), kind: 'packing_video', captured_at: at(-4) }));
  const seg = segmentRow({ id: uuid(31), item_id: long.id, order_id: 'ORD-1', start_sec: '60' });
  const otherSeg = segmentRow({
    id: uuid(32),
    item_id: long.id,
    order_id: 'ORD-2',
    start_sec: '0',
  });
  s.segments.set(seg.id, seg);
  s.segments.set(otherSeg.id, otherSeg);
  const tracked = s.addItem(
    evidenceRow({ id: uuid(4), captured_at: at(-2), tracking_number: '1Z999' }),
  );
  const callIn = s.addItem(
    evidenceRow({
      id: uuid(5),
      captured_at: at(2),
      from_number_e164: CUSTOMER,
      to_number_e164: '+4420',
    }),
  );
  const callLong = s.addItem(
    evidenceRow({ id: uuid(6), captured_at: at(-30), from_number_e164: CUSTOMER }),
  );
  const stranger = s.addItem(
    evidenceRow({ id: uuid(7), captured_at: at(0), order_ids: ['ORD-9'] }),
  );
  return {
    s,
    workspace,
    linked,
    orderClip,
    long,
    seg,
    otherSeg,
    tracked,
    callIn,
    callLong,
    stranger,
  };
}

describe('the complaint workspace', () => {
  it('tells the story in time order: linked items, the orders’ items, the order’s part of a long clip, calls', async () => {
    const { workspace, linked, orderClip, long, seg, callIn } = setup();
    const w = await workspace.workspace(support, 'CMP-1');
    expect(w.evidence.map((e) => e.id)).toEqual([linked.id]);
    expect(w.timeline.map((t) => [t.type, t.item.id, t.segment?.id ?? null, t.via])).toEqual([
      // The long clip appears as its part for ORD-1, at the clip's time plus the part's start.
      ['segment', long.id, seg.id, ['order']],
      ['packing_video', orderClip.id, null, ['order']],
      ['call_recording', linked.id, null, ['complaint']],
      ['call_recording', callIn.id, null, ['customer_phone']],
    ]);
    expect(w.timeline[0]!.at).toBe(
      new Date(new Date(long.captured_at).getTime() + 60_000).toISOString(),
    );
  });

  it('suggests what is not linked yet, each with its reasons, and nothing outside the call window', async () => {
    const { workspace, orderClip, long, seg, tracked, callIn, callLong, stranger } = setup();
    const { suggestions, callWindow } = await workspace.suggestions(support, 'CMP-1');
    const byId = new Map(suggestions.map((x) => [x.item.id, x]));
    expect(suggestions.map((x) => x.item.id)).toEqual([
      long.id,
      orderClip.id,
      tracked.id,
      callIn.id,
    ]);
    expect(byId.get(long.id)!.reasons).toEqual([
      expect.objectContaining({ code: 'order_segment', orderId: 'ORD-1', segmentId: seg.id }),
    ]);
    expect(byId.get(long.id)!.segments.map((x) => x.id)).toEqual([seg.id]);
    expect(byId.get(orderClip.id)!.reasons).toEqual([
      expect.objectContaining({ code: 'order', orderId: 'ORD-1' }),
    ]);
    expect(byId.get(tracked.id)!.reasons).toEqual([
      expect.objectContaining({ code: 'tracking_number', trackingNumber: '1Z999' }),
    ]);
    expect(byId.get(callIn.id)!.reasons).toEqual([
      expect.objectContaining({
        code: 'customer_phone',
        direction: 'from_customer',
        phone: CUSTOMER,
      }),
    ]);
    // Seven days either side of the earliest and latest of the opening and the orders' items.
    expect(callWindow).toEqual({
      from: new Date(new Date(long.captured_at).getTime() - 7 * DAY).toISOString(),
      to: new Date(opened.getTime() + 7 * DAY).toISOString(),
    });
    expect(byId.has(callLong.id)).toBe(false);
    expect(byId.has(stranger.id)).toBe(false);
  });

  it('links accepted items, records why each was suggested, and stops suggesting them', async () => {
    const { s, workspace, linked, orderClip, stranger } = setup();
    const result = await workspace.link(support, 'CMP-1', {
      itemIds: [orderClip.id, stranger.id, linked.id],
    });
    expect(result).toEqual({
      complaintId: 'CMP-1',
      linked: [orderClip.id, stranger.id],
      alreadyLinked: [linked.id],
    });
    expect(s.item(orderClip.id)!.complaint_ids).toEqual(['CMP-1']);
    expect((await s.trail()).at(-1)).toMatchObject({
      action: 'evidence.link',
      item_ids: [orderClip.id, stranger.id],
      complaint_id: 'CMP-1',
      details: { suggested: { [orderClip.id]: ['order'] } },
    });
    const { suggestions } = await workspace.suggestions(support, 'CMP-1');
    expect(suggestions.map((x) => x.item.id)).not.toContain(orderClip.id);
  });

  it('links nothing, and records nothing, when everything named is linked already', async () => {
    const { s, workspace, linked } = setup();
    const result = await workspace.link(support, 'CMP-1', { itemIds: [linked.id] });
    expect(result).toEqual({ complaintId: 'CMP-1', linked: [], alreadyLinked: [linked.id] });
    expect((await s.trail()).map((e) => e.action)).not.toContain('evidence.link');
  });

  it('refuses to link deleted or unknown items, linking none of the others', async () => {
    const { s, workspace, orderClip, stranger } = setup();
    s.items.get(stranger.id)!.deleted_at = new Date('2026-01-25T00:00:00Z');
    await expect(
      workspace.link(support, 'CMP-1', { itemIds: [orderClip.id, stranger.id] }),
    ).rejects.toMatchObject({ code: 'evidence_deleted' });
    await expect(
      workspace.link(support, 'CMP-1', { itemIds: [orderClip.id, uuid(404)] }),
    ).rejects.toMatchObject({ code: 'not_found' });
    expect(s.item(orderClip.id)!.complaint_ids).toEqual([]);
    await expect(workspace.workspace(support, 'CMP-TYPO')).rejects.toMatchObject({
      code: 'not_found',
    });
  });
});
