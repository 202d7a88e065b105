import { api, enc, qs } from '../api';
import { formatSeconds, formatTime, h, KIND_LABELS, notice, replace } from '../dom';
import type { Page } from '../page';
import type { Item, LookupMatch } from '../types';

const MATCH_TITLES: Record<LookupMatch['type'], string> = {
  complaint: 'Complaint',
  order: 'Order',
  tracking_number: 'Tracking number',
  phone: 'Phone number',
};

/** Start of a local day, or the start of the next one, as an ISO instant. */
function dayBoundary(date: string, next: boolean): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return undefined;
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  return new Date(y, m - 1, d + (next ? 1 : 0)).toISOString();
}

export async function renderSearch(page: Page): Promise<void> {
  const p = page.params;
  const field = (id: string, label: string, input: HTMLElement) =>
    h('div', { class: 'field' }, h('label', { for: id }, label), input);
  const q = h('input', {
    id: 'q',
    name: 'q',
    type: 'search',
    value: p.get('q') ?? '',
    placeholder: 'ORD-1001, 1Z999…, CMP-77, +44 20 7946 0958',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': 'q-help',
  });
  const kind = h(
    'select',
    { id: 'kind', name: 'kind' },
    h('option', { value: '' }, 'Any kind'),
    ...['packing_video', 'call_recording', 'photo'].map((k) =>
      h('option', { value: k, selected: p.get('kind') === k }, KIND_LABELS[k]!),
    ),
  );
  const station = h('input', {
    id: 'station',
    name: 'stationId',
    value: p.get('stationId') ?? '',
    autocomplete: 'off',
  });
  const from = h('input', { id: 'from', name: 'from', type: 'date', value: p.get('from') ?? '' });
  const to = h('input', { id: 'to', name: 'to', type: 'date', value: p.get('to') ?? '' });
  const results = h('section', { id: 'results', 'aria-label': 'Results', 'aria-live': 'polite' });

  const form = h(
    'form',
    {
      role: 'search',
      class: 'search card',
      onsubmit: (e: Event) => {
        e.preventDefault();
        const hash = `#/search${qs({
          q: q.value.trim(),
          kind: kind.value,
          stationId: station.value.trim(),
          from: from.value,
          to: to.value,
        })}`;
        if (location.hash === hash) page.reload();
        else page.go(hash);
      },
    },
    h(
      'div',
      { class: 'search-row' },
      field('q', 'Order, tracking, complaint or phone number', q),
      h('button', { type: 'submit' }, 'Search'),
    ),
    h(
      'p',
      { id: 'q-help', class: 'help' },
      'One box for everything; press / anywhere to come back here. Phone numbers in any common format.',
    ),
    h(
      'fieldset',
      { class: 'filters' },
      h('legend', {}, 'Filters'),
      field('kind', 'Kind', kind),
      field('station', 'Station', station),
      field('from', 'Captured from', from),
      field('to', 'Captured to (inclusive)', to),
    ),
  );
  replace(page.view, page.heading('Search'), form, results);
  q.focus();

  const query = p.get('q')?.trim() ?? '';
  const filters = {
    kind: p.get('kind') || undefined,
    stationId: p.get('stationId') || undefined,
    from: dayBoundary(p.get('from') ?? '', false),
    to: dayBoundary(p.get('to') ?? '', true),
  };
  if (!query && !filters.kind && !filters.stationId && !filters.from && !filters.to) {
    replace(results, h('p', { class: 'help' }, 'Type a number and press Enter.'));
    return;
  }
  replace(results, notice('info', 'Searching…'));
  const started = performance.now();
  let matches: LookupMatch[];
  if (query) {
    matches = (
      await api<{ matches: LookupMatch[] }>('GET', `/v1/lookup${qs({ q: query, ...filters })}`)
    ).matches;
  } else {
    const { items } = await api<{ items: Item[] }>(
      'GET',
      `/v1/evidence${qs({ ...filters, limit: 100 })}`,
    );
    matches = items.length ? [{ type: 'order', value: '', items }] : [];
  }
  const ms = Math.round(performance.now() - started);
  const count = new Set(matches.flatMap((m) => m.items.map((i) => i.id))).size;
  replace(
    results,
    h(
      'p',
      { class: 'result-count', role: 'status' },
      count === 0 && matches.length === 0
        ? `Nothing found for “${query || 'these filters'}” (${ms} ms).`
        : `${count} item${count === 1 ? '' : 's'} in ${ms} ms`,
    ),
    ...matches.map((m) => matchSection(m, query === '')),
  );
}

function matchSection(m: LookupMatch, filtersOnly: boolean): HTMLElement {
  const title = filtersOnly ? 'Matching evidence' : `${MATCH_TITLES[m.type]} ${m.value}`;
  return h(
    'section',
    { class: 'match', 'data-match': m.type },
    h(
      'h2',
      {},
      title,
      ' ',
      h('span', { class: 'count' }, `${m.items.length} item${m.items.length === 1 ? '' : 's'}`),
    ),
    m.type === 'complaint' &&
      h(
        'p',
        {},
        h(
          'a',
          { href: `#/complaints/${enc(m.value)}`, class: 'button-link' },
          `Open complaint ${m.value}`,
        ),
      ),
    m.items.length === 0
      ? h('p', { class: 'help' }, 'No evidence (with these filters).')
      : h('ul', { class: 'items' }, ...m.items.map((i) => itemRow(i, m))),
  );
}

function itemRow(i: Item, m: LookupMatch): HTMLElement {
  const who =
    i.kind === 'call_recording'
      ? [i.fromNumber, i.toNumber].filter(Boolean).join(' → ')
      : [i.stationId && `station ${i.stationId}`, i.operatorId && `operator ${i.operatorId}`]
          .filter(Boolean)
          .join(', ');
  const segs = (i.segments ?? []).filter((s) => m.type !== 'order' || s.orderId === m.value);
  return h(
    'li',
    { class: `item kind-${i.kind}` },
    h('span', { class: 'badge' }, KIND_LABELS[i.kind] ?? i.kind),
    h(
      'div',
      { class: 'item-main' },
      h('a', { href: `#/evidence/${i.id}`, class: 'item-link' }, i.originalFilename ?? i.id),
      h(
        'span',
        { class: 'meta' },
        formatTime(i.capturedAt),
        who && ` · ${who}`,
        i.orderIds.length > 0 && ` · orders ${i.orderIds.join(', ')}`,
        i.status === 'deleted' && ' · deleted',
      ),
      segs.length > 0 &&
        h(
          'span',
          { class: 'segments' },
          ...segs.map((s) =>
            h(
              'a',
              { href: `#/evidence/${i.id}?t=${s.startSec}`, class: 'chip' },
              `${s.orderId} at ${formatSeconds(s.startSec)}–${formatSeconds(s.endSec)}`,
            ),
          ),
        ),
    ),
  );
}
