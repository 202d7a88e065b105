import { parseWith } from '../../src/base/fields';
import { createShareLinkBody } from '../../src/contract/share.contract';
import type { RequestActor } from '../../src/base/actor';
import { ShareLinkService, tokenHash } from '../../src/share/share-link.service';
import { complaintRow, cutRow, evidenceRow, segmentRow, uuid } from '../support/rows';
import { code, MemoryState, memoryRepos, memoryStore } from './in-memory';

/**
 * Share links as business rules: one target each, scoped to a complaint only when the evidence is
 * that complaint's, expiring after the days asked for (30 at most), revocable at once, refused
 * (404 for a token nobody was given, 410 once expired or revoked) and never opening deleted or
 * damaged evidence. In memory, on a clock the test moves.
 */
const support: RequestActor = { keyId: 'key-sup', role: 'support', name: 'Sam' };
const DAY = 86_400_000;

/** What the route does: the body parsed by the contract's schema, then the service. */
const create = (links: ShareLinkService, actor: RequestActor, body: Record<string, unknown>) =>
  Promise.resolve().then(() => links.create(actor, parseWith(createShareLinkBody, body)));

function setup() {
  const s = new MemoryState();
  const r = memoryRepos(s);
  const clock = { now: new Date('2026-03-01T09:00:00Z') };
  const links = new ShareLinkService({
    db: r.db,
    links: r.shareLinks,
    complaints: r.complaints,
    evidence: r.evidence,
    segments: r.segments,
    store: memoryStore(s),
    audit: r.audit,
    bundles: {
      exists: async (id) => (id === uuid(900) ? { complaintId: 'CMP-1' } : undefined),
    },
    opts: { publicUrl: 'https://archive.example', now: () => clock.now },
  });
  s.complaints.set('CMP-1', complaintRow({ id: 'CMP-1', order_ids: ['ORD-1'] }));
  const viaOrder = s.addItem(evidenceRow({ id: uuid(1), order_ids: ['ORD-1'] }));
  const stranger = s.addItem(evidenceRow({ id: uuid(2), order_ids: ['ORD-9'] }));
  const clip = s.addItem(evidenceRow({ id: uuid(3), kind: 'packing_video', order_ids: ['ORD-1'] }));
  const seg = segmentRow({ id: uuid(31), item_id: clip.id, order_id: 'ORD-1' });
  s.segments.set(seg.id, seg);
  const later = (days: number) => {
    clock.now = new Date(clock.now.getTime() + days * DAY);
  };
  return { s, links, clock, later, viaOrder, stranger, clip, seg };
}

describe('creating a share link', () => {
  it('gives a token once, keeps only its hash, and expires after the default 7 days', async () => {
    const { s, links, viaOrder } = setup();
    const { link, token, url } = await create(links, support, {
      itemId: viaOrder.id,
      complaintId: 'CMP-1',
    });
    expect(url).toBe(`https://archive.example/s/${token}`);
    expect(link).toMatchObject({
      target: { type: 'item', itemId: viaOrder.id, segmentId: null, bundleId: null },
      complaintId: 'CMP-1',
      createdAt: '2026-03-01T09:00:00.000Z',
      expiresAt: '2026-03-08T09:00:00.000Z',
      status: 'active',
      useCount: 0,
    });
    const stored = s.shareLinks.get(link.id)!;
    expect(stored.token_sha256).toBe(tokenHash(token));
    expect(JSON.stringify(stored)).not.toContain(token);
    expect((await s.trail()).at(-1)).toMatchObject({
      action: 'share_link.create',
      item_ids: [viaOrder.id],
      complaint_id: 'CMP-1',
    });
    expect(JSON.stringify(await s.trail())).not.toContain(token);
  });

  it('lasts between 1 and 30 days', async () => {
    const { links, viaOrder } = setup();
    const make = (expiresInDays: number) =>
      create(links, support, { itemId: viaOrder.id, expiresInDays });
    expect(await code(make(0))).toBe('validation_failed');
    expect(await code(make(31))).toBe('validation_failed');
    expect((await make(30)).link.expiresAt).toBe('2026-03-31T09:00:00.000Z');
  });

  it('points at exactly one thing', async () => {
    const { links, viaOrder } = setup();
    expect(await code(create(links, support, {}))).toBe('validation_failed');
    expect(await code(create(links, support, { itemId: viaOrder.id, bundleId: uuid(900) }))).toBe(
      'validation_failed',
    );
  });

  it('is listed under a complaint only when the evidence is that complaint’s', async () => {
    const { links, stranger } = setup();
    await expect(
      create(links, support, { itemId: stranger.id, complaintId: 'CMP-1' }),
    ).rejects.toMatchObject({ code: 'validation_failed', extra: { field: 'complaintId' } });
  });

  it('takes a bundle’s complaint, and refuses another complaint or an unknown bundle', async () => {
    const { links } = setup();
    const { link } = await create(links, support, { bundleId: uuid(900) });
    expect(link).toMatchObject({ complaintId: 'CMP-1', target: { type: 'bundle' } });
    expect(await code(create(links, support, { bundleId: uuid(900), complaintId: 'CMP-2' }))).toBe(
      'validation_failed',
    );
    expect(await code(create(links, support, { bundleId: uuid(901) }))).toBe('not_found');
  });

  it('does not share deleted evidence', async () => {
    const { s, links, viaOrder } = setup();
    s.items.get(viaOrder.id)!.deleted_at = new Date('2026-02-01T00:00:00Z');
    expect(await code(create(links, support, { itemId: viaOrder.id }))).toBe('evidence_deleted');
    expect(s.shareLinks.size).toBe(0);
  });
});

