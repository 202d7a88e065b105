import type { AuditLog } from '../base/audit.service';
import type { Db } from '../db/database';
import { AppError } from '../base/errors';
import type { Metrics } from '../base/metrics';
import {
  PROVIDERS,
  RECORDING_STATUSES,
  type ListProviderRecordingsQuery,
  type ProviderRecordingView,
} from '../contract/integrations.contract';
import type {
  ProviderRecordingRepository,
  ProviderRecordingRow,
} from './provider-recording.repository';
import type { RequestActor } from '../base/actor';

/**
 * A recording as admins see it: what the provider announced and what became of it. Never the
 * media URL (a provider may sign it with a token) nor any credential used to fetch it.
 */
const toView = (r: ProviderRecordingRow): ProviderRecordingView => ({
  // The only providers the callbacks record (the column is text).
  provider: r.provider as ProviderRecordingView['provider'],
  recordingSid: r.recording_sid,
  callSid: r.call_sid,
  status: r.status,
  attempts: r.attempts,
  lastError: r.last_error,
  itemId: r.item_id,
  durationSeconds: r.duration_seconds,
  receivedAt: new Date(r.received_at).toISOString(),
  updatedAt: new Date(r.updated_at).toISOString(),
});

export interface ProviderRecordingServiceDeps {
  db: Db;
  repo: ProviderRecordingRepository;
  audit: AuditLog;
}

/** Recordings providers announced: the ones that failed or had no audio must not go unseen. */
export class ProviderRecordingService {
  private readonly db: Db;
  private readonly repo: ProviderRecordingRepository;
  private readonly audit: AuditLog;

  constructor(deps: ProviderRecordingServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.audit = deps.audit;
  }

  async list(
    actor: RequestActor,
    q: ListProviderRecordingsQuery,
  ): Promise<{ items: ProviderRecordingView[]; nextCursor: string | null }> {
    if (q.cursor !== undefined && !/^[1-9]\d{0,17}$/.test(q.cursor)) {
      throw new AppError('invalid_cursor', 'The cursor is not one this service issued.');
    }
    const rows = await this.repo.list(
      this.db,
      { status: q.status, provider: q.provider, beforeSeq: q.cursor },
      q.limit + 1,
    );
    const page = rows.slice(0, q.limit);
    await this.audit.recordRead({
      action: 'custody.read',
      actor,
      details: { view: 'provider_recordings', status: q.status, count: page.length },
    });
    return {
      items: page.map(toView),
      nextCursor: rows.length > q.limit && page.length ? String(page.at(-1)!.seq) : null,
    };
  }

  /** Recordings by status at scrape time: a failed fetch or a gap shows without a query. */
  registerMetrics(metrics: Metrics): void {
    metrics.gauge(
      'provider_recordings',
      'Recordings announced by a provider, by status (queued, archived, failed, absent: no audio)',
      ['provider', 'status'],
      async (set) => {
        // Every status of every provider reported, 0 included, so an alert on failed > 0 works.
        for (const provider of PROVIDERS) {
          for (const status of RECORDING_STATUSES) set(0, { provider, status });
        }
        for (const r of await this.repo.countByStatus(this.db)) {
          set(r.n, { provider: r.provider, status: r.status });
        }
      },
    );
  }
}
