/**
 * Roles come before the schema: a dump's ALTER … OWNER TO, GRANT and CREATE POLICY … TO name
 * roles, and the target must have them or the schema fails halfway. Two things here:
 *
 * - `missingRoles`: the roles the source database refers to that the target lacks, so that
 *   clone stops up front with the command to run instead of failing mid-schema.
 * - `copyRoles` (`--roles`): creates those roles on the target as `pg_dumpall --roles-only`
 *   would (attributes, connection limit, validity, comment, settings, memberships among
 *   them), built from the source's catalog so that only the referenced roles are written
 *   and no SQL text is edited. Passwords only when asked (`--role-passwords`; they are
 *   read from pg_authid, which needs a superuser, and travel only over the target session,
 *   never in argv, a file or a message). Roles that exist already are left as they are.
 *   SUPERUSER, REPLICATION and BYPASSRLS need a superuser to grant: on a target where
 *   pgconvoy's role is not one (a managed service), they are dropped with a warning.
 *
 * Which roles a database refers to comes from pg_shdepend (owners, privileges, policies,
 * default privileges), plus the database's own owner, grantees and per-role settings, plus
 * the bootstrap superuser when it owns something (pg_shdepend does not record pinned roles).
 * Checked on PostgreSQL 13 to 18 (pg_auth_members grew inherit_option and set_option in 16).
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { serverMajor } from '../inventory/server-info.js';
import { withoutStatementLogging } from '../util/quiet-logging.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';
import { settingClause } from './database-create.js';
import { SQLSTATE } from '../sqlstate.js';
import { userSchemas } from '../util/catalog-sql.js';

/** Why the database needs a role: it owns objects, holds privileges, or a policy names it. */
export type RoleUse = 'owner' | 'privileges' | 'policy' | 'database';

export interface ReferencedRole {
  name: string;
  uses: RoleUse[];
}

const REFERENCED_SQL = `
WITH db AS (SELECT oid, datdba, datacl FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()),
uses AS (
  SELECT d.refobjid AS role,
         CASE WHEN d.deptype = 'r' THEN 'policy'
              WHEN d.deptype = 'a' OR d.classid = 'pg_catalog.pg_default_acl'::pg_catalog.regclass THEN 'privileges'
              ELSE 'owner' END AS use
  FROM pg_catalog.pg_shdepend d, db
  WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
    AND d.dbid = db.oid AND d.deptype IN ('o', 'a', 'r')
  UNION SELECT db.datdba, 'database' FROM db
  UNION SELECT a.grantee, 'database' FROM db, pg_catalog.aclexplode(db.datacl) a WHERE a.grantee <> 0
  UNION SELECT s.setrole, 'database' FROM pg_catalog.pg_db_role_setting s, db WHERE s.setdatabase = db.oid AND s.setrole <> 0
  -- The bootstrap superuser is pinned: pg_shdepend never names it.
  UNION SELECT 10, 'owner' WHERE EXISTS (
    SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relowner = 10 AND ${userSchemas()}
      AND n.nspname <> ALL ($1::text[]))
)
SELECT r.rolname AS name, pg_catalog.array_agg(DISTINCT u.use ORDER BY u.use) AS uses
FROM uses u JOIN pg_catalog.pg_roles r ON r.oid = u.role
WHERE r.rolname !~ '^pg_'
GROUP BY r.rolname
ORDER BY r.rolname`;

/** The roles the source database refers to (its ledger schema `exclude` left out). */
export async function readReferencedRoles(
  client: pg.Client,
  exclude: string[] = [],
): Promise<ReferencedRole[]> {
  const res = await client.query<ReferencedRole>(REFERENCED_SQL, [exclude]);
  return res.rows;
}

/**
 * Roles the schema will name that the target lacks: owners (unless noOwner), grantees
 * (unless noPrivileges) and roles named by policies (always).
 */
export async function missingRoles(
  referenced: ReferencedRole[],
  target: pg.Client,
  o: { noOwner: boolean; noPrivileges: boolean },
): Promise<string[]> {
  const needed = referenced.filter((r) =>
    r.uses.some(
      (u) => u === 'policy' || (u === 'owner' && !o.noOwner) || (u === 'privileges' && !o.noPrivileges),
    ),
  );
  const present = await target.query<{ rolname: string }>(
    'SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])',
    [needed.map((r) => r.name)],
  );
  const have = new Set(present.rows.map((r) => r.rolname));
  return needed.map((r) => r.name).filter((n) => !have.has(n));
}

/** The error for missing roles, with what to run. */
export function missingRolesError(missing: string[]): PgconvoyError {
  return new PgconvoyError(
    `the schema names ${missing.length} role(s) that do not exist on the target: ${missing.map(quoteIdent).join(', ')}`,
    {
      code: 'ROLES_MISSING',
      exitCode: EXIT.target,
      hint:
        `copy them from the source: run the same command with --roles (and --role-passwords to copy their passwords too); ` +
        `or create them on the target yourself (${missing.map((n) => `CREATE ROLE ${quoteIdent(n)};`).join(' ')}); ` +
        `or leave ownership and privileges out with --no-owner --no-privileges`,
      details: { roles: missing },
    },
  );
}

