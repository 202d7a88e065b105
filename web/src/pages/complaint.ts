import { api, ApiError, enc, qs } from '../api';
import {
  copyText,
  facts,
  formatBytes,
  formatSeconds,
  formatTime,
  h,
  KIND_LABELS,
  notice,
  replace,
} from '../dom';
import type { Page } from '../page';
import type { Bundle, Complaint, CreatedShareLink, Hold, ShareLink, Suggestion } from '../types';

export async function renderComplaint(page: Page, id: string): Promise<void> {
  replace(page.view, page.heading(`Complaint ${id}`), notice('info', 'Loading…'));
  const [c, sugg, holds, shares, saved] = await Promise.all([
    api<Complaint>('GET', `/v1/complaints/${enc(id)}`),
    api<{ suggestions: Suggestion[]; callWindow: { from: string; to: string } | null }>(
      'GET',
      `/v1/complaints/${enc(id)}/suggestions`,
    ),
    api<{ onHold: boolean; holds: Hold[] }>('GET', `/v1/complaints/${enc(id)}/hold-status`),
    api<{ items: ShareLink[] }>('GET', `/v1/share-links${qs({ complaintId: id })}`),
    api<{ items: Bundle[] }>('GET', `/v1/complaints/${enc(id)}/bundles`),
  ]);
  made.set(id, saved.items);
  replace(
    page.view,
    page.heading(`Complaint ${c.id}`),
    h(
      'div',
      { class: 'complaint-grid' },
      h('div', {}, fields(c), timeline(c), suggestions(c, sugg.suggestions, sugg.callWindow, page)),
      h('div', {}, holdStatus(c, holds, page), bundles(c), shareLinks(c, shares.items)),
    ),
  );
}

function fields(c: Complaint): HTMLElement {
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'fields-h' },
    h('h2', { id: 'fields-h' }, 'Complaint'),
    facts([
      ['Status', h('span', { class: `status status-${c.status}` }, c.status)],
      ['Opened', formatTime(c.openedAt)],
      ['Closed', c.closedAt ? formatTime(c.closedAt) : null],
      [
        'Orders',
        c.orderIds.length
          ? c.orderIds.map((o, i) => [i ? ', ' : '', h('a', { href: `#/search?q=${enc(o)}` }, o)])
          : null,
      ],
      ['Tracking numbers', c.trackingNumbers.join(', ') || null],
      ['Customer phone', c.customerPhone],
      ['Channel', c.channel],
      ['Topic', c.topic],
      [
        'Claim',
        c.claimUrl
          ? h('a', { href: c.claimUrl, rel: 'noopener noreferrer', target: '_blank' }, c.claimUrl)
          : null,
      ],
      ['Description', c.description ? h('span', { class: 'pre' }, c.description) : null],
    ]),
  );
}

function timeline(c: Complaint): HTMLElement {
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'timeline-h' },
    h('h2', { id: 'timeline-h' }, 'Timeline'),
    c.timeline.length === 0
      ? h('p', { class: 'help' }, 'No evidence is linked to this complaint or its orders yet.')
      : h(
          'ol',
          { class: 'timeline' },
          ...c.timeline.map((t) =>
            h(
              'li',
              {},
              h('time', { datetime: t.at }, formatTime(t.at)),
              h('span', { class: 'badge' }, KIND_LABELS[t.type] ?? t.type),
              h(
                'a',
                {
                  href: `#/evidence/${t.item.id}${t.segment ? `?t=${t.segment.startSec}` : ''}`,
                },
                t.segment
                  ? `${t.segment.orderId} at ${formatSeconds(t.segment.startSec)}–${formatSeconds(t.segment.endSec)} of ${t.item.originalFilename ?? t.item.id}`
                  : (t.item.originalFilename ?? t.item.id),
              ),
              h(
                'span',
                { class: 'meta' },
                t.linkedToComplaint ? ' · linked to the complaint' : '',
                t.orderIds.length ? ` · order ${t.orderIds.join(', ')}` : '',
              ),
            ),
          ),
        ),
  );
}

