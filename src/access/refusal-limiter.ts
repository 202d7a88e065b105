import { isIP } from 'node:net';
import type { AuditLog } from '../custody/audit.service';
import type { Logger } from '../logger';

export interface RefusalLimits {
  /** Refusals per client address and minute that are answered (and recorded) one by one. */
  perMinute: number;
  /** Addresses tallied per minute; beyond them, all further addresses share one tally. */
  maxAddresses: number;
  /**
   * Refusals recorded one by one per minute across all addresses (this instance). Past it, a
   * refusal is still answered as usual (or 429 past its address's limit) but only counted.
   */
  globalPerMinute: number;
}

/** What was refused: the audited action (if the route has one), the status and code. */
export interface Refusal {
  action?: string;
  status: number;
  code: string;
  path: string;
  /** A real share link that was tried (revoked, expired): worth naming in the count. */
  shareLinkId?: string;
}

export interface RefusalVerdict {
  /** Over the limit: answer 429 with Retry-After, and record nothing one by one. */
  limited: boolean;
  /**
   * Whether the refusal may be recorded one by one: false when limited, or when the minute's
   * global budget is spent (then it is answered as usual but only counted in its tally).
   */
  record: boolean;
  retryAfterSeconds: number;
}

interface Tally {
  address: string | null;
  count: number;
  rateLimited: number;
  /** Answered as usual, but only counted: the minute's global budget was spent. */
  overBudget: number;
  byRefusal: Map<string, number>;
  firstAt: number;
  lastAt: number;
  /** Small samples (arrays: a Set costs more than the few strings it would hold). */
  paths: string[];
  shareLinkIds: string[];
}

const MINUTE = 60_000;
/**
 * Bounded samples per tally: enough for an auditor to see what was tried, small enough that a
 * full table stays small (about 1.5 KB per tally at most: bench/refusal-limiter-memory.ts).
 */
const MAX_PATHS = 3;
const MAX_PATH_CHARS = 100;
const MAX_SHARE_LINKS = 5;
/** Kinds of refusal per tally (action x status x code: a handful in practice). */
const MAX_KINDS = 8;
/** Kinds of refusal interned across tallies (routes x statuses x codes: far fewer in practice). */
const MAX_SHARED_KINDS = 1_000;
/** A client key longer than this (not an IP address) is cut: it is only a map key. */
const MAX_CLIENT_CHARS = 64;
const OVERFLOW = '\0overflow';

export interface RefusalLimiterDeps {
  audit: AuditLog;
  logger: Logger;
  limits: RefusalLimits;
  now?: () => number;
}

/**
 * Limits what strangers (requests without a valid key, share-link misses) can cost: per client
 * address and clock minute, the first `perMinute` refusals are answered and recorded one by one as
 * before; past that they are answered 429 with Retry-After, and counted. When the minute ends, an
 * address whose refusals were not all recorded one by one gets one chained `access.refusals` event
 * with the counts, so the trail grows by at most `perMinute + 1` events per address and minute
 * however fast anyone knocks. Valid keys are never refused here: only refusals are counted.
 *
 * Across all addresses, at most `globalPerMinute` refusals a minute are recorded one by one; past
 * that budget a refusal is still answered as usual (401, 404, 410; 429 past its address's limit)
 * but only counted in its tally. So the chained events strangers cause per minute and instance
 * are at most `globalPerMinute` plus one aggregate event per tally, and tallies are at most
 * `maxAddresses + 1` (the overflow tally).
 *
 * Memory is one minute of tallies for at most `maxAddresses` addresses (plus one shared overflow
 * tally): an attacker cycling addresses fills the table, then shares one limit with its overflow.
 * An IPv6 client is its /64 (one subscriber's or host's prefix), so cycling through it gains nothing.
 * Counts live in memory until their minute is sealed (every few seconds, and on close): a crash
 * loses at most the current minute's counts, never a refusal recorded one by one.
 */
export class RefusalLimiter {
  private window = -1;
  private tallies = new Map<string, Tally>();
  /** Refusals recorded one by one this minute, across all addresses. */
  private recorded = 0;
  private readonly kinds = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private sealing: Promise<void> = Promise.resolve();

  private readonly audit: AuditLog;
  private readonly logger: Logger;
  private readonly limits: RefusalLimits;
  private readonly now: () => number;

  constructor(deps: RefusalLimiterDeps) {
    this.audit = deps.audit;
    this.logger = deps.logger;
    this.limits = deps.limits;
    this.now = deps.now ?? Date.now;
  }

  /** Seals ended minutes in the background. */
  start(): void {
    this.timer ??= setInterval(() => void this.sealEnded(), 5_000).unref();
  }

  /** Counts one refusal of a request from `address`. */
  refuse(address: string | undefined, refusal: Refusal): RefusalVerdict {
    const now = this.now();
    this.rollOver(now);
    const tally = this.tallyFor(clientOf(address), now);
    tally.count += 1;
    tally.lastAt = now;
    let kind = this.kindOf(refusal);
    if (!tally.byRefusal.has(kind) && tally.byRefusal.size >= MAX_KINDS) kind = 'other';
    tally.byRefusal.set(kind, (tally.byRefusal.get(kind) ?? 0) + 1);
    sample(tally.paths, refusal.path, MAX_PATHS, MAX_PATH_CHARS);
    if (refusal.shareLinkId) {
      sample(tally.shareLinkIds, refusal.shareLinkId, MAX_SHARE_LINKS, MAX_CLIENT_CHARS);
    }
    const retryAfterSeconds = Math.max(1, Math.ceil(((this.window + 1) * MINUTE - now) / 1000));
    if (tally.count > this.limits.perMinute) {
      tally.rateLimited += 1;
      return { limited: true, record: false, retryAfterSeconds };
    }
    // Only a refusal at an audited route (one with an action) becomes an event of its own.
    if (refusal.action !== undefined) {
      if (this.recorded >= this.limits.globalPerMinute) {
        tally.overBudget += 1;
        return { limited: false, record: false, retryAfterSeconds };
      }
      this.recorded += 1;
    }
    return { limited: false, record: true, retryAfterSeconds };
  }

