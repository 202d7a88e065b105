import { createHmac, timingSafeEqual } from 'node:crypto';
import { parse as parseQuery, stringify as stringifyQuery } from 'node:querystring';

/**
 * Twilio's request signature, checked exactly as the official helper library checks it
 * (`twilio` 6.x, lib/webhooks/webhooks.js: validateRequest, getExpectedTwilioSignature,
 * getSignatureAlgorithm), without depending on that package at run time. The tests sign with the
 * library itself, so any drift from it fails them.
 *
 * The signed string is the URL Twilio called followed by each POST parameter's name and value,
 * names sorted; a repeated parameter contributes each distinct value once, sorted. HMAC-SHA1 with
 * the auth token, or, when a Webhook Rule signs with a SharedKey (the request then carries
 * `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256`), with that key's
 * secret and the algorithm named; base64.
 * https://www.twilio.com/docs/usage/webhooks/webhooks-security
 * https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys
 */

export const HMAC_SHA1 = 'HMAC_SHA1';
export const HMAC_SHA256 = 'HMAC_SHA256';

export type TwilioParams = Record<string, string | string[]>;

/** The algorithm named in X-Twilio-Webhooks-Signature-Settings; none (or no header) is SHA-1. */
export function signatureAlgorithm(settingsHeader: string | undefined): string {
  for (const part of (settingsHeader ?? '').split(',')) {
    const separator = part.indexOf('=');
    if (separator !== -1 && part.slice(0, separator).trim() === 'algorithm') {
      const algorithm = part.slice(separator + 1).trim();
      if (algorithm) return algorithm;
    }
  }
  return HMAC_SHA1;
}

function hashName(algorithm: string): 'sha1' | 'sha256' | null {
  const a = algorithm.toUpperCase();
  if (!algorithm || a === HMAC_SHA1) return 'sha1';
  if (a === HMAC_SHA256) return 'sha256';
  return null;
}

function paramsData(params: TwilioParams): string {
  return Object.keys(params)
    .sort()
    .map((name) => {
      const value = params[name]!;
      // The library de-duplicates a repeated parameter's values before sorting them.
      const values = Array.isArray(value) ? [...new Set(value)].sort() : [value];
      return values.map((v) => name + v).join('');
    })
    .join('');
}

/** The signature Twilio sends for `url` and `params`; throws for an algorithm Twilio lacks. */
export function twilioSignature(
  secret: string,
  url: string,
  params: TwilioParams,
  algorithm: string = HMAC_SHA1,
): string {
  const hash = hashName(algorithm);
  if (!hash) throw new Error(`Unsupported webhook signature algorithm: ${algorithm}`);
  return createHmac(hash, secret)
    .update(Buffer.from(url + paramsData(params), 'utf-8'))
    .digest('base64');
}

/** The URL split without normalising it, so its path and query keep the characters signed. */
function splitUrl(url: string) {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)/i.exec(url);
  if (!match) return null;
  const [prefix, scheme, authority] = match as unknown as [string, string, string];
  const userInfoEnd = authority.lastIndexOf('@');
  const hostAndPort = authority.slice(userInfoEnd + 1);
  // A colon starts the port only after an IPv6 literal's closing bracket.
  const portStart = hostAndPort.indexOf(':', hostAndPort.lastIndexOf(']') + 1);
  return {
    scheme,
    userInfo: authority.slice(0, userInfoEnd + 1),
    host: portStart === -1 ? hostAndPort : hostAndPort.slice(0, portStart),
    port: portStart === -1 ? '' : hostAndPort.slice(portStart),
    rest: url.slice(prefix.length),
  };
}

function withDefaultPort(url: string): string {
  const p = splitUrl(url);
  if (!p || p.port) return url;
  const port = p.scheme.toLowerCase() === 'https://' ? ':443' : ':80';
  return p.scheme + p.userInfo + p.host + port + p.rest;
}

function withoutPort(url: string): string {
  const p = splitUrl(url);
  return p ? p.scheme + p.userInfo + p.host + p.rest : url;
}

/** The query re-encoded as Node's legacy querystring does (back ends that signed `%27` for `'`). */
function withLegacyQuery(url: string): string {
  const start = url.indexOf('?');
  if (start === -1 || start === url.length - 1) return url;
  return `${url.slice(0, start)}?${stringifyQuery(parseQuery(url.slice(start + 1)))}`;
}

/** Compared in constant time; the length of an expected signature is no secret. */
function sameSignature(given: Buffer, expected: string): boolean {
  const e = Buffer.from(expected);
  return given.length === e.length && timingSafeEqual(given, e);
}

/**
 * Whether `signature` is Twilio's for this request, tried on the URL as received with and without
 * its default port (`https://host` and `https://host:443` sign differently and Twilio uses the one
 * configured), then on the URL as `new URL()` normalises it, also with its query re-encoded.
 */
export function validTwilioSignature(
  secret: string,
  signature: string | undefined,
  url: string,
  params: TwilioParams,
  algorithm: string = HMAC_SHA1,
): boolean {
  if (!hashName(algorithm)) return false;
  const given = Buffer.from(signature ?? '');
  const matches = (candidate: string) =>
    sameSignature(given, twilioSignature(secret, candidate, params, algorithm));
  if ([withoutPort(url), withDefaultPort(url)].some(matches)) return true;
  let normalized: string;
  try {
    normalized = new URL(url).toString();
  } catch {
    return false; // (the library throws here; a URL that does not parse was signed by no one)
  }
  const bare = withoutPort(normalized);
  const ported = withDefaultPort(normalized);
  return [bare, ported, withLegacyQuery(bare), withLegacyQuery(ported)].some(matches);
}
