import { Counter } from 'prom-client';
import type { Db } from '../db/database';
import type { Metrics } from '../metrics';

/**
 * Whether an object is under WORM protection, as read back from the store after writing it (never
 * assumed from the request): `in_force` (Object Lock retention, or the legal hold asked for, is on
 * the object), `not_in_force` (WORM is configured but the store did not apply it, even when asked
 * explicitly), `not_configured` (no S3 Object Lock configured, or a store without it).
 */
export type WormStatus = 'in_force' | 'not_in_force' | 'not_configured';

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
 * This instance's WORM read-backs: counted for the metrics, and the latest per kind of object for
 * /readyz. A store that stopped applying WORM makes the instance not ready until a check succeeds.
 */
export class WormLedger {
  private readonly counts = new Map<string, number>();
  private readonly latest = new Map<WormObject, WormStatus>();
  private lastProblem: WormProblem | undefined;
  private counter: Counter<'object' | 'status'> | undefined;

  observe(object: WormObject, key: string, status: WormStatus): void {
    const id = `${object}\u0000${status}`;
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    this.counter?.inc({ object, status });
    this.latest.set(object, status);
    if (status === 'not_in_force') this.lastProblem = { object, key, at: new Date().toISOString() };
  }

  /** `not_in_force` while the latest check of any kind of object found WORM not applied. */
  snapshot(): { status: WormStatus; lastProblem: WormProblem | null } {
    const all = [...this.latest.values()];
    const status: WormStatus = all.includes('not_in_force')
      ? 'not_in_force'
      : all.includes('in_force')
        ? 'in_force'
        : 'not_configured';
    return { status, lastProblem: this.lastProblem ?? null };
  }

  registerMetrics(metrics: Metrics, db: Db): void {
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
      'Archived evidence items by WORM status read back from the store (unchecked: archived before WORM was verified)',
      ['status'],
      async (set) => {
        const rows = await db
          .selectFrom('evidence_items')
          .select((eb) => ['worm_status', eb.fn.countAll<string>().as('n')])
          .where('deleted_at', 'is', null)
          .groupBy('worm_status')
          .execute();
        for (const s of ['in_force', 'not_in_force', 'not_configured', 'unchecked'])
          set(0, { status: s });
        for (const r of rows) set(Number(r.n), { status: r.worm_status ?? 'unchecked' });
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

/** Evidence items (not deleted) whose blob was found without WORM protection. */
export async function countItemsWithoutWorm(db: Db): Promise<number> {
  const row = await db
    .selectFrom('evidence_items')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('worm_status', '=', 'not_in_force')
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