function suggestions(
  c: Complaint,
  list: Suggestion[],
  window: { from: string; to: string } | null,
  page: Page,
): HTMLElement {
  const status = h('div', { 'aria-live': 'polite' });
  const accept = async (ids: string[]) => {
    try {
      await api('POST', `/v1/complaints/${enc(c.id)}/suggestions/accept`, { itemIds: ids });
      page.reload();
    } catch (err) {
      replace(status, notice('error', (err as Error).message));
    }
  };
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'sugg-h' },
    h('h2', { id: 'sugg-h' }, 'Suggested evidence'),
    window &&
      h(
        'p',
        { class: 'help' },
        `Calls with the customer looked for from ${formatTime(window.from)} to ${formatTime(window.to)}.`,
      ),
    list.length === 0
      ? h('p', { class: 'help' }, 'No suggestions: everything that matches is already linked.')
      : [
          h(
            'ul',
            { class: 'suggestions' },
            ...list.map((s) =>
              h(
                'li',
                { 'data-item': s.item.id },
                h(
                  'div',
                  {},
                  h('span', { class: 'badge' }, KIND_LABELS[s.item.kind] ?? s.item.kind),
                  h('a', { href: `#/evidence/${s.item.id}` }, s.item.originalFilename ?? s.item.id),
                  h('span', { class: 'meta' }, ` · ${formatTime(s.item.capturedAt)}`),
                  h('ul', { class: 'reasons' }, ...s.reasons.map((r) => h('li', {}, r.detail))),
                ),
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'accept',
                    'aria-label': `Accept ${s.item.originalFilename ?? s.item.id}`,
                    onclick: () => void accept([s.item.id]),
                  },
                  'Accept',
                ),
              ),
            ),
          ),
          list.length > 1 &&
            h(
              'button',
              {
                type: 'button',
                class: 'secondary',
                onclick: () => void accept(list.map((s) => s.item.id)),
              },
              `Accept all ${list.length}`,
            ),
        ],
    status,
  );
}

function holdStatus(c: Complaint, st: { onHold: boolean; holds: Hold[] }, page: Page): HTMLElement {
  const admin = page.me.permissions.includes('hold:manage');
  const status = h('div', { 'aria-live': 'polite' });
  const act = async (method: string, path: string, body: unknown) => {
    try {
      await api(method, path, body);
      page.reload();
    } catch (err) {
      replace(status, notice('error', (err as Error).message));
    }
  };
  const reason = h('input', {
    id: 'hold-reason',
    required: true,
    maxlength: 500,
    autocomplete: 'off',
  });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'hold-h' },
    h('h2', { id: 'hold-h' }, 'Legal hold'),
    st.onHold
      ? h(
          'ul',
          { class: 'holds' },
          ...st.holds.map((x) => {
            const why = h('input', { id: `release-${x.id}`, required: true, autocomplete: 'off' });
            return h(
              'li',
              {},
              h(
                'p',
                { class: 'notice notice-info' },
                `On hold since ${formatTime(x.placedAt)} by ${x.placedBy}: ${x.reason}`,
              ),
              admin &&
                h(
                  'form',
                  {
                    class: 'inline-form',
                    onsubmit: (e: Event) => {
                      e.preventDefault();
                      void act('POST', `/v1/holds/${enc(x.id)}/release`, {
                        reason: why.value.trim(),
                      });
                    },
                  },
                  h('label', { for: why.id }, 'Reason to release'),
                  why,
                  h('button', { type: 'submit', class: 'secondary' }, 'Release hold'),
                ),
            );
          }),
        )
      : h(
          'p',
          {},
          'Not on hold. Its evidence is kept while the complaint is open, and after it closes for the retention period.',
        ),
    admin &&
      h(
        'form',
        {
          class: 'inline-form',
          onsubmit: (e: Event) => {
            e.preventDefault();
            void act('POST', `/v1/complaints/${enc(c.id)}/holds`, { reason: reason.value.trim() });
          },
        },
        h('label', { for: 'hold-reason' }, 'Reason for a hold'),
        reason,
        h('button', { type: 'submit' }, 'Place hold'),
      ),
    status,
  );
}

