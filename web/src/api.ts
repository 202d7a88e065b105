/**
 * The JSON API, called with the session's token in the Authorization header. Signing in trades
 * the key for a session (POST /v1/session); the key itself is never kept.
 */

const TOKEN = 'evidence-archive.session';

export interface Me {
  keyId: string;
  name: string;
  role: 'ingest' | 'support' | 'admin';
  permissions: string[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What POST /v1/session answers: the key's holder and the session (its token for the header). */
export interface SignedIn extends Me {
  session: { id: string; token: string; createdAt: string; endsAt: string; idleMinutes: number };
}

/**
 * The session's token (`eas_...`, not the key) lives for this tab only (sessionStorage), never in
 * localStorage; the server ends it at sign-out, after its idle or absolute timeout, or when the
 * key is revoked.
 */
export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN),
  set: (token: string) => sessionStorage.setItem(TOKEN, token),
  clear: () => sessionStorage.removeItem(TOKEN),
};

let onUnauthorized: () => void = () => undefined;
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  opts: { auth?: boolean } = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = session.token();
  if (token && opts.auth !== false) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (res.status === 204) return undefined as T;
  const payload = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    const err = new ApiError(
      res.status,
      String(payload.code ?? 'error'),
      String(payload.detail ?? payload.title ?? `${res.status} ${res.statusText}`),
    );
    if (res.status === 401 && opts.auth !== false) onUnauthorized();
    throw err;
  }
  return payload as T;
}

export const qs = (params: Record<string, string | number | undefined | null>) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
};

export const enc = encodeURIComponent;
