import { sql, type Kysely } from 'kysely';

/**
 * What the app's connection could become. A login that is a superuser, or a member of the role
 * owning the tables or their schema, can leave the least-privilege role (`SET ROLE NONE`,
 * `RESET ROLE`) and alter or drop the append-only triggers: the role is then no boundary.
 */
export interface LoginReach {
  /** The login the connection authenticated as (session_user). */
  login: string;
  superuser: boolean;
  /** Whether the login is (or may become) the owner of the audit trail's table or its schema. */
  owner: boolean;
  /** Whether the login holds the app's role's rights (a member with INHERIT). */
  holdsRole: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function loginReach(db: Kysely<any>, role = 'evidence_app'): Promise<LoginReach> {
  const { rows } = await sql<{
    login: string;
    superuser: boolean;
    owner: boolean | null;
    holds_role: boolean | null;
  }>`
    select session_user as login, r.rolsuper as superuser,
      case when exists (select 1 from pg_roles where rolname = ${role})
        then pg_has_role(session_user, ${role}, 'USAGE') end as holds_role,
      coalesce(pg_has_role(session_user, t.tableowner, 'MEMBER'), false)
        or pg_has_role(session_user, n.nspowner, 'MEMBER') as owner
    from pg_roles r
    cross join pg_namespace n
    left join pg_tables t on t.schemaname = n.nspname and t.tablename = 'audit_events'
    where r.rolname = session_user and n.nspname = current_schema()`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('could not read the database login');
  return {
    login: row.login,
    superuser: row.superuser,
    owner: row.owner === true,
    holdsRole: row.holds_role === true,
  };
}

/**
 * What pg-boss's runtime statements need on its schema, given to the app's role by the owner
 * after pg-boss created or upgraded the schema and its queues (whose partitions are tables too):
 * rows of its tables, nothing of their definitions.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function grantJobQueue(db: Kysely<any>, role: string, schema: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    // One process at a time (instances starting together): concurrent GRANTs on the same objects
    // fail with "tuple concurrently updated".
    await sql`select pg_advisory_xact_lock(7311004232)`.execute(tx);
    await sql`grant usage on schema ${sql.id(schema)} to ${sql.id(role)}`.execute(tx);
    await sql`grant select, insert, update, delete on all tables in schema ${sql.id(schema)}
      to ${sql.id(role)}`.execute(tx);
    await sql`grant usage, select, update on all sequences in schema ${sql.id(schema)}
      to ${sql.id(role)}`.execute(tx);
  });
}

/** Whether the role exists (the migrations make it unless the owner may not create roles). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function roleExists(db: Kysely<any>, role: string): Promise<boolean> {
  const { rows } = await sql<{ ok: boolean }>`
    select exists (select 1 from pg_roles where rolname = ${role}) as ok`.execute(db);
  return rows[0]?.ok === true;
}
