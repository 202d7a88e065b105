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
import type { AuditEvent, Derivatives, Item, Verification } from '../types';

export async function renderEvidence(page: Page, id: string): Promise<void> {
  replace(page.view, page.heading('Evidence'), notice('info', 'Loading…'));
  const item = await api<Item>('GET', `/v1/evidence/${enc(id)}`);
  const deleted = item.status === 'deleted';
  const [derivs, audit] = await Promise.all([
    deleted
      ? Promise.resolve(null)
      : api<Derivatives>('GET', `/v1/evidence/${enc(id)}/derivatives`),
    api<{ events: AuditEvent[] }>('GET', `/v1/evidence/${enc(id)}/audit${qs({ limit: 500 })}`),
  ]);
  const title = `${KIND_LABELS[item.kind] ?? item.kind}: ${item.originalFilename ?? item.id}`;
  replace(
    page.view,
    page.heading(title),
    deleted &&
      notice(
        'error',
        `Deleted ${formatTime(item.deletedAt)}: ${item.deletionReason ?? ''}. Its record, hash and history stay.`,
      ),
    h(
      'div',
      { class: 'evidence-grid' },
      h(
        'div',
        { class: 'evidence-media' },
        !deleted && derivs ? player(item, derivs, page) : null,
        derivs ? stills(item, derivs) : null,
      ),
      h(
        'div',
        { class: 'evidence-side' },
        metadata(item, derivs),
        integrity(item),
        links(item, page),
      ),
    ),
    custody(audit.events),
  );
}

function player(item: Item, d: Derivatives, page: Page): HTMLElement {
  const section = h('section', { class: 'card player', 'aria-labelledby': 'player-h' });
  const heading = h('h2', { id: 'player-h' }, item.kind === 'photo' ? 'Photo' : 'Player');
  if (item.kind === 'photo') {
    const preview = d.derivatives.find((x) => x.kind === 'preview' && x.status === 'ready');
    replace(
      section,
      heading,
      h('img', {
        src: preview?.url ?? `${item.contentUrl}?disposition=inline`,
        alt: `Photo ${item.originalFilename ?? item.id}`,
        class: 'photo',
      }),
    );
    return section;
  }
  const source = d.playback ?? {
    source: 'original' as const,
    url: `${item.contentUrl}?disposition=inline`,
    contentType: item.contentType,
  };
  // The document does not promise `url` (the service always sends it): the original otherwise.
  const sourceUrl = source.url ?? `${item.contentUrl}?disposition=inline`;
  const url =
    source.source === 'original' && !sourceUrl.includes('?')
      ? `${sourceUrl}?disposition=inline`
      : sourceUrl;
  const media =
    item.kind === 'call_recording'
      ? h('audio', {
          controls: true,
          preload: 'metadata',
          src: url,
          id: 'player',
          'aria-label': 'Call recording',
        })
      : h('video', {
          controls: true,
          preload: 'metadata',
          src: url,
          id: 'player',
          playsinline: true,
          poster:
            d.derivatives.find((x) => x.kind === 'poster' && x.status === 'ready')?.url ?? null,
          'aria-label': 'Packing video',
        });
  const position = h('p', { class: 'help', id: 'position', 'aria-live': 'off' }, '');
  media.addEventListener('timeupdate', () => {
    position.textContent = `Position ${formatSeconds(media.currentTime)}${
      Number.isFinite(media.duration) ? ` of ${formatSeconds(media.duration)}` : ''
    }`;
  });
  const start = Number(page.params.get('t'));
  const order = page.params.get('order');
  const seekTo =
    Number.isFinite(start) && start > 0
      ? start
      : item.segments?.find((s) => s.orderId === order)?.startSec;
  if (seekTo !== undefined) {
    media.addEventListener('loadedmetadata', () => (media.currentTime = seekTo), { once: true });
  }
  const segments = item.segments ?? [];
  replace(
    section,
    heading,
    media,
    position,
    source.source === 'original'
      ? h(
          'p',
          { class: 'help' },
          d.media?.status === 'done' || !d.media
            ? 'Playing the original file.'
            : `Playing the original: the browser preview is not ready (${d.media.status}). A format browsers cannot play will not start until it is.`,
        )
      : h(
          'p',
          { class: 'help' },
          'Playing the browser preview made from the original; the original is what is archived and hashed.',
        ),
    segments.length > 0 &&
      h(
        'div',
        { class: 'segments', role: 'group', 'aria-label': 'Jump to an order' },
        h('h3', {}, 'Orders in this recording'),
        h(
          'ul',
          { class: 'segment-list' },
          ...segments.map((s) =>
            h(
              'li',
              {},
              h(
                'button',
                {
                  type: 'button',
                  class: 'secondary',
                  'data-segment': s.id,
                  onclick: () => {
                    media.currentTime = s.startSec;
                    void media.play().catch(() => undefined);
                  },
                },
                `${s.orderId}: ${formatSeconds(s.startSec)}–${formatSeconds(s.endSec)}`,
              ),
              ' ',
              h('a', { href: s.contentUrl, download: '' }, 'Download cut'),
            ),
          ),
        ),
      ),
    h(
      'p',
      { class: 'actions' },
      h(
        'a',
        { href: item.contentUrl, download: '', class: 'button-link secondary' },
        'Download original',
      ),
    ),
  );
  return section;
}

