import { sql } from 'kysely';
import type { Executor } from './database';

/** Whether the database answers (GET /readyz). */
export class HealthRepository {
  async ping(db: Executor): Promise<void> {
    await sql`select 1`.execute(db);
  }
}
