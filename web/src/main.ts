import { api, ApiError, session, whenUnauthorized, type Me, type SignedIn } from './api';
import { h, notice, replace } from './dom';
import { renderCustody, renderKeys } from './pages/admin';
import { renderComplaint } from './pages/complaint';
import { renderEvidence } from './pages/evidence';
import { renderSearch } from './pages/search';
import { renderSessions } from './pages/sessions';
import type { Page } from './page';

const main = document.getElementById('main')!;
const nav = document.getElementById('nav')!;
const who = document.getElementById('who')!;
let me: Me | undefined;

whenUnauthorized(() => {
  session.clear();
  me = undefined;
  void route();
});

document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// "/" jumps to the search box from anywhere but a text field.
document.addEventListener('keydown', (e) => {
  if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target as HTMLElement | null;
  if (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return;
  e.preventDefault();
  const box = document.getElementById('q') as HTMLInputElement | null;
  if (box) {
    box.focus();
    box.select();
  } else {
    location.hash = '#/search';
  }
});

window.addEventListener('hashchange', () => void route());

async function signIn(key: string): Promise<Me> {
  // Trades the key for a session (refusing device keys): its token for the Authorization header,
  // and the media elements' cookie. The key is not kept.
  const { session: opened, ...who } = await api<SignedIn>(
    'POST',
    '/v1/session',
    { key },
    { auth: false },
  );
  session.set(opened.token);
  return who;
}

async function signOut(): Promise<void> {
  // Ends the session on the server (the header's token, and the cookie's), then forgets it.
  await api('DELETE', '/v1/session').catch(() => undefined);
  session.clear();
  me = undefined;
  location.hash = '#/';
  await route();
}

function renderShell(): void {
  if (!me) {
    replace(nav);
    replace(who);
    return;
  }
  const isAdmin = me.permissions.includes('key:manage');
  const current = location.hash.split('?')[0] ?? '';
  const link = (href: string, label: string) =>
    h('a', { href, 'aria-current': current.startsWith(href) ? 'page' : null }, label);
  replace(
    nav,
    h(
      'ul',
      {},
      h('li', {}, link('#/search', 'Search')),
      h('li', {}, link('#/sessions', 'Sessions')),
      isAdmin && h('li', {}, link('#/admin/keys', 'Keys')),
      isAdmin && h('li', {}, link('#/admin/custody', 'Custody')),
    ),
  );
  replace(
    who,
    h(
      'span',
      { class: 'signed-in', 'data-testid': 'signed-in' },
      'Signed in as ',
      h('strong', {}, me.name),
      ` (${me.role})`,
    ),
    h('button', { type: 'button', class: 'secondary', onclick: () => void signOut() }, 'Sign out'),
  );
}

function renderSignIn(view: HTMLElement, message?: HTMLElement): void {
  document.title = 'Sign in · Evidence archive';
  const input = h('input', {
    id: 'key',
    name: 'key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'key-help',
  });
  const status = h('div', { class: 'form-status' }, message);
  const form = h(
    'form',
    {
      class: 'card signin',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        replace(status, notice('info', 'Signing in…'));
        try {
          me = await signIn(key);
          input.value = '';
          if (!location.hash || location.hash === '#/') location.hash = '#/search';
          else await route();
        } catch (err) {
          const msg =
            err instanceof ApiError && err.code === 'session_not_allowed'
              ? 'This is a device (ingest) key: it can upload evidence but not browse it. Sign in with your personal support or admin key.'
              : err instanceof ApiError && err.status === 401
                ? 'That key is not valid, or it was revoked.'
                : `Could not sign in: ${(err as Error).message}`;
          replace(status, notice('error', msg));
          input.focus();
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h(
      'p',
      { id: 'key-help', class: 'help' },
      'Use your personal support or admin key (eak_…). It is not kept: signing in opens a session for this browser tab, which ends when you sign out, after a while without use, or when the key is revoked.',
    ),
    h('label', { for: 'key' }, 'API key'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    status,
  );
  replace(view, form);
  input.focus();
}

let token = 0;

async function route(): Promise<void> {
  const mine = ++token;
  const view = h('div', { class: 'page' });
  main.replaceChildren(view);
  if (!me && session.token()) {
    try {
      me = await api<Me>('GET', '/v1/me');
    } catch {
      session.clear();
    }
  }
  if (mine !== token) return;
  renderShell();
  if (!me) return renderSignIn(view);

  const [path, query] = (location.hash.replace(/^#/, '') || '/search').split('?');
  const parts = (path ?? '').split('/').filter(Boolean).map(decodeURIComponent);
  const page: Page = {
    me,
    view,
    params: new URLSearchParams(query ?? ''),
    heading(title) {
      document.title = `${title} · Evidence archive`;
      return h('h1', { tabindex: -1 }, title);
    },
    go(hash) {
      location.hash = hash;
    },
    reload() {
      void route();
    },
  };
  try {
    if (parts.length === 0 || parts[0] === 'search') await renderSearch(page);
    else if (parts[0] === 'evidence' && parts[1]) await renderEvidence(page, parts[1]);
    else if (parts[0] === 'complaints' && parts[1]) await renderComplaint(page, parts[1]);
    else if (parts[0] === 'sessions') await renderSessions(page);
    else if (parts[0] === 'admin' && parts[1] === 'keys') await renderKeys(page);
    else if (parts[0] === 'admin' && parts[1] === 'custody') await renderCustody(page);
    else replace(view, page.heading('Not found'), notice('error', 'There is no such page.'));
  } catch (err) {
    if (mine !== token) return;
    view.append(
      notice(
        'error',
        err instanceof ApiError
          ? `${err.message} (${err.code})`
          : `Something went wrong: ${String(err)}`,
      ),
    );
  }
}

void route();
