import { Counter } from 'prom-client';
import type { Db } from '../db/database';
import type { Metrics } from '../metrics';
import type { WormRepository } from './worm.repository';

/**
 * Whether an object is under WORM protection, as read back from the store after writing it (never
 * assumed from the request): `in_force` (Object Lock retention of the configured mode, reaching at
 * least the configured retention when written, or the legal hold asked for, is on the object),
 * `not_in_force` (WORM is configured but the store did not apply it, or only a shorter retention,
 * even when asked explicitly), `expired` (the object was under retention, but its retain-until has
 * passed), `not_configured` (no S3 Object Lock configured, or a store without it).
 */
export type WormStatus = 'in_force' | 'not_in_force' | 'expired' | 'not_configured';

/**
 * A recorded status judged against now: a retention whose retain-until has passed is no longer in
 * force (what the item view and the metrics show until the scrub records it).
 */
export function wormStatusAt(
  status: WormStatus,
  retainUntil: Date | string | null,
  now = Date.now(),
): WormStatus {
  if (status !== 'in_force' || retainUntil === null) return status;
  return new Date(retainUntil).getTime() > now ? 'in_force' : 'expired';
}

/** How often /readyz re-checks a latched WORM problem's object itself, at most. */
export const WORM_RECHECK_EVERY_MS = 30_000;
/** How long /readyz waits for such a re-check (it goes on in the background after that). */
export const WORM_RECHECK_WAIT_MS = 2_000;

export interface WormState {
  status: WormStatus;
  /** The retention mode the store reports for the object, if any. */
  mode: 'GOVERNANCE' | 'COMPLIANCE' | null;
  retainUntil: Date | null;
}

export const WORM_NOT_CONFIGURED: WormState = {
  status: 'not_configured',
  mode: null,
  retainUntil: null,
};

/** What was checked: a promoted evidence blob, a custody record (checkpoint), a legal-hold flag. */
export type WormObject = 'evidence' | 'record' | 'legal_hold';

export interface WormProblem {
  object: WormObject;
  key: string;
  at: string;
}

/**
 * Re-checks a latched problem's object: its WORM status now (retention re-applied where missing,
 * as after a write; a legal hold read back).
 */
export type WormRechecker = (problem: { object: WormObject; key: string }) => Promise<WormStatus>;

/**
 * This instance's WORM read-backs: counted for the metrics, and the latest per kind of object for
 * /readyz. A store that stopped applying WORM makes the instance not ready until a check of that
 * kind succeeds: a later write, or /readyz itself re-checking the failing object (refresh), so a
 * one-off failure does not leave an instance (one without uploads or jobs) unready for ever.
 */
export class WormLedger {
  private readonly counts = new Map<string, number>();
  private readonly latest = new Map<WormObject, { status: WormStatus; key: string }>();
  private lastProblem: WormProblem | undefined;
  private counter: Counter<'object' | 'status'> | undefined;
  private rechecker: WormRechecker | undefined;
  private lastRecheck = 0;
  private recheck: Promise<void> | undefined;

  constructor(private readonly recheckEveryMs = WORM_RECHECK_EVERY_MS) {}

  observe(object: WormObject, key: string, status: WormStatus): void {
    const id = `${object}\u0000${status}`;
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    this.counter?.inc({ object, status });
    this.latest.set(object, { status, key });
    if (status === 'not_in_force') this.lastProblem = { object, key, at: new Date().toISOString() };
  }

  /** The store that re-checks a failing object (S3 with Object Lock). */
  setRechecker(rechecker: WormRechecker): void {
    this.rechecker = rechecker;
  }

  /**
   * While a kind of object is latched `not_in_force`, re-checks its failing object, at most every
   * recheckEveryMs (concurrent callers share one re-check) and waiting at most waitMs: the latch
   * clears when the object now shows WORM in force, and stays while the store still ignores it. A
   * write observed meanwhile wins over the re-check's answer.
   */
  async refresh(waitMs = WORM_RECHECK_WAIT_MS): Promise<void> {
    const failing = [...this.latest].filter(([, v]) => v.status === 'not_in_force');
    if (!this.rechecker || failing.length === 0) return;
    if (!this.recheck && Date.now() - this.lastRecheck >= this.recheckEveryMs) {
      this.lastRecheck = Date.now();
      const rechecker = this.rechecker;
      this.recheck = (async () => {
        for (const [object, seen] of failing) {
          const status = await rechecker({ object, key: seen.key }).catch(() => undefined);
          // Only an in-force answer clears; a failed re-check leaves the latch as it was.
          if (status === 'in_force' && this.latest.get(object) === seen)
            this.latest.set(object, { status, key: seen.key });
        }
      })().finally(() => {
        this.recheck = undefined;
      });
    }
    if (!this.recheck) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.recheck,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  /** `not_in_force` while the latest check of any kind of object found WORM not applied. */
  snapshot(): { status: WormStatus; lastProblem: WormProblem | null } {
    const all = [...this.latest.values()].map((v) => v.status);
    const status: WormStatus = all.includes('not_in_force')
      ? 'not_in_force'
      : all.includes('in_force')
        ? 'in_force'
        : 'not_configured';
    return { status, lastProblem: this.lastProblem ?? null };
  }

  registerMetrics(metrics: Metrics, db: Db, repo: WormRepository): void {
    this.counter = new Counter({
      name: 'evidence_worm_checks_total',
      help: 'WORM read-backs by this instance after writing an object, by object (evidence, record, legal_hold) and status (in_force, not_in_force, not_configured)',
      labelNames: ['object', 'status'] as const,
      registers: [metrics.registry],
    });
    for (const [id, n] of this.counts) {
      const [object, status] = id.split('\u0000');
      this.counter.inc({ object, status }, n);
    }
    metrics.gauge(
      'evidence_worm_items',
      'Archived evidence items by WORM status read back from the store, judged against now (expired: the retain-until has passed; unchecked: archived before WORM was verified)',
      ['status'],
      async (set) => {
        const rows = await repo.countByStatus(db);
        for (const s of ['in_force', 'not_in_force', 'expired', 'not_configured', 'unchecked'])
          set(0, { status: s });
        for (const r of rows) set(Number(r.n), { status: r.status ?? 'unchecked' });
      },
    );
  }
}

/** An item's worm_* columns for a read-back state. */
export function wormColumns(worm: WormState): {
  worm_status: WormStatus;
  worm_mode: WormState['mode'];
  worm_retain_until: Date | null;
} {
  return { worm_status: worm.status, worm_mode: worm.mode, worm_retain_until: worm.retainUntil };
}
