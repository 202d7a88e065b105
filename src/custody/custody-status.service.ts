import type { AppConfig } from '../base/config';
import type { Db } from '../db/database';
import type { Metrics } from '../base/metrics';
import type { AuditRepository } from '../base/audit.repository';
import type { AuditLog } from '../base/audit.service';
import type { CustodyJob, CustodyRunRepository, CustodyRunRow } from './custody-run.repository';
import type { CustodyStatusRepository } from './custody-status.repository';
import type { CheckpointTimestamps } from './checkpoint-timestamps';
import type { RequestActor } from '../base/actor';

const JOBS: CustodyJob[] = ['scrub', 'retention', 'checkpoint'];
const SCRAPE_MS = 1000;
/** Count rows (one per archiving statement or deletion) past which a read folds them into one. */
const FOLD_AT = 1000;

const iso = (d: Date | string | null) => (d ? new Date(d).toISOString() : null);

function runView(r: CustodyRunRow | undefined) {
  if (!r) return null;
  return {
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    outcome: r.outcome,
    stats: r.stats,
  };
}

export interface CustodyStatusServiceDeps {
  db: Db;
  repo: CustodyStatusRepository;
  runs: CustodyRunRepository;
  auditRepo: AuditRepository;
  audit: AuditLog;
  config: Pick<AppConfig, 'custody' | 'retention'>;
  timestamps: CheckpointTimestamps;
}

/** What admins see of custody (GET /v1/custody/status) and what Prometheus scrapes. */
export class CustodyStatusService {
  private readonly db: Db;
  private readonly repo: CustodyStatusRepository;
  private readonly runs: CustodyRunRepository;
  private readonly auditRepo: AuditRepository;
  private readonly audit: AuditLog;
  private readonly config: Pick<AppConfig, 'custody' | 'retention'>;
  private readonly timestamps: CheckpointTimestamps;

  constructor(deps: CustodyStatusServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.runs = deps.runs;
    this.auditRepo = deps.auditRepo;
    this.audit = deps.audit;
    this.config = deps.config;
    this.timestamps = deps.timestamps;
  }

  /** The RFC 3161 side of the checkpoints: the newest stamped one, its age, how many wait. */
  private async trustedTime() {
    const { latest, pending } = await this.timestamps.summary();
    return {
      configured: this.timestamps.configured,
      lastStamped: latest
        ? {
            seq: latest.seq,
            genTime: latest.genTime.toISOString(),
            authority: latest.authority,
            ageSeconds: Math.max(0, Math.round((Date.now() - latest.genTime.getTime()) / 1000)),
          }
        : null,
      checkpointsAwaitingTimestamp: pending,
    };
  }

  private async counts() {
    const r = await this.repo.counts(this.db);
    // Keeps the next read small; a failed fold (say, a read-only replica) costs nothing here.
    if (Number(r.count_rows) > FOLD_AT) await this.repo.foldCounts(this.db).catch(() => undefined);
    return {
      archived: Number(r.archived),
      deleted: Number(r.deleted),
      awaitingPurge: Number(r.unpurged),
      failingVerification: Number(r.failing),
      neverVerified: Number(r.never_verified),
      activeLegalHolds: Number(r.holds),
      /** Not served until the genuine bytes are uploaded again. */
      damaged: Number(r.damaged),
    };
  }

  private async failing(limit: number) {
    return this.repo.failing(this.db, limit);
  }

  async status(actor: RequestActor) {
    await this.audit.settle(); // the head shown counts every event already answered
    const [trustedTime, counts, failing, head, checkpoint, scrub, retention, checkpointRun] =
      await Promise.all([
        this.trustedTime(),
        this.counts(),
        this.failing(100),
        this.auditRepo.head(this.db),
        this.auditRepo.latestCheckpoint(this.db),
        ...JOBS.map((job) => this.runs.latest(this.db, job)),
      ]);
    await this.audit.recordRead({ action: 'custody.read', actor });
    return {
      items: counts,
      failingItems: failing.map((f) => ({
        itemId: f.id,
        status: f.verify_status,
        checkedAt: iso(f.verified_at),
        detail: f.verify_detail,
      })),
      auditChain: {
        headSeq: head.seq,
        headHash: head.hash,
        lastCheckpoint: checkpoint
          ? { seq: checkpoint.seq, hash: checkpoint.hash, signedAt: iso(checkpoint.signed_at) }
          : null,
        eventsSinceCheckpoint: head.seq - (checkpoint?.seq ?? 0),
        trustedTime,
      },
      lastRuns: {
        scrub: runView(scrub),
        retention: runView(retention),
        checkpoint: runView(checkpointRun),
      },
      settings: {
        checkpointIntervalMinutes: this.config.custody.checkpointIntervalMinutes,
        scrubIntervalMinutes: this.config.custody.scrubIntervalMinutes,
        scrubFullPassDays: this.config.custody.scrubFullPassDays,
        stagingGraceHours: this.config.custody.stagingGraceHours,
        retentionDays: this.config.retention.days,
        retentionAfterCloseDays: this.config.retention.afterCloseDays,
        retentionIntervalMinutes: this.config.retention.intervalMinutes,
      },
    };
  }

