import { api, enc } from '../api';
import { formatTime, h, notice, replace } from '../dom';
import type { Page } from '../page';
import type { MeWithSessions, SessionView } from '../types';

/** The person's open sessions (GET /v1/me): where they are signed in, and ending any of them. */
export async function renderSessions(page: Page): Promise<void> {
  const status = h('div', { id: 'session-result', 'aria-live': 'polite' });
  const list = h('section', { class: 'card', 'aria-labelledby': 'sessions-h' });
  const refresh = async () => {
    const { sessions } = await api<MeWithSessions>('GET', '/v1/me');
    replace(
      list,
      h('h2', { id: 'sessions-h' }, 'Signed in'),
      h(
        'p',
        { class: 'help' },
        'Each browser signed in with your key. A session ends when you sign out there, after a while without use, at its end time, or when you end it here.',
      ),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'keys' },
          h('caption', { class: 'visually-hidden' }, 'Your sessions, oldest first'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['Signed in', 'Last used', 'Ends', 'Browser', 'Address', ''].map((x) =>
                h('th', { scope: 'col' }, x),
              ),
            ),
          ),
          h('tbody', {}, ...sessions.map((s) => row(s))),
        ),
      ),
    );
  };
  const row = (s: SessionView) =>
    h(
      'tr',
      { 'data-session': s.id },
      h('td', {}, formatTime(s.createdAt)),
      h('td', {}, formatTime(s.lastUsedAt)),
      h('td', {}, formatTime(s.expiresAt)),
      h('td', {}, s.userAgent ?? '—'),
      h('td', {}, s.clientIp ?? '—'),
      h(
        'td',
        {},
        s.current
          ? h('span', { class: 'help' }, 'this browser')
          : h(
              'button',
              {
                type: 'button',
                class: 'secondary small',
                'aria-label': `End session ${s.id}`,
                onclick: async () => {
                  try {
                    await api('DELETE', `/v1/me/sessions/${enc(s.id)}`);
                    replace(status, notice('ok', 'Session ended.'));
                    await refresh();
                  } catch (err) {
                    replace(status, notice('error', (err as Error).message));
                  }
                },
              },
              'End',
            ),
      ),
    );
  await refresh();
  replace(page.view, page.heading('Your sessions'), list, status);
}
