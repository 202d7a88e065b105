import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';

/** Why a fetch was refused or failed; `retryable` when the provider may simply not be ready yet. */
export class FetchError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'FetchError';
  }
}

export interface FetchPolicy {
  /** Host names media may come from: exact names, or `*.example.com` for its subdomains. */
  allowHosts: string[];
  /** Loopback and private addresses are refused unless this is set (tests only). */
  allowPrivate: boolean;
  /** Plain http is refused unless private addresses are allowed (a local test provider). */
  timeoutMs: number;
  maxBytes: number;
  /** Sent to the first host only; never to a host a redirect leads to. */
  basicAuth?: { username: string; password: string };
}

export interface FetchedMedia {
  body: Readable;
}

const MAX_REDIRECTS = 3;

/** Addresses no webhook may make us fetch from: loopback, private, link-local, metadata, ... */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
// (No ::ffff:0:0/96 rule: BlockList matches IPv4 addresses against it, so every IPv4 address
// would count as private; mapped addresses are unwrapped in isPrivateAddress instead.)
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['::', 96], // IPv4-compatible
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 32], // Teredo
  ['2002::', 16], // 6to4
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

export function isPrivateAddress(raw: string): boolean {
  // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(raw);
  const address = mapped ? mapped[1]! : raw;
  const family = isIP(address);
  if (family === 0) return true;
  return PRIVATE.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

export function hostAllowed(host: string, allow: string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return allow.some((rule) => {
    const r = rule.toLowerCase();
    return r.startsWith('*.') ? h.endsWith(r.slice(1)) && h.length > r.length - 1 : h === r;
  });
}

/**
 * Fetches media a provider's webhook points at, and nothing else: only allow-listed hosts, only
 * https (http only where private addresses are allowed, for a local test provider), never a
 * loopback, private or link-local address (checked on the address actually connected to, so DNS
 * rebinding cannot slip one in), a few redirects re-checked hop by hop, credentials only to the
 * first host, a deadline, and a size ceiling.
 */
export class MediaFetcher {
  async fetch(url: string, policy: FetchPolicy): Promise<FetchedMedia> {
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const res = await this.request(current, policy, hop === 0);
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        current = new URL(res.headers.location, current).toString();
        continue;
      }
      if (status === 200) {
        const length = Number(res.headers['content-length']);
        if (Number.isFinite(length) && length > policy.maxBytes) {
          res.destroy();
          throw new FetchError(
            `the media is ${length} bytes, above the limit of ${policy.maxBytes}`,
            false,
          );
        }
        return { body: res };
      }
      res.resume();
      // Providers answer 404 while a recording is still being processed: worth another try.
      const retryable = status === 404 || status === 408 || status === 429 || status >= 500;
      throw new FetchError(`the media URL answered ${status}`, retryable);
    }
    throw new FetchError(`more than ${MAX_REDIRECTS} redirects`, false);
  }

  private request(raw: string, policy: FetchPolicy, first: boolean): Promise<http.IncomingMessage> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return Promise.reject(new FetchError('the media URL is not a URL', false));
    }
    const plainAllowed = policy.allowPrivate && url.protocol === 'http:';
    if (url.protocol !== 'https:' && !plainAllowed) {
      return Promise.reject(
        new FetchError(`refusing ${url.protocol} media URLs (https only)`, false),
      );
    }
    // Media is served on https's port; any other port is a service this host was not meant to reach.
    if (!plainAllowed && url.port !== '' && url.port !== '443') {
      return Promise.reject(new FetchError(`refusing port ${url.port} (https on 443 only)`, false));
    }
    if (url.username || url.password) {
      return Promise.reject(new FetchError('refusing credentials inside the media URL', false));
    }
    if (!hostAllowed(url.hostname, policy.allowHosts)) {
      return Promise.reject(
        new FetchError(`the media host ${url.hostname} is not in the allow-list`, false),
      );
    }
    const lookup: LookupFunction = (hostname, options, callback) => {
      dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
        if (err) return callback(err, '', 0);
        const usable = addresses.filter((a) => policy.allowPrivate || !isPrivateAddress(a.address));
        if (usable.length === 0) {
          return callback(
            Object.assign(new Error(`${hostname} resolves only to private addresses`), {
              code: 'EPRIVATE',
            }),
            '',
            0,
          );
        }
        if ((options as { all?: boolean }).all) {
          return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
        }
        callback(null, usable[0]!.address, usable[0]!.family);
      });
    };
    const headers: Record<string, string> = { 'User-Agent': 'evidence-archive media fetcher' };
    if (first && policy.basicAuth) {
      const { username, password } = policy.basicAuth;
      headers.Authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    }
    // A literal IP in the URL skips lookup: check it here.
    if (isIP(url.hostname.replace(/^\[|\]$/g, '')) && !policy.allowPrivate) {
      if (isPrivateAddress(url.hostname.replace(/^\[|\]$/g, ''))) {
        return Promise.reject(new FetchError('refusing a private address', false));
      }
    }
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = client.get(url, { headers, lookup, timeout: policy.timeoutMs }, resolve);
      req.on('timeout', () =>
        req.destroy(new FetchError('the media server did not answer in time', true)),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof FetchError) return reject(err);
        if (err.code === 'EPRIVATE') return reject(new FetchError(err.message, false));
        reject(
          new FetchError(`could not reach the media server (${err.code ?? err.message})`, true),
        );
      });
    });
  }
}