function stills(item: Item, d: Derivatives): HTMLElement | null {
  const ready = d.derivatives.filter(
    (x) => ['poster', 'contact_sheet', 'waveform'].includes(x.kind) && x.status === 'ready',
  );
  const pending = d.derivatives.filter(
    (x) => x.status !== 'ready' && x.status !== 'not_applicable',
  );
  if (ready.length === 0 && pending.length === 0) return null;
  const names: Record<string, string> = {
    poster: 'Poster frame',
    contact_sheet: 'Contact sheet',
    waveform: 'Waveform',
  };
  return h(
    'section',
    { class: 'card stills', 'aria-labelledby': 'stills-h' },
    h('h2', { id: 'stills-h' }, 'Stills'),
    ...ready.map((x) =>
      h(
        'figure',
        {},
        h('img', {
          src: x.url,
          alt: `${names[x.kind]} of ${item.originalFilename ?? item.id}`,
          loading: 'lazy',
          width: x.width ?? null,
          height: x.height ?? null,
        }),
        h('figcaption', {}, names[x.kind]!),
      ),
    ),
    pending.length > 0 &&
      h(
        'p',
        { class: 'help' },
        `Not ready yet: ${pending.map((x) => `${x.kind.replace('_', ' ')} (${x.status})`).join(', ')}.`,
      ),
  );
}

function metadata(item: Item, d: Derivatives | null): HTMLElement {
  const duration = d?.media?.probe?.durationSeconds;
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'meta-h' },
    h('h2', { id: 'meta-h' }, 'Details'),
    facts([
      ['Kind', KIND_LABELS[item.kind] ?? item.kind],
      ['Captured', formatTime(item.capturedAt)],
      ['Received', formatTime(item.receivedAt)],
      ['Station', item.stationId],
      ['Operator', item.operatorId],
      ['Tracking number', item.trackingNumber],
      ['Caller', item.fromNumber],
      ['Called', item.toNumber],
      ['Direction', item.direction],
      ['Agent', item.agentId],
      ['Call id', item.callId],
      ['Source', item.source],
      ['File', item.originalFilename],
      ['Type', item.contentType],
      ['Size', formatBytes(item.size)],
      ['Duration', duration ? formatSeconds(duration) : null],
      ['Item id', h('code', {}, item.id)],
    ]),
  );
}

function integrity(item: Item): HTMLElement {
  const result = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  const last = h(
    'p',
    { class: 'help' },
    item.integrity === 'damaged' && item.damagedAt
      ? `Damaged: found on ${formatTime(item.damagedAt)} not to match its SHA-256, so it is not served. Uploading the genuine file again repairs it.`
      : item.lastVerification
        ? `Last verified ${formatTime(item.lastVerification.checkedAt)}: ${item.lastVerification.status}.`
        : 'Not verified since it was archived.',
  );
  const hash = h('input', {
    id: 'sha256',
    class: 'hash',
    readonly: true,
    value: item.sha256,
    'aria-label': 'SHA-256',
  });
  const verify = h(
    'button',
    {
      type: 'button',
      id: 'verify',
      disabled: item.status === 'deleted',
      onclick: async () => {
        verify.disabled = true;
        replace(result, notice('info', 'Re-reading the stored bytes and hashing them…'));
        try {
          const v = await api<Verification>('POST', `/v1/evidence/${enc(item.id)}/verify`);
          last.textContent = `Last verified ${formatTime(v.checkedAt)}: ${v.status}.`;
          replace(
            result,
            v.status === 'ok'
              ? notice(
                  'ok',
                  `Verified: ok. The stored bytes hash to the archived SHA-256 (${formatBytes(v.computed?.size)}, checked ${formatTime(v.checkedAt)}).`,
                )
              : notice('error', `Verification: ${v.status}. ${v.problems.join(' ')}`),
          );
        } catch (err) {
          replace(result, notice('error', `Could not verify: ${(err as Error).message}`));
        } finally {
          verify.disabled = false;
        }
      },
    },
    'Verify',
  );
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'integrity-h' },
    h('h2', { id: 'integrity-h' }, 'Integrity'),
    h('label', { for: 'sha256' }, 'SHA-256 (computed by the archive when it received the bytes)'),
    h(
      'div',
      { class: 'hash-row' },
      hash,
      h(
        'button',
        { type: 'button', class: 'secondary', onclick: () => void copyText(item.sha256, hash) },
        'Copy',
      ),
    ),
    last,
    verify,
    result,
  );
}