describe('opening a share link', () => {
  it('opens until it expires, then is gone (410), and says so in its status', async () => {
    const { links, later, viaOrder } = setup();
    const { link, token } = await create(links, support, { itemId: viaOrder.id, expiresInDays: 2 });
    const opened = await links.resolve(token, { clientIp: '203.0.113.9' });
    expect(opened.content).toMatchObject({ type: 'item', item: { id: viaOrder.id } });
    expect(opened.actor).toMatchObject({
      keyId: null,
      role: 'share_link',
      clientIp: '203.0.113.9',
    });
    later(1.99);
    await links.resolve(token, {});
    later(0.01);
    expect(await code(links.resolve(token, {}))).toBe('share_link_expired');
    expect((await links.get(link.id)).status).toBe('expired');
  });

  it('stops at once when revoked; revoking again changes nothing', async () => {
    const { s, links, viaOrder } = setup();
    const { link, token } = await create(links, support, { itemId: viaOrder.id });
    const revoked = await links.revoke(support, link.id);
    expect(revoked).toMatchObject({ status: 'revoked', revokedAt: '2026-03-01T09:00:00.000Z' });
    expect(await code(links.resolve(token, {}))).toBe('share_link_revoked');
    expect(await links.revoke(support, link.id)).toEqual(revoked);
    expect((await s.trail()).filter((e) => e.action === 'share_link.revoke')).toHaveLength(1);
  });

  it('is not_found for a token nobody was given, however it looks', async () => {
    const { links } = setup();
    expect(await code(links.resolve('A'.repeat(43), {}))).toBe('not_found');
    expect(await code(links.resolve('../etc/passwd', {}))).toBe('not_found');
  });

  it('never opens evidence deleted or found damaged since the link was made', async () => {
    const { s, links, viaOrder } = setup();
    const { token } = await create(links, support, { itemId: viaOrder.id });
    s.items.get(viaOrder.id)!.damaged_at = new Date('2026-03-01T10:00:00Z');
    await expect(links.resolve(token, {})).rejects.toMatchObject({
      code: 'evidence_damaged',
      extra: { shareLinkId: expect.any(String) },
    });
    s.items.get(viaOrder.id)!.deleted_at = new Date('2026-03-01T11:00:00Z');
    expect(await code(links.resolve(token, {}))).toBe('evidence_deleted');
  });

  it('opens a segment’s cut once it is ready', async () => {
    const { s, links, clip, seg } = setup();
    const { token } = await create(links, support, { segmentId: seg.id, complaintId: 'CMP-1' });
    expect(await code(links.resolve(token, {}))).toBe('derivative_not_ready');
    s.cuts.set(seg.id, cutRow(seg, clip));
    const { content } = await links.resolve(token, {});
    expect(content).toMatchObject({
      type: 'segment',
      segment: { id: seg.id },
      cut: { blobKey: s.cuts.get(seg.id)!.blob_key, size: 400 },
    });
  });

  it('records every use with the link and the client, and counts it', async () => {
    const { s, links, viaOrder } = setup();
    const { link, token } = await create(links, support, { itemId: viaOrder.id });
    const opened = await links.resolve(token, { clientIp: '203.0.113.9' });
    await links.recordUse(opened.link, opened.actor, { method: 'HEAD' });
    expect((await s.trail()).at(-1)).toMatchObject({
      action: 'share_link.use',
      actor_role: 'share_link',
      client_ip: '203.0.113.9',
      item_ids: [viaOrder.id],
      details: { shareLinkId: link.id, method: 'HEAD' },
    });
    expect((await links.get(link.id)).useCount).toBe(1);
  });
});
