import { sql } from 'kysely';
import type { Db, ResumableUploadsTable, Tx } from '../../db/database';

type Conn = Db | Tx;

export interface ResumableUploadRow {
  id: string;
  created_by_key_id: string;
  actor: unknown;
  fields: unknown;
  metadata: Record<string, string | null>;
  filename: string | null;
  upload_length: number;
  upload_offset: number;
  storage_key: string;
  storage_state: Record<string, unknown>;
  sha256: string | null;
  head: Buffer;
  content_type: string | null;
  item_id: string | null;
  result: unknown;
  created_at: Date;
  updated_at: Date;
  expires_at: Date;
}

export type NewResumableUpload = Pick<
  ResumableUploadsTable,
  | 'id'
  | 'created_by_key_id'
  | 'actor'
  | 'fields'
  | 'metadata'
  | 'filename'
  | 'storage_key'
  | 'storage_state'
> & { upload_length: number; created_at: Date; expires_at: Date };

export interface Progress {
  offset: number;
  storageState: Record<string, unknown>;
  head: Buffer;
  contentType: string | null;
}

/** Rows of tus uploads in progress (and, until they expire, of finished ones). */
export class ResumableUploadRepository {
  async insert(db: Conn, row: NewResumableUpload): Promise<void> {
    await db
      .insertInto('resumable_uploads')
      .values({
        ...row,
        actor: JSON.stringify(row.actor),
        fields: JSON.stringify(row.fields),
        metadata: JSON.stringify(row.metadata) as never,
        storage_state: JSON.stringify(row.storage_state),
        updated_at: row.created_at,
      })
      .execute();
  }

  async find(db: Conn, id: string): Promise<ResumableUploadRow | undefined> {
    const row = await db
      .selectFrom('resumable_uploads')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row as ResumableUploadRow | undefined;
  }

  async existsByKey(db: Conn, storageKey: string): Promise<boolean> {
    const row = await db
      .selectFrom('resumable_uploads')
      .select('id')
      .where('storage_key', '=', storageKey)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Records bytes made durable by a PATCH. Conditional on the offset they were written at, so two
   * writers that somehow both held the upload can never both advance it.
   */
  /** The statement advance() runs, for running it elsewhere (see UploadLocker.fenced). */
  advanceQuery(db: Conn, id: string, from: number, p: Progress) {
    return db
      .updateTable('resumable_uploads')
      .set({
        upload_offset: p.offset,
        storage_state: JSON.stringify(p.storageState),
        head: p.head,
        content_type: p.contentType,
        updated_at: new Date(),
      })
      .where('id', '=', id)
      .where('upload_offset', '=', from)
      .where('item_id', 'is', null);
  }

  /** The digest of every byte, recorded before they are promoted to their content address. */
  async setDigest(db: Conn, id: string, sha256: string): Promise<void> {
    await db
      .updateTable('resumable_uploads')
      .set({ sha256, updated_at: new Date() })
      .where('id', '=', id)
      .execute();
  }

  async markArchived(db: Conn, id: string, itemId: string, result: unknown): Promise<void> {
    await db
      .updateTable('resumable_uploads')
      .set({ item_id: itemId, result: JSON.stringify(result), updated_at: new Date() })
      .where('id', '=', id)
      .execute();
  }

  async delete(db: Conn, id: string): Promise<void> {
    await db.deleteFrom('resumable_uploads').where('id', '=', id).execute();
  }

  async expired(db: Conn, now: Date, limit: number): Promise<ResumableUploadRow[]> {
    const rows = await db
      .selectFrom('resumable_uploads')
      .selectAll()
      .where('expires_at', '<', now)
      .orderBy('expires_at')
      .limit(limit)
      .execute();
    return rows as ResumableUploadRow[];
  }

  /** Uploads whose every byte is in but which were not archived (the finishing request failed). */
  async unfinished(db: Conn, before: Date, limit: number): Promise<string[]> {
    const rows = await db
      .selectFrom('resumable_uploads')
      .select('id')
      .where('item_id', 'is', null)
      .where(sql<boolean>`upload_offset = upload_length`)
      .where('updated_at', '<', before)
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }
}