/** The complaint's bundles (the server's list, then those made here), so a link can share one. */
const made = new Map<string, Bundle[]>();

function bundles(c: Complaint): HTMLElement {
  const out = h('div', { id: 'bundle-result', 'aria-live': 'polite' });
  const show = (b: Bundle) =>
    h(
      'div',
      { class: 'bundle', 'data-bundle': b.id },
      notice(
        'ok',
        `Bundle ready: ${b.fileCount} file${b.fileCount === 1 ? '' : 's'}, ${formatBytes(b.zipBytes ?? b.totalBytes)}.`,
      ),
      h(
        'p',
        { class: 'help' },
        'Manifest SHA-256 ',
        h('code', { class: 'hash-inline' }, b.manifestSha256),
      ),
      h(
        'a',
        { href: b.downloadUrl, download: '', class: 'button-link bundle-download' },
        'Download bundle (ZIP)',
      ),
    );
  for (const b of made.get(c.id) ?? []) out.append(show(b));
  const create = h(
    'button',
    {
      type: 'button',
      id: 'create-bundle',
      onclick: async () => {
        create.disabled = true;
        const progress = h(
          'div',
          { role: 'status' },
          h('label', { for: 'bundle-progress' }, 'Collecting and signing the evidence…'),
          h('progress', { id: 'bundle-progress' }),
        );
        out.prepend(progress);
        try {
          const b = await api<Bundle>('POST', `/v1/complaints/${enc(c.id)}/bundles`, {});
          made.set(c.id, [b, ...(made.get(c.id) ?? [])]);
          progress.replaceWith(show(b));
        } catch (err) {
          progress.replaceWith(
            notice(
              'error',
              err instanceof ApiError && err.code === 'bundle_empty'
                ? 'Nothing is linked to the complaint itself yet: accept the suggestions first.'
                : `Could not make the bundle: ${(err as Error).message}`,
            ),
          );
        } finally {
          create.disabled = false;
        }
      },
    },
    'Create dispute bundle',
  );
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'bundle-h' },
    h('h2', { id: 'bundle-h' }, 'Dispute bundle'),
    h(
      'p',
      { class: 'help' },
      `A signed ZIP of the ${c.evidence.length} item${c.evidence.length === 1 ? '' : 's'} linked to the complaint, with a manifest of hashes and the custody record, that anyone can verify.`,
    ),
    create,
    out,
  );
}