function links(item: Item, page: Page): HTMLElement {
  const status = h('div', { 'aria-live': 'polite' });
  const remove = (type: 'orders' | 'complaints', ref: string) =>
    h(
      'button',
      {
        type: 'button',
        class: 'link-remove secondary small',
        'aria-label': `Remove link to ${type === 'orders' ? 'order' : 'complaint'} ${ref}`,
        onclick: async () => {
          try {
            await api('DELETE', `/v1/evidence/${enc(item.id)}/links/${type}/${enc(ref)}`);
            page.reload();
          } catch (err) {
            replace(status, notice('error', (err as Error).message));
          }
        },
      },
      'Remove',
    );
  const type = h(
    'select',
    { id: 'link-type' },
    h('option', { value: 'order' }, 'Order'),
    h('option', { value: 'complaint' }, 'Complaint'),
  );
  const ref = h('input', { id: 'link-ref', required: true, autocomplete: 'off' });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'links-h' },
    h('h2', { id: 'links-h' }, 'Linked to'),
    h(
      'ul',
      { class: 'links' },
      ...item.orderIds.map((o) =>
        h(
          'li',
          {},
          'Order ',
          h('a', { href: `#/search?q=${enc(o)}` }, o),
          ' ',
          remove('orders', o),
        ),
      ),
      ...item.complaintIds.map((c) =>
        h(
          'li',
          {},
          'Complaint ',
          h('a', { href: `#/complaints/${enc(c)}` }, c),
          ' ',
          remove('complaints', c),
        ),
      ),
    ),
    item.orderIds.length + item.complaintIds.length === 0 &&
      h('p', { class: 'help' }, 'Not linked to anything.'),
    h(
      'form',
      {
        class: 'inline-form',
        onsubmit: async (e: Event) => {
          e.preventDefault();
          const value = ref.value.trim();
          if (!value) return;
          try {
            await api('POST', `/v1/evidence/${enc(item.id)}/links`, {
              [type.value === 'order' ? 'orderIds' : 'complaintIds']: [value],
            });
            page.reload();
          } catch (err) {
            replace(status, notice('error', err instanceof ApiError ? err.message : String(err)));
          }
        },
      },
      h('label', { for: 'link-type' }, 'Link type'),
      type,
      h('label', { for: 'link-ref' }, 'Id'),
      ref,
      h('button', { type: 'submit' }, 'Add link'),
    ),
    status,
  );
}

function custody(events: AuditEvent[]): HTMLElement {
  return h(
    'section',
    { class: 'card custody', 'aria-labelledby': 'custody-h' },
    h('h2', { id: 'custody-h' }, 'Custody history'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, 'Every action on this item, oldest first'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['When', 'Action', 'Outcome', 'Who', 'From'].map((c) =>
              h('th', { scope: 'col' }, c),
            ),
          ),
        ),
        h(
          'tbody',
          {},
          ...events.map((e) =>
            h(
              'tr',
              { class: `outcome-${e.outcome}` },
              h('td', {}, formatTime(e.occurredAt)),
              h('td', {}, e.action),
              h('td', {}, e.outcome),
              h(
                'td',
                {},
                e.actor.name ? `${e.actor.name} (${e.actor.role})` : (e.actor.role ?? '—'),
              ),
              h('td', {}, e.clientIp ?? '—'),
            ),
          ),
        ),
      ),
    ),
  );
}
