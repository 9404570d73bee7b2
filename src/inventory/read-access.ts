/**
 * Can the connecting role see every row of every table? Two things can hide rows from it:
 *
 * - row-level security: a table with RLS enabled shows a role only the rows its policies
 *   allow (no policy at all: no row), unless the role is a superuser, has BYPASSRLS, or
 *   has the privileges of the table's owner and the table is not FORCEd. On the source
 *   such a table cannot be copied or verified completely; on the target COPY FROM refuses
 *   it ("COPY FROM not supported with row-level security").
 * - missing SELECT: a plain table (a partition, an inheritance child) the role may not
 *   read. pgconvoy reads each one by itself (never through its parent), so the read fails
 *   rather than shrinks; listing them up front names them all at once.
 *
 * Partitioned parents are not listed: their rows are read through the partitions, and a
 * parent's policies do not apply when a partition is read directly.
 * Used by precheck, clone --dry-run and clone's pre-copy check. Checked on 13, 15, 17.
 */
import type pg from 'pg';
import { displayName } from '../util/sql.js';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';

export interface RowSecurityTable {
  schema: string;
  name: string;
  /** FORCE ROW LEVEL SECURITY: the owner is filtered too. */
  forced: boolean;
  policies: number;
  owner: string;
  /** The connecting role sees every row (superuser, BYPASSRLS, or owner of a table not FORCEd). */
  bypassed: boolean;
}

export interface ReadAccess {
  role: { name: string; superuser: boolean; bypassRls: boolean };
  /** Tables with row-level security enabled. */
  rowSecurity: RowSecurityTable[];
  /** Tables the role may not read (no USAGE on the schema, or SELECT neither on the table nor on every column). */
  unreadable: { schema: string; name: string }[];
}

const USER_TABLES = `
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND ${userSchemas()}
  AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}`;

const ROLE_SQL = `
SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolbypassrls AS bypass
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`;

// The owner test is the server's own (has_privs_of_role, what pg_has_role 'USAGE' checks).
const ROW_SECURITY_SQL = `
SELECT n.nspname AS schema, c.relname AS name, c.relforcerowsecurity AS forced,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)::int AS policies,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owner_rights
${USER_TABLES}
  AND c.relrowsecurity
ORDER BY n.nspname, c.relname`;

// COPY t (columns) needs USAGE on the schema and SELECT on each column read: granted on
// the table or on every column.
const UNREADABLE_SQL = `
SELECT n.nspname AS schema, c.relname AS name
${USER_TABLES}
  AND (NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE')
       OR (NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         AND NOT pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT'))))
ORDER BY n.nspname, c.relname`;

export async function readAccess(client: pg.Client, ledgerSchema: string): Promise<ReadAccess> {
  const role = (await client.query<{ name: string; superuser: boolean; bypass: boolean }>(ROLE_SQL)).rows[0]!;
  const rls = await client.query<{
    schema: string;
    name: string;
    forced: boolean;
    policies: number;
    owner: string;
    owner_rights: boolean;
  }>(ROW_SECURITY_SQL, [ledgerSchema]);
  const unreadable = await client.query<{ schema: string; name: string }>(UNREADABLE_SQL, [ledgerSchema]);
  return {
    role: { name: role.name, superuser: role.superuser, bypassRls: role.bypass },
    rowSecurity: rls.rows.map((r) => ({
      schema: r.schema,
      name: r.name,
      forced: r.forced,
      policies: r.policies,
      owner: r.owner,
      bypassed: role.superuser || role.bypass || (r.owner_rights && !r.forced),
    })),
    unreadable: unreadable.rows,
  };
}

/** Tables whose rows the role would see filtered. */
export function filteredTables(access: ReadAccess): RowSecurityTable[] {
  return access.rowSecurity.filter((t) => !t.bypassed);
}

/** Why the role sees every row of `t`, or that it does not: for listings. */
export function bypassReason(access: ReadAccess, t: RowSecurityTable): string {
  if (access.role.superuser) return `bypassed: "${access.role.name}" is a superuser`;
  if (access.role.bypassRls) return `bypassed: "${access.role.name}" has BYPASSRLS`;
  if (t.bypassed) return `bypassed: "${access.role.name}" owns it (not FORCEd)`;
  const owner = t.owner === access.role.name ? 'owns it but it is FORCEd' : `is not its owner "${t.owner}"`;
  return `filtered: "${access.role.name}" ${owner}, not a superuser, no BYPASSRLS (${t.policies} ${t.policies === 1 ? 'policy' : 'policies'})`;
}

/** One line per table with row-level security: name, FORCE, and whether the role bypasses it. */
export function rowSecurityLines(access: ReadAccess): string[] {
  return access.rowSecurity.map(
    (t) => `${displayName(t.schema, t.name)}${t.forced ? ' (FORCE)' : ''}: ${bypassReason(access, t)}`,
  );
}

/** The fix, said once for every message about row-level security. */
export function rowSecurityHint(side: 'source' | 'target'): string {
  return `connect to the ${side} as a superuser or a role with BYPASSRLS (ALTER ROLE … BYPASSRLS), or as the table's owner when its row security is not FORCEd; pgconvoy never copies or verifies rows that a policy hides`;
}

export function selectHint(side: 'source' | 'target'): string {
  return `GRANT SELECT on those tables to the ${side} role (partitions and inheritance children each need their own grant), or connect as their owner or a superuser`;
}

/** Something that keeps pgconvoy from reading (or loading) some tables whole, said once for all of them. */
export interface AccessProblem {
  code: 'ROW_SECURITY_FILTERS' | 'TABLE_NOT_READABLE';
  detail: string;
  hint: string;
  /** The tables, one line each. */
  items: string[];
}

/**
 * What stops a copy: on the side read ('read': a source, or either side for verify), tables
 * whose rows a policy filters and tables without SELECT; on the side loaded ('load'), tables
 * whose policies apply to the role (COPY FROM refuses them).
 */
export function accessProblems(
  access: ReadAccess,
  side: 'source' | 'target',
  use: 'read' | 'load',
): AccessProblem[] {
  const problems: AccessProblem[] = [];
  const filtered = filteredTables(access);
  if (filtered.length > 0) {
    problems.push({
      code: 'ROW_SECURITY_FILTERS',
      detail:
        use === 'read'
          ? `row-level security would hide rows of ${filtered.length} table(s) from the ${side} role "${access.role.name}": they cannot be copied or verified whole`
          : `row-level security applies to the ${side} role "${access.role.name}" on ${filtered.length} table(s): COPY FROM refuses to load them`,
      hint: rowSecurityHint(side),
      items: filtered.map(
        (t) => `${displayName(t.schema, t.name)}${t.forced ? ' (FORCE)' : ''}: ${bypassReason(access, t)}`,
      ),
    });
  }
  if (use === 'read' && access.unreadable.length > 0) {
    problems.push({
      code: 'TABLE_NOT_READABLE',
      detail: `the ${side} role "${access.role.name}" may not read ${access.unreadable.length} table(s)`,
      hint: selectHint(side),
      items: access.unreadable.map((t) => displayName(t.schema, t.name)),
    });
  }
  return problems;
}
