import type { Db } from '../db/database';
import { AppError } from '../base/errors';
import type { EvidenceService } from '../evidence/evidence.service';
import type { AuditRepository, AuditRow } from '../base/audit.repository';
import { toAuditView, type AuditLog } from '../base/audit.service';
import type { RequestActor } from '../base/actor';
import type { AuditPage, AuditRangeQuery, ItemAuditQuery } from '../contract/custody.contract';

export interface AuditTrailServiceDeps {
  db: Db;
  repo: AuditRepository;
  audit: AuditLog;
  evidence: EvidenceService;
}

/** Reading the custody trail: per item for support staff, all of it for admins. Reading is audited. */
export class AuditTrailService {
  private readonly db: Db;
  private readonly repo: AuditRepository;
  private readonly audit: AuditLog;
  private readonly evidence: EvidenceService;

  constructor(deps: AuditTrailServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.audit = deps.audit;
    this.evidence = deps.evidence;
  }

  async forItem(actor: RequestActor, id: string, q: ItemAuditQuery): Promise<AuditPage> {
    const row = await this.evidence.getRow(actor, id);
    await this.audit.settle(); // every event already answered, linked
    const rows = await this.repo.listForItem(this.db, row.id, Number(q.cursor ?? 0), q.limit + 1);
    await this.audit.recordRead({ action: 'audit.read', actor, itemIds: [row.id] });
    return page(rows, q.limit);
  }

  async list(actor: RequestActor, q: AuditRangeQuery): Promise<AuditPage> {
    if (q.from && q.to && q.from >= q.to) {
      throw new AppError('validation_failed', '"from" must be earlier than "to".');
    }
    await this.audit.settle(); // every event already answered, linked
    const rows = await this.repo.list(
      this.db,
      { from: q.from, to: q.to },
      Number(q.cursor ?? 0),
      q.limit + 1,
    );
    await this.audit.recordRead({
      action: 'audit.read',
      actor,
      details: { from: q.from?.toISOString() ?? null, to: q.to?.toISOString() ?? null },
    });
    return page(rows, q.limit);
  }
}

function page(rows: AuditRow[], limit: number): AuditPage {
  const events = rows.slice(0, limit).map(toAuditView);
  return {
    events,
    nextCursor: rows.length > limit && events.length ? String(events.at(-1)!.seq) : null,
  };
}
