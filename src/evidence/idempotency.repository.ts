import type { Executor } from '../db/database';

export interface StoredResponse {
  contentSha256: string;
  statusCode: number;
  body: unknown;
}

/** First responses to requests carrying an Idempotency-Key, scoped to the API key that sent them. */
export class IdempotencyRepository {
  async find(db: Executor, apiKeyId: string, key: string): Promise<StoredResponse | undefined> {
    const row = await db
      .selectFrom('idempotency_keys')
      .select(['content_sha256', 'status_code', 'response'])
      .where('api_key_id', '=', apiKeyId)
      .where('key', '=', key)
      .executeTakeFirst();
    return (
      row && { contentSha256: row.content_sha256, statusCode: row.status_code, body: row.response }
    );
  }

  /** False when the key was already used: the primary key decides between racing requests. */
  async insert(db: Executor, apiKeyId: string, key: string, r: StoredResponse): Promise<boolean> {
    const row = await db
      .insertInto('idempotency_keys')
      .values({
        api_key_id: apiKeyId,
        key,
        content_sha256: r.contentSha256,
        status_code: r.statusCode,
        response: JSON.stringify(r.body),
      })
      .onConflict((oc) => oc.doNothing())
      .returning('key')
      .executeTakeFirst();
    return row !== undefined;
  }
}