interface RoleRow {
  name: string;
  superuser: boolean;
  inherit: boolean;
  createrole: boolean;
  createdb: boolean;
  login: boolean;
  replication: boolean;
  bypassrls: boolean;
  connection_limit: number;
  valid_until: string | null;
  comment: string | null;
  settings: string[] | null;
}

export interface CopyRolesOptions {
  /** Roles to create (from readReferencedRoles). */
  roles: string[];
  /** Copy the password hashes too (the source session must be a superuser's). */
  passwords: boolean;
  onWarning: (message: string) => void;
  onInfo: (message: string) => void;
}

export interface CopyRolesResult {
  created: string[];
  existing: string[];
}

interface Statement {
  sql: string;
  /** What to show instead of the SQL when it fails (it holds a password). */
  secret?: string;
}

/**
 * Creates on `target` (any database of the target server) the roles `o.roles` of the source
 * that it lacks, in one transaction: all of them or none.
 */
export async function copyRoles(
  source: pg.Client,
  target: pg.Client,
  o: CopyRolesOptions,
): Promise<CopyRolesResult> {
  const [sourceMajor, targetMajor, targetSuperuser] = await Promise.all([
    serverMajor(source),
    serverMajor(target),
    target
      .query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_catalog.pg_roles WHERE rolname = current_user')
      .then((r) => r.rows[0]?.s ?? false),
  ]);
  const existingRes = await target.query<{ rolname: string }>(
    'SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])',
    [o.roles],
  );
  const existing = new Set(existingRes.rows.map((r) => r.rolname));
  const fresh = o.roles.filter((r) => !existing.has(r));
  if (existing.size > 0) {
    o.onInfo(
      `${existing.size} role(s) exist on the target already and are left as they are: ${[...existing].map(quoteIdent).join(', ')}`,
    );
  }
  if (fresh.length === 0) return { created: [], existing: [...existing] };

  const rows = await source.query<RoleRow>(
    `SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolinherit AS inherit, r.rolcreaterole AS createrole,
            r.rolcreatedb AS createdb, r.rolcanlogin AS login, r.rolreplication AS replication,
            r.rolbypassrls AS bypassrls, r.rolconnlimit AS connection_limit,
            pg_catalog.to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS+00') AS valid_until,
            pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment,
            (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0) AS settings
     FROM pg_catalog.pg_roles r
     WHERE r.rolname = ANY($1::text[])
     ORDER BY r.rolname`,
    [fresh],
  );
  const statements: Statement[] = [];
  const later: Statement[] = [];
  for (const r of rows.rows) {
    const role = quoteIdent(r.name);
    const refused = targetSuperuser
      ? []
      : (['superuser', 'replication', 'bypassrls'] as const).filter((a) => r[a]).map((a) => a.toUpperCase());
    if (refused.length > 0) {
      o.onWarning(
        `role ${role}: ${refused.join(', ')} left out (only a superuser may grant ${refused.length > 1 ? 'them' : 'it'}, and pgconvoy's target role is not one; on a managed service use its own roles, e.g. rds_superuser or rds_replication)`,
      );
    }
    const attrs = [
      r.superuser && targetSuperuser ? 'SUPERUSER' : 'NOSUPERUSER',
      r.inherit ? 'INHERIT' : 'NOINHERIT',
      r.createrole ? 'CREATEROLE' : 'NOCREATEROLE',
      r.createdb ? 'CREATEDB' : 'NOCREATEDB',
      r.login ? 'LOGIN' : 'NOLOGIN',
      r.replication && targetSuperuser ? 'REPLICATION' : 'NOREPLICATION',
      r.bypassrls && targetSuperuser ? 'BYPASSRLS' : 'NOBYPASSRLS',
    ];
    if (r.connection_limit !== -1) attrs.push(`CONNECTION LIMIT ${r.connection_limit}`);
    if (r.valid_until) attrs.push(`VALID UNTIL ${quoteLiteral(r.valid_until).trim()}`);
    statements.push({ sql: `CREATE ROLE ${role} WITH ${attrs.join(' ')}` });
    if (r.comment !== null)
      later.push({ sql: `COMMENT ON ROLE ${role} IS ${quoteLiteral(r.comment).trim()}` });
    for (const entry of r.settings ?? []) later.push({ sql: `ALTER ROLE ${role} ${settingClause(entry)}` });
  }
  statements.push(...later, ...(await memberships(source, sourceMajor, targetMajor, o.roles, existing)));
  if (o.passwords) statements.push(...(await passwordStatements(source, fresh)));

  const apply = async () => {
    let current: Statement | undefined;
    try {
      await target.query('BEGIN');
      for (current of statements) await target.query(current.sql);
      await target.query('COMMIT');
    } catch (err) {
      await target.query('ROLLBACK').catch(() => undefined);
      const f = serverErrorFields(err);
      const what = current?.secret ?? current?.sql ?? '';
      throw new PgconvoyError(
        `creating the source's roles on the target failed at: ${what}: ${current?.secret ? '(the server message is not shown: it may quote the password)' : errorMessage(err)}${f?.code ? ` (SQLSTATE ${f.code})` : ''}`,
        {
          code: 'ROLES_CREATE_FAILED',
          exitCode: EXIT.target,
          ...(current?.secret ? {} : { cause: err }),
          hint:
            f?.code === SQLSTATE.insufficientPrivilege
              ? 'the target role needs CREATEROLE (and, for memberships, ADMIN on the roles granted): connect as such a role, or create the roles yourself and run again without --roles'
              : 'no role was created; fix the cause on the target and run the same command again',
          details: { statement: what, ...(f?.code ? { sqlstate: f.code } : {}) },
        },
      );
    }
  };
  if (o.passwords) {
    // The password hashes must not reach the target's log (log_statement = ddl logs ALTER ROLE).
    const quiet = await withoutStatementLogging(target, apply);
    if (quiet.loggedAlways.length > 0 || quiet.loggedOnFailure.length > 0) {
      o.onWarning(
        `the target server may log the roles' password hashes (${[...quiet.loggedAlways, ...quiet.loggedOnFailure].join(', ')}; turning that off for pgconvoy's session needs superuser)`,
      );
    }
  } else {
    await apply();
  }
  o.onInfo(
    `created ${fresh.length} role(s) on the target: ${fresh.map(quoteIdent).join(', ')}${o.passwords ? ' (with their passwords)' : ' (without passwords: --role-passwords copies them)'}`,
  );
  return { created: fresh, existing: [...existing] };
}

