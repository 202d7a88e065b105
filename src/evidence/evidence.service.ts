import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { Db, LinkType } from '../db/database';
import { can, type Principal } from '../access/roles';
import { AppError } from '../errors';
import { identifier, isoTimestamp, parseWith, phoneField } from '../ingest/upload-fields';
import { EVIDENCE_KINDS } from '../ingest/kinds';
import { BlobUnavailableError, type BlobStore, type ByteRange } from '../storage/blob-store';
import type { EvidenceRepository, EvidenceRow, SearchCursor } from './evidence.repository';
import { toEvidenceView, type EvidenceView } from './evidence.view';
import { toE164 } from './phone-number';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LIST_LIMIT = 1000;

const linksBody = z
  .object({
    orderIds: z.array(identifier()).max(100).default([]),
    complaintIds: z.array(identifier()).max(100).default([]),
  })
  .strict()
  .refine((b) => b.orderIds.length + b.complaintIds.length > 0, {
    message: 'must contain at least one of orderIds or complaintIds',
  });

const searchQuery = z
  .object({
    orderId: identifier().optional(),
    complaintId: identifier().optional(),
    kind: z.enum(EVIDENCE_KINDS).optional(),
    phone: phoneField().optional(),
    stationId: identifier().optional(),
    from: isoTimestamp().optional(),
    to: isoTimestamp().optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict();

export class EvidenceService {
  constructor(
    private readonly db: Db,
    private readonly store: BlobStore,
    private readonly repo: EvidenceRepository,
    private readonly opts: { defaultPhoneRegion?: string } = {},
  ) {}

  /** The item row; ingest keys may see only items they uploaded (their receipts). */
  async getRow(principal: Principal, id: string): Promise<EvidenceRow> {
    const row = UUID.test(id) ? await this.repo.findById(this.db, id) : undefined;
    if (!row) throw new AppError('not_found', `No evidence item with id ${JSON.stringify(id)}.`);
    if (!can(principal.role, 'evidence:read')) {
      if (!(await this.repo.hasReceipt(this.db, principal.keyId, row.id))) {
        throw new AppError('forbidden', 'This key may only read receipts of its own uploads.');
      }
    }
    return row;
  }

  async get(principal: Principal, id: string): Promise<EvidenceView> {
    return toEvidenceView(await this.getRow(principal, id));
  }

  async listByLink(type: LinkType, rawRef: string): Promise<EvidenceView[]> {
    const ref = parseWith(identifier(), rawRef);
    const rows = await this.repo.listByLink(this.db, type, ref, LIST_LIMIT);
    return rows.map(toEvidenceView);
  }

  async addLinks(principal: Principal, id: string, body: unknown): Promise<EvidenceView> {
    const { orderIds, complaintIds } = parseWith(linksBody, body);
    const row = await this.getRow(principal, id);
    await this.repo.addLinks(
      this.db,
      row.id,
      [
        ...orderIds.map((ref) => ({ type: 'order' as const, ref })),
        ...complaintIds.map((ref) => ({ type: 'complaint' as const, ref })),
      ],
      principal.keyId,
    );
    return toEvidenceView((await this.repo.findById(this.db, row.id))!);
  }

  async search(query: unknown): Promise<{ items: EvidenceView[]; nextCursor: string | null }> {
    const q = parseWith(searchQuery, query);
    let phoneE164: string | undefined;
    if (q.phone) {
      phoneE164 = toE164(q.phone, this.opts.defaultPhoneRegion);
      if (!phoneE164) {
        throw new AppError(
          'invalid_phone_number',
          `"${q.phone}" is not a phone number that can be put in E.164 form; include the country code (+44...).`,
        );
      }
    }
    const rows = await this.repo.search(
      this.db,
      { ...q, phoneE164 },
      q.cursor ? decodeCursor(q.cursor) : undefined,
      q.limit + 1,
    );
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    return {
      items: page.map(toEvidenceView),
      nextCursor:
        rows.length > q.limit && last
          ? encodeCursor({ capturedAt: new Date(last.captured_at), id: last.id })
          : null,
    };
  }

  async readContent(row: EvidenceRow, range?: ByteRange): Promise<Readable> {
    try {
      return await this.store.read(row.blob_key, row.size_bytes, range);
    } catch (err) {
      if (!(err instanceof BlobUnavailableError)) throw err;
      const unavailable = new AppError(
        'evidence_unavailable',
        `The stored bytes of item ${row.id} are missing or damaged, so they are not served. This has been logged for an administrator.`,
      );
      unavailable.cause = err; // logged, never sent to the client
      throw unavailable;
    }
  }
}

function encodeCursor(c: SearchCursor): string {
  return Buffer.from(JSON.stringify([c.capturedAt.toISOString(), c.id])).toString('base64url');
}

function decodeCursor(raw: string): SearchCursor {
  try {
    const [at, id] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown[];
    const capturedAt = new Date(String(at));
    if (typeof id === 'string' && UUID.test(id) && !Number.isNaN(capturedAt.getTime())) {
      return { capturedAt, id };
    }
  } catch {
    // fall through
  }
  throw new AppError('invalid_cursor', 'The cursor is not one this service issued.');
}