  /** One string per kind of refusal, shared by all tallies (a bounded set; beyond it, "other"). */
  private kindOf(refusal: Refusal): string {
    const kind = `${refusal.action ?? '-'} ${refusal.status} ${refusal.code}`.slice(0, 200);
    let shared = this.kinds.get(kind);
    if (shared === undefined) {
      if (this.kinds.size >= MAX_SHARED_KINDS) return 'other';
      shared = copyOf(kind);
      this.kinds.set(shared, shared);
    }
    return shared;
  }

  /** How many addresses the current minute tallies (the overflow tally included). */
  get trackedAddresses(): number {
    return this.tallies.size;
  }

  /** Seals the minutes that have ended. */
  async sealEnded(): Promise<void> {
    this.rollOver(this.now());
    await this.sealing;
  }

  /** Seals every tally, the current minute's too (at shutdown), and stops the timer. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.seal(this.window, this.tallies, true);
    this.tallies = new Map();
    await this.sealing;
  }

  private rollOver(now: number): void {
    const window = Math.floor(now / MINUTE);
    if (window === this.window) return;
    if (this.tallies.size > 0) this.seal(this.window, this.tallies, false);
    this.window = window;
    this.tallies = new Map();
    this.recorded = 0;
  }

  private tallyFor(address: string, now: number): Tally {
    let key = address;
    if (!this.tallies.has(key) && this.tallies.size >= this.limits.maxAddresses) key = OVERFLOW;
    let tally = this.tallies.get(key);
    if (!tally) {
      if (key !== OVERFLOW) key = copyOf(address); // never a slice of a forwarded header
      tally = {
        address: key === OVERFLOW ? null : key,
        count: 0,
        rateLimited: 0,
        overBudget: 0,
        byRefusal: new Map(),
        firstAt: now,
        lastAt: now,
        paths: [],
        shareLinkIds: [],
      };
      this.tallies.set(key, tally);
    }
    return tally;
  }

  /** One chained event per tally with refusals that were not recorded one by one. */
  private seal(window: number, tallies: Map<string, Tally>, early: boolean): void {
    const from = new Date(window * MINUTE).toISOString();
    const to = new Date((window + 1) * MINUTE).toISOString();
    const entries = [...tallies.values()]
      .filter((t) => t.rateLimited + t.overBudget > 0)
      .map((t) => ({
        action: 'access.refusals' as const,
        outcome: 'denied' as const,
        actor: {
          keyId: null,
          role: 'anonymous',
          name: 'unauthenticated',
          ...(t.address === null ? {} : { clientIp: t.address }),
        },
        details: {
          window: { from, to },
          count: t.count,
          recordedIndividually: t.count - t.rateLimited - t.overBudget,
          rateLimited: t.rateLimited,
          // Answered as usual but not recorded one by one: the instance's budget was spent.
          ...(t.overBudget > 0 ? { overGlobalBudget: t.overBudget } : {}),
          byRefusal: Object.fromEntries(t.byRefusal),
          firstAt: new Date(t.firstAt).toISOString(),
          lastAt: new Date(t.lastAt).toISOString(),
          paths: t.paths,
          ...(t.shareLinkIds.length > 0 ? { shareLinkIds: t.shareLinkIds } : {}),
          ...(t.address === null ? { overflow: true } : {}),
          // Sealed before its minute ended (a shutdown): a restart may count the rest separately.
          ...(early ? { sealedEarly: true } : {}),
        },
      }));
    if (entries.length === 0) return;
    this.sealing = this.sealing.then(() =>
      Promise.all(entries.map((e) => this.audit.record(e))).then(
        () => undefined,
        (err: unknown) =>
          this.logger.error({ err, window: from }, 'could not record refusal counts'),
      ),
    );
  }
}

/** Adds `value` (cut to `chars`) to a sample of at most `max` distinct strings. */
function sample(into: string[], value: string, max: number, chars: number): void {
  if (into.length >= max) return;
  const cut = value.slice(0, chars);
  if (!into.includes(cut)) into.push(copyOf(cut));
}

/**
 * A string of its own: a slice of a long string (a request's whole path) would otherwise keep
 * that whole string in memory for as long as the tally holds the slice.
 */
function copyOf(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/**
 * The client a refusal counts against: an IPv4 address (IPv4-mapped IPv6 included) as it is, an
 * IPv6 address as its /64 prefix.
 */
export function clientOf(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped) return mapped[1]!;
  const bare = ip.split('%')[0]!; // no zone id
  if (isIP(bare) !== 6) return ip.slice(0, MAX_CLIENT_CHARS); // IPv4 (or not an address: a map key)
  const groups = (part: string) => (part ? part.split(':') : []);
  const [head = '', tail] = bare.split('::');
  const tailGroups = groups(tail ?? '').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const full =
    tail === undefined
      ? groups(head).flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]))
      : [
          ...groups(head),
          ...Array<string>(8 - groups(head).length - tailGroups.length).fill('0'),
          ...tailGroups,
        ];
  const prefix = full.slice(0, 4).map((g) => parseInt(g, 16).toString(16));
  return `${prefix.join(':')}::/64`;
}