  /**
   * Gauges read from the database at scrape time, so every instance reports the same truth and a
   * problem found by any instance's scrub is visible on all of them.
   */
  registerMetrics(metrics: Metrics): void {
    // Several gauges read the same rows: one query each per scrape, not one per gauge.
    const onePerScrape = <T>(read: () => Promise<T>) => {
      let last: { at: number; value: Promise<T> } | undefined;
      return () => {
        if (!last || Date.now() - last.at > SCRAPE_MS) last = { at: Date.now(), value: read() };
        return last.value;
      };
    };
    const counts = onePerScrape(() => this.counts());
    const lastRuns = onePerScrape(async () => {
      const runs = await Promise.all(JOBS.map((job) => this.runs.latest(this.db, job)));
      return new Map(JOBS.map((job, i) => [job, runs[i]]));
    });
    metrics.gauge('evidence_items', 'Evidence items by state', ['state'], async (set) => {
      const c = await counts();
      set(c.archived, { state: 'archived' });
      set(c.deleted, { state: 'deleted' });
      set(c.awaitingPurge, { state: 'awaiting_purge' });
      set(c.neverVerified, { state: 'never_verified' });
      set(c.damaged, { state: 'damaged' });
    });
    metrics.gauge(
      'evidence_integrity_failing_items',
      'Live items whose last verification failed (flipped bytes, missing blob, edited hash)',
      ['status'],
      async (set) => {
        const rows = await this.repo.failingByStatus(this.db);
        for (const s of ['mismatch', 'missing', 'size_mismatch']) {
          set(Number(rows.find((r) => r.verify_status === s)?.n ?? 0), { status: s });
        }
      },
    );
    metrics.gauge('legal_holds_active', 'Active legal holds', [], async (set) => {
      set((await counts()).activeLegalHolds);
    });
    metrics.gauge(
      'audit_chain_head_seq',
      'Sequence number of the newest audit event',
      [],
      async (set) => {
        set((await this.auditRepo.head(this.db)).seq);
      },
    );
    metrics.gauge(
      'audit_events_waiting_oldest_seconds',
      'Age of the oldest audit event recorded and not yet linked into the chain (0: none waits)',
      [],
      async (set) => {
        const oldest = await this.auditRepo.oldestPendingAt(this.db);
        set(oldest ? Math.max(0, (Date.now() - oldest.getTime()) / 1000) : 0);
      },
    );
    metrics.gauge(
      'audit_checkpoint_last_seq',
      'Sequence number covered by the newest signed checkpoint',
      [],
      async (set) => set((await this.auditRepo.latestCheckpoint(this.db))?.seq ?? 0),
    );
    metrics.gauge(
      'audit_checkpoint_timestamp_age_seconds',
      'Age of the RFC 3161 time of the newest timestamped audit checkpoint (absent: none stamped)',
      [],
      async (set) => {
        const { latest } = await this.timestamps.summary();
        if (latest) set((Date.now() - latest.genTime.getTime()) / 1000);
      },
    );
    metrics.gauge(
      'audit_checkpoints_awaiting_timestamp',
      'Audit checkpoints still without an RFC 3161 timestamp (queued while the TSAs fail)',
      [],
      async (set) => set((await this.timestamps.summary()).pending),
    );
    metrics.gauge(
      'custody_job_last_run_timestamp_seconds',
      'When each custody job last finished',
      ['job'],
      async (set) => {
        for (const [job, run] of await lastRuns()) {
          if (run?.finished_at) set(new Date(run.finished_at).getTime() / 1000, { job });
        }
      },
    );
    metrics.gauge(
      'custody_job_last_run_ok',
      'Whether the last run of each custody job found everything in order (1) or not (0)',
      ['job'],
      async (set) => {
        for (const [job, run] of await lastRuns()) {
          if (run) set(run.outcome === 'ok' ? 1 : 0, { job });
        }
      },
    );
    metrics.gauge(
      'custody_scrub_findings',
      'What the last scrub found: orphan blobs, rows without blobs, a broken audit chain',
      ['finding'],
      async (set) => {
        const stats = (await lastRuns()).get('scrub')?.stats as
          | {
              reconcile?: { orphanBlobs: number; missingBlobs: number; purgedButPresent: number };
              chain?: { ok: boolean };
              failures?: unknown[];
            }
          | undefined;
        set(stats?.reconcile?.orphanBlobs ?? 0, { finding: 'orphan_blobs' });
        set(stats?.reconcile?.missingBlobs ?? 0, { finding: 'missing_blobs' });
        set(stats?.reconcile?.purgedButPresent ?? 0, { finding: 'purged_but_present' });
        set(stats?.chain && !stats.chain.ok ? 1 : 0, { finding: 'audit_chain_broken' });
        set(stats?.failures?.length ?? 0, { finding: 'verification_failures' });
      },
    );
  }
}
