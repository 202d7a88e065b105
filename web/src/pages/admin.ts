import { api, enc } from '../api';
import { copyText, facts, formatTime, h, notice, replace } from '../dom';
import type { Page } from '../page';
import type { KeyRow } from '../types';

function adminsOnly(page: Page, title: string): boolean {
  if (page.me.permissions.includes('key:manage')) return false;
  replace(page.view, page.heading(title), notice('error', 'This page is for admin keys only.'));
  return true;
}

export async function renderKeys(page: Page): Promise<void> {
  if (adminsOnly(page, 'API keys')) return;
  const { keys } = await api<{ keys: KeyRow[] }>('GET', '/v1/keys');
  const status = h('div', { id: 'key-result', 'aria-live': 'polite' });
  const name = h('input', { id: 'key-name', required: true, maxlength: 100, autocomplete: 'off' });
  // The server asks for the signed-in key again before a session mints a key (a stolen session
  // must not make itself a key that outlives it); it is sent once and never kept.
  const confirm = h('input', {
    id: 'confirm-key',
    type: 'password',
    required: true,
    maxlength: 200,
    autocomplete: 'off',
  });
  const role = h(
    'select',
    { id: 'key-role' },
    h('option', { value: 'support' }, 'support: a person who looks evidence up'),
    h('option', { value: 'ingest' }, 'ingest: a packing station or phone system'),
    h('option', { value: 'admin' }, 'admin: keys, holds, custody'),
  );
  const mint = h(
    'form',
    {
      class: 'card stack-form',
      'aria-labelledby': 'mint-h',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        try {
          const k = await api<{ id: string; key: string; role: string; name: string }>(
            'POST',
            '/v1/keys',
            {
              role: role.value,
              name: name.value.trim(),
              confirmKey: confirm.value.trim(),
            },
          );
          confirm.value = '';
          const field = h('input', {
            id: 'minted-key',
            readonly: true,
            value: k.key,
            class: 'hash',
            'aria-label': 'New key',
          });
          name.value = '';
          await refresh();
          replace(
            status,
            notice(
              'ok',
              `Key for ${k.name} (${k.role}) created. Copy it now: it is shown only this once and stored only as a hash.`,
            ),
            h(
              'div',
              { class: 'hash-row' },
              field,
              h(
                'button',
                { type: 'button', class: 'secondary', onclick: () => void copyText(k.key, field) },
                'Copy',
              ),
            ),
          );
        } catch (err) {
          replace(status, notice('error', (err as Error).message));
        }
      },
    },
    h('h2', { id: 'mint-h' }, 'Mint a key'),
    h('label', { for: 'key-name' }, 'Name (the person or device)'),
    name,
    h('label', { for: 'key-role' }, 'Role'),
    role,
    h('label', { for: 'confirm-key' }, 'Your own admin key, to confirm'),
    confirm,
    h('button', { type: 'submit' }, 'Mint key'),
    status,
  );
  const list = h('section', { class: 'card', 'aria-labelledby': 'keys-h' });
  const refresh = async (rows?: KeyRow[]) => {
    const all = rows ?? (await api<{ keys: KeyRow[] }>('GET', '/v1/keys')).keys;
    replace(
      list,
      h('h2', { id: 'keys-h' }, 'Keys'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'keys' },
          h('caption', { class: 'visually-hidden' }, 'API keys, oldest first'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['Name', 'Role', 'Id', 'Created', 'Last used', 'Status', ''].map((x) =>
                h('th', { scope: 'col' }, x),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            ...all.map((k) =>
              h(
                'tr',
                { 'data-key': k.id },
                h('td', {}, k.name),
                h('td', {}, k.role),
                h('td', {}, h('code', {}, k.id)),
                h('td', {}, formatTime(k.createdAt)),
                h('td', {}, k.lastUsedAt ? formatTime(k.lastUsedAt) : 'never'),
                h('td', {}, k.revokedAt ? `revoked ${formatTime(k.revokedAt)}` : 'active'),
                h(
                  'td',
                  {},
                  !k.revokedAt &&
                    (k.id === page.me.keyId
                      ? h('span', { class: 'help' }, 'your key')
                      : h(
                          'button',
                          {
                            type: 'button',
                            class: 'secondary small revoke-key',
                            'aria-label': `Revoke key ${k.name}`,
                            onclick: async () => {
                              try {
                                await api('DELETE', `/v1/keys/${enc(k.id)}`);
                                replace(status, notice('ok', `Key ${k.name} revoked.`));
                                await refresh();
                              } catch (err) {
                                replace(status, notice('error', (err as Error).message));
                              }
                            },
                          },
                          'Revoke',
                        )),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  };
  await refresh(keys);
  replace(page.view, page.heading('API keys'), h('div', { class: 'admin-grid' }, list, mint));
}

interface CustodyStatus {
  items: Record<string, number>;
  failingItems: { itemId: string; status: string; checkedAt: string; detail: unknown }[];
  auditChain: {
    headSeq: number;
    headHash: string;
    lastCheckpoint: { seq: number; hash: string; signedAt: string } | null;
    eventsSinceCheckpoint: number;
  };
  lastRuns: Record<
    string,
    {
      startedAt: string;
      finishedAt: string | null;
      outcome: string | null;
      stats: Record<string, unknown>;
    } | null
  >;
  settings: {
    retentionDays: Record<string, number>;
    retentionAfterCloseDays: number;
    retentionIntervalMinutes: number;
    scrubIntervalMinutes: number;
    scrubFullPassDays: number;
    checkpointIntervalMinutes: number;
    stagingGraceHours: number;
  };
}

const LABELS: Record<string, string> = {
  archived: 'Archived',
  deleted: 'Deleted',
  awaitingPurge: 'Awaiting purge',
  failingVerification: 'Failing verification',
  neverVerified: 'Never verified',
  activeLegalHolds: 'Active legal holds',
  damaged: 'Damaged (not served)',
};

export async function renderCustody(page: Page): Promise<void> {
  if (adminsOnly(page, 'Custody')) return;
  const s = await api<CustodyStatus>('GET', '/v1/custody/status');
  const status = h('div', { 'aria-live': 'polite' });
  const run = (job: 'scrub' | 'retention') =>
    h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        onclick: async () => {
          try {
            await api('POST', `/v1/custody/jobs/${job}`);
            replace(status, notice('ok', `A ${job} run is queued; reload in a moment to see it.`));
          } catch (err) {
            replace(status, notice('error', (err as Error).message));
          }
        },
      },
      `Run ${job} now`,
    );
  const runRow = (name: string, r: CustodyStatus['lastRuns'][string]) =>
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, name),
      h('td', {}, r ? formatTime(r.startedAt) : 'never'),
      h('td', {}, r ? formatTime(r.finishedAt) : '—'),
      h('td', { class: `outcome-${r?.outcome ?? 'none'}` }, r?.outcome ?? (r ? 'running' : '—')),
      h('td', {}, r ? h('code', { class: 'stats' }, JSON.stringify(r.stats)) : '—'),
    );
  const c = s.auditChain;
  replace(
    page.view,
    page.heading('Custody'),
    h(
      'div',
      { class: 'admin-grid' },
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'items-h' },
        h('h2', { id: 'items-h' }, 'Evidence'),
        facts(Object.entries(s.items).map(([k, v]) => [LABELS[k] ?? k, String(v)])),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'chain-h' },
        h('h2', { id: 'chain-h' }, 'Audit chain'),
        facts([
          ['Head', `event ${c.headSeq}`],
          ['Head hash', h('code', { class: 'hash-inline' }, c.headHash)],
          [
            'Last checkpoint',
            c.lastCheckpoint
              ? `event ${c.lastCheckpoint.seq}, signed ${formatTime(c.lastCheckpoint.signedAt)}`
              : 'none yet',
          ],
          ['Events since', String(c.eventsSinceCheckpoint)],
        ]),
      ),
      h(
        'section',
        { class: 'card wide', 'aria-labelledby': 'runs-h' },
        h('h2', { id: 'runs-h' }, 'Last runs'),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            {},
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ...['Job', 'Started', 'Finished', 'Outcome', 'Figures'].map((x) =>
                  h('th', { scope: 'col' }, x),
                ),
              ),
            ),
            h('tbody', {}, ...Object.entries(s.lastRuns).map(([k, r]) => runRow(k, r))),
          ),
        ),
        h('p', { class: 'actions' }, run('scrub'), ' ', run('retention')),
        status,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'failing-h' },
        h('h2', { id: 'failing-h' }, 'Failing items'),
        s.failingItems.length === 0
          ? h('p', { class: 'notice notice-ok' }, 'None: every checked item matched its hash.')
          : h(
              'ul',
              {},
              ...s.failingItems.map((f) =>
                h(
                  'li',
                  {},
                  h('a', { href: `#/evidence/${f.itemId}` }, f.itemId),
                  ` ${f.status}, ${formatTime(f.checkedAt)}`,
                ),
              ),
            ),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'settings-h' },
        h('h2', { id: 'settings-h' }, 'Retention and schedule'),
        facts([
          ...Object.entries(s.settings.retentionDays).map(([k, v]): [string, string] => [
            `Keep ${k.replace('_', ' ')}`,
            v === 0 ? 'forever' : `${v} days`,
          ]),
          ['After a complaint closes', `${s.settings.retentionAfterCloseDays} days`],
          ['Retention runs every', `${s.settings.retentionIntervalMinutes} min`],
          ['Scrub runs every', `${s.settings.scrubIntervalMinutes} min`],
          ['Full scrub pass', `${s.settings.scrubFullPassDays} days`],
          ['Checkpoint every', `${s.settings.checkpointIntervalMinutes} min`],
        ]),
      ),
    ),
  );
}
