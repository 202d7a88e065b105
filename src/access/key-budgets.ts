import { Counter } from 'prom-client';
import { AppError } from '../base/errors';
import type { Actor } from '../base/actor';
import type { Logger } from '../base/logger';
import type { Metrics } from '../base/metrics';
import type { Db } from '../db/database';
import { KeyBudgetRepository } from './key-budget.repository';

/** The budgets, by the name problems, metrics and the admin's list use. */
export const BUDGETS = {
  verify_bytes_per_hour: { windowSeconds: 3600 },
  audit_pages_per_minute: { windowSeconds: 60 },
  bundle_builds: { leaseSeconds: 15 * 60 },
} as const;
export type BudgetName = keyof typeof BUDGETS;

export interface KeyBudgetLimits {
  verifyBytesPerHour: number;
  auditPagesPerMinute: number;
  bundleBuilds: number;
}

export interface KeyBudgetsDeps {
  db: Db;
  limits: KeyBudgetLimits;
  metrics: Metrics;
  logger: Logger;
}

/**
 * Per-key budgets for expensive work, whatever the key's role: bytes re-read by `POST /verify` per
 * hour, audit-trail pages per minute, bundles built at once. Kept in PostgreSQL, so one key has one
 * budget across every instance. Past a budget: 429 `budget_exceeded` with `Retry-After`; the
 * refused request is audited (outcome denied, with the budget), counted in
 * `key_budget_refusals_total`, and listed for admins (`GET /v1/key-budgets`).
 */
export class KeyBudgets {
  private readonly db: Db;
  private readonly repo = new KeyBudgetRepository();
  readonly limits: KeyBudgetLimits;
  private readonly logger: Logger;
  private readonly refusals: Counter<'budget'>;
  private lastCleanup = 0;

  constructor(deps: KeyBudgetsDeps) {
    this.db = deps.db;
    this.limits = deps.limits;
    this.logger = deps.logger;
    this.refusals = new Counter({
      name: 'key_budget_refusals_total',
      help: 'Requests refused by this instance because their key had spent a budget, by budget',
      labelNames: ['budget'] as const,
      registers: [deps.metrics.registry],
    });
  }

  /** Charges `bytes` about to be re-read by a verification to the key's hourly budget. */
  chargeVerifyBytes(actor: Actor, bytes: number): Promise<void> {
    return this.charge(actor, 'verify_bytes_per_hour', bytes, this.limits.verifyBytesPerHour);
  }

  /** Charges one page of the audit trail to the key's per-minute budget. */
  chargeAuditPage(actor: Actor): Promise<void> {
    return this.charge(actor, 'audit_pages_per_minute', 1, this.limits.auditPagesPerMinute);
  }

  /** Runs `build` holding one of the key's bundle-build slots; refused when all are taken. */
  async withBundleBuild<T>(actor: Actor, build: () => Promise<T>): Promise<T> {
    if (!actor.keyId) return build();
    const limit = this.limits.bundleBuilds;
    const lease = await this.repo.acquire(
      this.db,
      actor.keyId,
      'bundle_builds',
      limit,
      BUDGETS.bundle_builds.leaseSeconds,
    );
    if (!lease) {
      await this.repo.noteRefusal(this.db, actor.keyId, 'bundle_builds', 3600);
      throw this.refuse(
        actor,
        'bundle_builds',
        limit,
        5,
        `This key already has ${limit} bundle(s) being built (KEY_BUNDLE_BUILDS); try again when one is done.`,
      );
    }
    // Renewed while the build runs: a build longer than the lease still holds its slot.
    const ttl = BUDGETS.bundle_builds.leaseSeconds;
    const renewal = setInterval(
      () => {
        this.repo.renew(this.db, lease, ttl).catch(() => undefined);
      },
      (ttl * 1000) / 3,
    );
    renewal.unref();
    try {
      return await build();
    } finally {
      clearInterval(renewal);
      await this.repo.release(this.db, lease).catch((err: unknown) => {
        // Left to expire (15 minutes) when the database is away now.
        this.logger.warn({ err, lease }, 'bundle build lease not released');
      });
    }
  }

  private async charge(actor: Actor, budget: BudgetName, amount: number, limit: number) {
    if (!actor.keyId) return; // the service's own work (the scrub) is not a key's
    const { windowSeconds } = BUDGETS[budget] as { windowSeconds: number };
    const r = await this.repo.charge(this.db, actor.keyId, budget, windowSeconds, amount, limit);
    this.forgetOldWindows();
    if (r.ok) return;
    const retry = Math.max(1, Math.ceil((r.windowEnd.getTime() - Date.now()) / 1000));
    const what =
      budget === 'verify_bytes_per_hour'
        ? `${r.used} of its ${limit} bytes of verification this hour (KEY_VERIFY_BYTES_PER_HOUR); this item needs ${amount} more`
        : `its ${limit} audit pages this minute (KEY_AUDIT_PAGES_PER_MINUTE)`;
    throw this.refuse(
      actor,
      budget,
      limit,
      retry,
      `This key has used ${what}; try again in ${retry} s.`,
    );
  }

  private refuse(
    actor: Actor,
    budget: BudgetName,
    limit: number,
    retryAfterSeconds: number,
    message: string,
  ): AppError {
    this.refusals.inc({ budget });
    this.logger.info({ keyId: actor.keyId, budget, limit }, 'request refused: key budget spent');
    return new AppError('budget_exceeded', message, { budget, limit, retryAfterSeconds });
  }

  /** At most every 10 minutes per instance, and never in the way of the request. */
  private forgetOldWindows(): void {
    if (Date.now() - this.lastCleanup < 600_000) return;
    this.lastCleanup = Date.now();
    this.repo.forgetOldWindows(this.db).catch(() => undefined);
  }

  /** Keys a budget refused in the last `hours`, newest window first (admins). */
  async limitedSince(hours: number) {
    const rows = await this.repo.refusalsSince(this.db, new Date(Date.now() - hours * 3600_000));
    return rows.map((r) => ({
      keyId: r.key_id,
      name: r.name ?? null,
      role: r.role ?? null,
      budget: r.budget,
      windowStart: new Date(r.window_start).toISOString(),
      used: Number(r.used),
      refused: r.refused,
    }));
  }
}