/** GRANT role TO member for the memberships among `roles`, except between roles that both existed. */
async function memberships(
  source: pg.Client,
  sourceMajor: number,
  targetMajor: number,
  roles: string[],
  existing: ReadonlySet<string>,
): Promise<Statement[]> {
  const options =
    sourceMajor >= 16 ? 'a.inherit_option AS inherit, a.set_option AS set' : 'NULL AS inherit, NULL AS set';
  const res = await source.query<{
    role: string;
    member: string;
    admin: boolean;
    inherit: boolean | null;
    set: boolean | null;
  }>(
    `SELECT r.rolname AS role, m.rolname AS member, a.admin_option AS admin, ${options}
     FROM pg_catalog.pg_auth_members a
     JOIN pg_catalog.pg_roles r ON r.oid = a.roleid
     JOIN pg_catalog.pg_roles m ON m.oid = a.member
     WHERE r.rolname = ANY($1::text[]) AND m.rolname = ANY($1::text[])
     ORDER BY 1, 2`,
    [roles],
  );
  return res.rows
    .filter((g) => !(existing.has(g.role) && existing.has(g.member)))
    .map((g) => {
      const grant = `GRANT ${quoteIdent(g.role)} TO ${quoteIdent(g.member)}`;
      if (targetMajor >= 16 && g.inherit !== null) {
        return { sql: `${grant} WITH ADMIN ${g.admin}, INHERIT ${g.inherit}, SET ${g.set}` };
      }
      return { sql: g.admin ? `${grant} WITH ADMIN OPTION` : grant };
    });
}

/** ALTER ROLE … PASSWORD with the stored hash (SCRAM or md5), as pg_dumpall writes it. */
async function passwordStatements(source: pg.Client, roles: string[]): Promise<Statement[]> {
  let rows: { name: string; password: string }[];
  try {
    rows = (
      await source.query<{ name: string; password: string }>(
        `SELECT rolname AS name, rolpassword AS password FROM pg_catalog.pg_authid
         WHERE rolname = ANY($1::text[]) AND rolpassword IS NOT NULL ORDER BY 1`,
        [roles],
      )
    ).rows;
  } catch (err) {
    if (serverErrorFields(err)?.code !== SQLSTATE.insufficientPrivilege) throw err;
    throw new PgconvoyError(
      '--role-passwords: the source role may not read pg_authid, where the passwords are',
      {
        code: 'ROLE_PASSWORDS_DENIED',
        exitCode: EXIT.source,
        cause: err,
        hint: 'connect to the source as a superuser, or leave --role-passwords out and set the passwords on the target yourself (ALTER ROLE … PASSWORD)',
      },
    );
  }
  return rows.map((r) => ({
    sql: `ALTER ROLE ${quoteIdent(r.name)} PASSWORD ${quoteLiteral(r.password).trim()}`,
    secret: `ALTER ROLE ${quoteIdent(r.name)} PASSWORD '…'`,
  }));
}