function shareLinks(c: Complaint, links: ShareLink[]): HTMLElement {
  const status = h('div', { id: 'share-result', 'aria-live': 'polite' });
  const target = h(
    'select',
    { id: 'share-target', required: true },
    ...(made.get(c.id) ?? []).map((b) =>
      h(
        'option',
        { value: `bundle:${b.id}` },
        `Bundle of ${formatTime(b.createdAt)} (${b.fileCount} files)`,
      ),
    ),
    ...c.evidence.map((i) =>
      h(
        'option',
        { value: `item:${i.id}` },
        `${KIND_LABELS[i.kind] ?? i.kind}: ${i.originalFilename ?? i.id}`,
      ),
    ),
  );
  const days = h('input', {
    id: 'share-days',
    type: 'number',
    min: 1,
    max: 30,
    value: 7,
    required: true,
  });
  const note = h('input', { id: 'share-note', maxlength: 500, autocomplete: 'off' });
  const describe = (l: ShareLink) => {
    const t = l.target;
    if (t.bundleId) return `Bundle ${t.bundleId.slice(0, 8)}`;
    const item = c.evidence.find((i) => i.id === t.itemId);
    return t.segmentId
      ? `Segment ${t.segmentId.slice(0, 8)}`
      : (item?.originalFilename ?? `Item ${t.itemId?.slice(0, 8)}`);
  };
  const noTargets = target.options.length === 0;
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'share-h' },
    h('h2', { id: 'share-h' }, 'Share links'),
    h(
      'p',
      { class: 'help' },
      'A read-only link for someone without a key (a marketplace reviewer, the customer). The link is shown once.',
    ),
    noTargets
      ? h('p', { class: 'help' }, 'Link evidence to the complaint or create a bundle to share it.')
      : h(
          'form',
          {
            class: 'stack-form',
            onsubmit: async (e: Event) => {
              e.preventDefault();
              const [type, ref] = target.value.split(':') as [string, string];
              try {
                const l = await api<CreatedShareLink>('POST', '/v1/share-links', {
                  [type === 'bundle' ? 'bundleId' : 'itemId']: ref,
                  expiresInDays: Number(days.value),
                  complaintId: c.id,
                  ...(note.value.trim() ? { note: note.value.trim() } : {}),
                });
                const url = new URL(l.url, location.origin).href;
                const field = h('input', {
                  id: 'share-url',
                  readonly: true,
                  value: url,
                  class: 'hash',
                  'aria-label': 'Share link',
                });
                const copied = h('span', { class: 'help', 'aria-live': 'polite' });
                replace(
                  status,
                  notice(
                    'ok',
                    `Link created; it expires ${formatTime(l.expiresAt)}. Copy it now: it is not shown again.`,
                  ),
                  h(
                    'div',
                    { class: 'hash-row' },
                    field,
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'secondary',
                        id: 'share-copy',
                        onclick: async () => {
                          copied.textContent = (await copyText(url, field))
                            ? 'Copied.'
                            : 'Selected: press Ctrl+C.';
                        },
                      },
                      'Copy',
                    ),
                    copied,
                  ),
                );
                await refreshList();
              } catch (err) {
                replace(status, notice('error', (err as Error).message));
              }
            },
          },
          h('label', { for: 'share-target' }, 'What to share'),
          target,
          h('label', { for: 'share-days' }, 'Expires after (days, at most 30)'),
          days,
          h('label', { for: 'share-note' }, 'Note (who it is for)'),
          note,
          h('button', { type: 'submit' }, 'Create share link'),
        ),
    status,
    h('div', { id: 'share-list' }, linkTable(links)),
  );

  async function refreshList(): Promise<void> {
    const { items } = await api<{ items: ShareLink[] }>(
      'GET',
      `/v1/share-links${qs({ complaintId: c.id })}`,
    );
    replace(document.getElementById('share-list')!, linkTable(items));
  }

  function linkTable(items: ShareLink[]): HTMLElement {
    if (items.length === 0) return h('p', { class: 'help' }, 'No share links yet.');
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'share-links' },
        h('caption', { class: 'visually-hidden' }, 'Share links of this complaint'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['Shares', 'Note', 'Expires', 'Uses', 'Status', ''].map((x) =>
              h('th', { scope: 'col' }, x),
            ),
          ),
        ),
        h(
          'tbody',
          {},
          ...items.map((l) =>
            h(
              'tr',
              { 'data-link': l.id },
              h('td', {}, describe(l)),
              h('td', {}, l.note ?? '—'),
              h('td', {}, formatTime(l.expiresAt)),
              h('td', {}, String(l.useCount)),
              h('td', { class: `status status-${l.status}` }, l.status),
              h(
                'td',
                {},
                l.status === 'active' &&
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'secondary small revoke-link',
                      'aria-label': `Revoke share link ${describe(l)}`,
                      onclick: async () => {
                        try {
                          await api('DELETE', `/v1/share-links/${enc(l.id)}`);
                          await refreshList();
                        } catch (err) {
                          replace(status, notice('error', (err as Error).message));
                        }
                      },
                    },
                    'Revoke',
                  ),
              ),
            ),
          ),
        ),
      ),
    );
  }
}
