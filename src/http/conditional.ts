/**
 * Conditional requests (RFC 9110 §13) for representations we serve: If-Match, If-Unmodified-Since,
 * If-None-Match, If-Modified-Since and If-Range, evaluated in the order of §13.2.2.
 */

/** What a representation offers to compare against: a strong ETag, and maybe a date. */
export interface Validators {
  /** A strong entity tag, quoted: `"…"`. */
  etag: string;
  /** When the representation last changed; absent, the date preconditions are ignored. */
  lastModified?: Date;
}

export type Precondition =
  /** 412: If-Match or If-Unmodified-Since failed. */
  | { kind: 'failed'; header: 'If-Match' | 'If-Unmodified-Since' }
  /** 304: If-None-Match or If-Modified-Since say the client's copy is current. */
  | { kind: 'not_modified' }
  /** Serve; `honourRange` is false when If-Range says the client's part is of another version. */
  | { kind: 'proceed'; honourRange: boolean };

interface EntityTag {
  weak: boolean;
  /** The opaque tag with its quotes. */
  tag: string;
}

/**
 * The entity tags of an If-Match/If-None-Match list, `'*'`, or undefined when the value is not a
 * valid list (then it matches nothing). A tag may contain commas, so the list is tokenised, not
 * split.
 */
export function parseEntityTags(value: string): EntityTag[] | '*' | undefined {
  const trimmed = value.trim();
  if (trimmed === '*') return '*';
  const tags: EntityTag[] = [];
  // #entity-tag: empty elements between commas are allowed (RFC 9110 §5.6.1.2).
  const element = /^(?:(W\/)?("[\x21\x23-\x7e\x80-\xff]*"))?\s*(?:,\s*|$)/;
  let rest = trimmed;
  while (rest.length > 0) {
    const m = element.exec(rest);
    if (!m || m[0] === '') return undefined;
    if (m[2]) tags.push({ weak: Boolean(m[1]), tag: m[2] });
    rest = rest.slice(m[0].length);
  }
  return tags.length > 0 ? tags : undefined;
}

/** If-Match: strong comparison, a weak tag never matches (RFC 9110 §13.1.1). */
export function ifMatch(header: string, etag: string): boolean {
  const tags = parseEntityTags(header);
  if (tags === '*') return true;
  return tags?.some((t) => !t.weak && t.tag === etag) ?? false;
}

/** If-None-Match: weak comparison, `W/` is ignored (RFC 9110 §13.1.2). */
export function ifNoneMatchMatches(header: string, etag: string): boolean {
  const tags = parseEntityTags(header);
  if (tags === '*') return true;
  return tags?.some((t) => t.tag === etag) ?? false;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * An HTTP-date (RFC 9110 §5.6.7) in any of its three forms, or undefined: anything else (a
 * date a JavaScript parser would guess at) is not a valid date here.
 */
export function parseHttpDate(value: string): Date | undefined {
  const v = value.trim();
  let d: string, mon: string, y: string, t: string;
  let m =
    /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}:\d{2}:\d{2}) GMT$/.exec(
      v,
    );
  if (m) [, d, mon, y, t] = m as unknown as string[] as [string, string, string, string, string];
  else if (
    (m =
      /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}:\d{2}:\d{2}) GMT$/.exec(
        v,
      ))
  ) {
    [, d, mon, y, t] = m as unknown as [string, string, string, string, string];
    // Two-digit years: the century is the one that puts it at most 50 years ahead (§5.6.7).
    const now = new Date().getUTCFullYear();
    let full = Math.floor(now / 100) * 100 + Number(y);
    if (full > now + 50) full -= 100;
    y = String(full);
  } else if (
    (m =
      /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}:\d{2}:\d{2}) (\d{4})$/.exec(
        v,
      ))
  ) {
    [, mon, d, t, y] = m as unknown as [string, string, string, string, string];
  } else return undefined;
  const month = MONTHS.indexOf(mon);
  const [hh, mm, ss] = t.split(':').map(Number) as [number, number, number];
  const day = Number(d.trim());
  if (month < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return undefined;
  const at = new Date(Date.UTC(Number(y), month, day, hh, mm, Math.min(ss, 59)));
  return at.getUTCDate() === day ? at : undefined; // 31 Feb is not a date
}

/** Whole seconds: HTTP dates carry no more, so comparisons are made at that precision. */
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

/**
 * Evaluates the request's preconditions against the representation (RFC 9110 §13.2.2), for GET
 * and HEAD. `range` is whether the request has a Range header: If-Range only matters then.
 */
export function evaluatePreconditions(
  get: (name: string) => string | undefined,
  v: Validators,
  now: Date = new Date(),
): Precondition {
  const match = get('if-match');
  if (match !== undefined) {
    if (!ifMatch(match, v.etag)) return { kind: 'failed', header: 'If-Match' };
  } else {
    const since = get('if-unmodified-since');
    const date = since === undefined ? undefined : parseHttpDate(since);
    if (date && v.lastModified && seconds(v.lastModified) > seconds(date)) {
      return { kind: 'failed', header: 'If-Unmodified-Since' };
    }
  }
  const noneMatch = get('if-none-match');
  if (noneMatch !== undefined) {
    if (ifNoneMatchMatches(noneMatch, v.etag)) return { kind: 'not_modified' };
  } else {
    const since = get('if-modified-since');
    const date = since === undefined ? undefined : parseHttpDate(since);
    // A date in the future is not a valid If-Modified-Since (§13.1.3): it is ignored.
    if (
      date &&
      v.lastModified &&
      seconds(date) <= seconds(now) &&
      seconds(v.lastModified) <= seconds(date)
    ) {
      return { kind: 'not_modified' };
    }
  }
  if (get('range') === undefined) return { kind: 'proceed', honourRange: false };
  const ifRange = get('if-range');
  return { kind: 'proceed', honourRange: ifRange === undefined || ifRangeHolds(ifRange, v, now) };
}

/**
 * If-Range (RFC 9110 §13.1.5): an entity tag must match strongly (a weak one never does); a date
 * must be exactly our Last-Modified, and that must be a strong validator, i.e. at least a second
 * before now (§8.8.2.2). Anything else, garbage included, means "send the whole".
 */
function ifRangeHolds(value: string, v: Validators, now: Date): boolean {
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith('W/')) return trimmed === v.etag;
  const date = parseHttpDate(trimmed);
  if (!date || !v.lastModified) return false;
  return seconds(date) === seconds(v.lastModified) && seconds(now) - seconds(v.lastModified) >= 1;
}

/** The Last-Modified value for a date: IMF-fixdate, whole seconds. */
export function httpDate(d: Date): string {
  return new Date(seconds(d) * 1000).toUTCString();
}
