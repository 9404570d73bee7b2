/**
 * The database itself, as `pg_dump --create` writes it: CREATE DATABASE with the source's
 * encoding, locale and collation provider (libc, ICU, builtin), then its owner, comment,
 * connection limit, settings (`ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE … SET`) and
 * privileges. Read from the source's catalog rather than from a dump, so that what the
 * target cannot take (an owner or grantee role it lacks) is left out with a warning instead
 * of failing halfway. Checked on PostgreSQL 13 to 18 (pg_database grew datlocprovider and
 * daticulocale in 15, daticurules in 16, and renamed daticulocale to datlocale in 17).
 *
 * Also the comparison `precheck` and `clone` report: a target database whose encoding or
 * collation differs from the source's sorts text differently, so its indexes order rows
 * differently and a unique index may refuse values the source holds as distinct.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';
import { SQLSTATE } from '../sqlstate.js';

export type LocaleProvider = 'libc' | 'icu' | 'builtin';

export interface DatabaseDefinition {
  name: string;
  owner: string;
  encoding: string;
  provider: LocaleProvider;
  collate: string;
  ctype: string;
  /** ICU locale (provider icu) or builtin locale (provider builtin). */
  locale: string | null;
  icuRules: string | null;
  connectionLimit: number;
  isTemplate: boolean;
  tablespace: string;
  comment: string | null;
  /** `ALTER DATABASE … SET` (role null) and `ALTER ROLE … IN DATABASE … SET`, as pg_db_role_setting keeps them ("name=value"). */
  settings: { role: string | null; config: string[] }[];
  /** The database's ACL, one privilege a row (grantee null = PUBLIC); null when it is the default. */
  grants: { grantee: string | null; privilege: string; grantable: boolean }[] | null;
}

const PROVIDERS: Record<string, LocaleProvider> = { c: 'libc', i: 'icu', b: 'builtin' };

/** The definition of the database `client` is connected to. */
export async function readDatabaseDefinition(client: pg.Client, major: number): Promise<DatabaseDefinition> {
  const provider = major >= 15 ? 'd.datlocprovider' : `'c'::"char"`;
  const locale = major >= 17 ? 'd.datlocale' : major >= 15 ? 'd.daticulocale' : 'NULL::text';
  const rules = major >= 16 ? 'd.daticurules' : 'NULL::text';
  const res = await client.query<{
    name: string;
    owner: string;
    encoding: string;
    provider: string;
    collate: string;
    ctype: string;
    locale: string | null;
    icu_rules: string | null;
    connection_limit: number;
    is_template: boolean;
    tablespace: string;
    comment: string | null;
    default_acl: boolean;
  }>(
    `SELECT d.datname AS name,
            pg_catalog.pg_get_userbyid(d.datdba) AS owner,
            pg_catalog.pg_encoding_to_char(d.encoding) AS encoding,
            ${provider}::text AS provider,
            d.datcollate AS collate,
            d.datctype AS ctype,
            ${locale} AS locale,
            ${rules} AS icu_rules,
            d.datconnlimit AS connection_limit,
            d.datistemplate AS is_template,
            t.spcname AS tablespace,
            pg_catalog.shobj_description(d.oid, 'pg_database') AS comment,
            d.datacl IS NULL AS default_acl
     FROM pg_catalog.pg_database d
     JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
     WHERE d.datname = pg_catalog.current_database()`,
  );
  const d = res.rows[0]!;
  const settings = await client.query<{ role: string | null; config: string[] }>(
    `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(s.setrole) END AS role,
            s.setconfig AS config
     FROM pg_catalog.pg_db_role_setting s
     JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
     WHERE d.datname = pg_catalog.current_database()
     ORDER BY s.setrole <> 0, 1`,
  );
  const grants = d.default_acl
    ? null
    : (
        await client.query<{ grantee: string | null; privilege: string; grantable: boolean }>(
          `SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS grantee,
                  a.privilege_type AS privilege,
                  a.is_grantable AS grantable
           FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
           WHERE d.datname = pg_catalog.current_database()
           ORDER BY 1 NULLS FIRST, 2`,
        )
      ).rows;
  return {
    name: d.name,
    owner: d.owner,
    encoding: d.encoding,
    provider: PROVIDERS[d.provider] ?? 'libc',
    collate: d.collate,
    ctype: d.ctype,
    locale: d.locale,
    icuRules: d.icu_rules,
    connectionLimit: d.connection_limit,
    isTemplate: d.is_template,
    tablespace: d.tablespace,
    comment: d.comment,
    settings: settings.rows,
    grants,
  };
}

/** "UTF8, libc C.UTF-8" / "UTF8, icu de-DE (ctype C.UTF-8)": how a database sorts and encodes text. */
export function describeCollation(d: DatabaseDefinition): string {
  const libc = d.collate === d.ctype ? d.collate : `collate ${d.collate}, ctype ${d.ctype}`;
  if (d.provider === 'libc') return `${d.encoding}, libc ${libc}`;
  const rules = d.icuRules ? ` with rules ${JSON.stringify(d.icuRules)}` : '';
  return `${d.encoding}, ${d.provider} ${d.locale ?? '?'}${rules} (libc ${libc})`;
}

/**
 * What differs between two databases' encodings and collations (what, and why it matters),
 * or undefined when nothing does. The libc part of an ICU or builtin database (its ctype)
 * counts too: it decides upper()/lower() and character classes in regular expressions.
 */
export function collationMismatch(
  source: DatabaseDefinition,
  target: DatabaseDefinition,
): { message: string; hint: string } | undefined {
  const differs =
    source.encoding !== target.encoding ||
    source.provider !== target.provider ||
    source.collate !== target.collate ||
    source.ctype !== target.ctype ||
    (source.provider !== 'libc' && source.locale !== target.locale) ||
    (source.icuRules ?? '') !== (target.icuRules ?? '');
  if (!differs) return undefined;
  const why =
    source.encoding !== target.encoding
      ? 'text is stored in another encoding (characters the target encoding lacks fail to load) and sorts differently'
      : 'text sorts differently';
  return {
    message:
      `the target database ${quoteIdent(target.name)} is ${describeCollation(target)}, the source ${quoteIdent(source.name)} is ${describeCollation(source)}: ` +
      `${why}, so indexes on text keep another order, ORDER BY and range scans return another order, and a unique index may refuse values the source holds as distinct (or accept ones it refuses)`,
    hint: `create the target database with the source's encoding and locale: clone or start with --create-database does, when the database does not exist yet`,
  };
}

export interface CreateDatabaseOptions {
  /** The database's name on the target (it may differ from the source's). */
  name: string;
  targetMajor: number;
  /** Roles that exist on the target: owners and grantees not among them are left out, with a warning. */
  targetRoles: ReadonlySet<string>;
  /** As pg_restore --no-owner: the database belongs to the role that creates it. */
  noOwner: boolean;
  /** As pg_restore --no-privileges: no GRANT/REVOKE. */
  noPrivileges: boolean;
  /** The tablespace to create it in (the source's, mapped); undefined = the target's default. */
  tablespace?: string | undefined;
}

export interface CreateDatabasePlan {
  /** CREATE DATABASE: runs alone, outside any transaction. */
  create: string;
  /** Owner, comment, properties, settings and privileges, in pg_dump's order. */
  after: string[];
  /** What was left out and why. */
  warnings: string[];
}

/** Parameters that hold lists: pg_dump quotes their elements one by one (dumputils.c, variable_is_guc_list_quote). */
const LIST_SETTINGS = new Set([
  'local_preload_libraries',
  'search_path',
  'session_preload_libraries',
  'shared_preload_libraries',
  'temp_tablespaces',
  'unix_socket_directories',
]);

/** Splits a list setting as the server keeps it (`"$user", public`) into its elements. */
export function splitListSetting(value: string): string[] {
  const items: string[] = [];
  let i = 0;
  while (i < value.length) {
    while (value[i] === ' ') i++;
    let item = '';
    if (value[i] === '"') {
      i++;
      while (i < value.length) {
        if (value[i] === '"') {
          if (value[i + 1] !== '"') {
            i++;
            break;
          }
          i++;
        }
        item += value[i++];
      }
      while (i < value.length && value[i] !== ',') i++;
    } else {
      const end = value.indexOf(',', i);
      item = value.slice(i, end < 0 ? value.length : end).trim();
      i = end < 0 ? value.length : end;
    }
    items.push(item);
    i++; // the comma
  }
  return items;
}

/** `SET name TO value` of one pg_db_role_setting entry ("name=value"), quoted as pg_dump does. */
export function settingClause(entry: string): string {
  const eq = entry.indexOf('=');
  const name = entry.slice(0, eq);
  const value = entry.slice(eq + 1);
  const values = LIST_SETTINGS.has(name.toLowerCase()) ? splitListSetting(value) : [value];
  return `SET ${quoteIdent(name)} TO ${values.map((v) => quoteLiteral(v).trim()).join(', ')}`;
}

/**
 * The statements that create the source's database on the target, as pg_dump --create
 * writes them, leaving out with a warning what the target cannot take.
 *
 * @example
 *   databaseCreationSql(def, { name: 'shop', targetMajor: 17, targetRoles, noOwner: false, noPrivileges: false })
 *   // create: CREATE DATABASE "shop" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'C.UTF-8' ICU_LOCALE = 'de-DE'
 *   // after:  ALTER DATABASE "shop" OWNER TO "app", COMMENT ON DATABASE …, ALTER DATABASE "shop" SET "work_mem" TO '8MB', GRANT …
 */
export function databaseCreationSql(def: DatabaseDefinition, o: CreateDatabaseOptions): CreateDatabasePlan {
  const db = quoteIdent(o.name);
  const warnings: string[] = [];
  const needs = (major: number, what: string) => {
    if (o.targetMajor < major) {
      throw new PgconvoyError(
        `the source database uses ${what}, which PostgreSQL ${o.targetMajor} (the target) does not have (it came in ${major})`,
        {
          code: 'DATABASE_LOCALE',
          exitCode: EXIT.target,
          hint: `create the target database yourself with a locale the target has (CREATE DATABASE ${db} TEMPLATE template0 ENCODING ${quoteLiteral(def.encoding).trim()} LOCALE '…'), then run clone again without --create-database`,
        },
      );
    }
  };
  const parts = [`TEMPLATE = template0`, `ENCODING = ${quoteLiteral(def.encoding).trim()}`];
  if (def.provider !== 'libc') needs(def.provider === 'icu' ? 15 : 17, `the ${def.provider} locale provider`);
  if (def.icuRules) needs(16, 'ICU rules');
  if (o.targetMajor >= 15) parts.push(`LOCALE_PROVIDER = ${def.provider}`);
  if (def.collate === def.ctype) parts.push(`LOCALE = ${quoteLiteral(def.collate).trim()}`);
  else
    parts.push(
      `LC_COLLATE = ${quoteLiteral(def.collate).trim()}`,
      `LC_CTYPE = ${quoteLiteral(def.ctype).trim()}`,
    );
  if (def.provider === 'icu' && def.locale) parts.push(`ICU_LOCALE = ${quoteLiteral(def.locale).trim()}`);
  if (def.provider === 'builtin' && def.locale)
    parts.push(`BUILTIN_LOCALE = ${quoteLiteral(def.locale).trim()}`);
  if (def.icuRules) parts.push(`ICU_RULES = ${quoteLiteral(def.icuRules).trim()}`);
  if (o.tablespace && o.tablespace !== 'pg_default') parts.push(`TABLESPACE = ${quoteIdent(o.tablespace)}`);

  const after: string[] = [];
  const missing = (role: string) => !o.targetRoles.has(role);
  if (!o.noOwner) {
    if (missing(def.owner)) {
      warnings.push(
        `the database's owner ${quoteIdent(def.owner)} does not exist on the target: ${db} belongs to the role that created it (create the role, or use --roles, then ALTER DATABASE ${db} OWNER TO ${quoteIdent(def.owner)})`,
      );
    } else {
      after.push(`ALTER DATABASE ${db} OWNER TO ${quoteIdent(def.owner)}`);
    }
  }
  if (def.comment !== null) after.push(`COMMENT ON DATABASE ${db} IS ${quoteLiteral(def.comment).trim()}`);
  if (def.connectionLimit !== -1)
    after.push(`ALTER DATABASE ${db} CONNECTION LIMIT = ${def.connectionLimit}`);
  if (def.isTemplate) after.push(`ALTER DATABASE ${db} IS_TEMPLATE = true`);
  for (const s of def.settings) {
    if (s.role !== null && missing(s.role)) {
      warnings.push(
        `settings of role ${quoteIdent(s.role)} in the database left out: the role does not exist on the target (${s.config.join(', ')})`,
      );
      continue;
    }
    const subject = s.role === null ? `DATABASE ${db}` : `ROLE ${quoteIdent(s.role)} IN DATABASE ${db}`;
    for (const entry of s.config) after.push(`ALTER ${subject} ${settingClause(entry)}`);
  }
  if (def.grants && !o.noPrivileges) {
    // Start from nothing, as pg_dump does for a non-default ACL, then grant what the source grants.
    after.push(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
    if (!o.noOwner && !missing(def.owner))
      after.push(`REVOKE ALL ON DATABASE ${db} FROM ${quoteIdent(def.owner)}`);
    for (const g of def.grants) {
      if (g.grantee !== null && missing(g.grantee)) {
        warnings.push(
          `GRANT ${g.privilege} ON DATABASE ${db} TO ${quoteIdent(g.grantee)} left out: the role does not exist on the target`,
        );
        continue;
      }
      const to = g.grantee === null ? 'PUBLIC' : quoteIdent(g.grantee);
      after.push(`GRANT ${g.privilege} ON DATABASE ${db} TO ${to}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
    }
  }
  return { create: `CREATE DATABASE ${db} WITH ${parts.join(' ')}`, after, warnings };
}

/**
 * Creates the source's database on the target as databaseCreationSql() writes it, through
 * `admin` (a session on another database of the target). All or nothing: when a statement
 * after CREATE DATABASE fails, the database (new and empty) is dropped again, so the next run
 * creates it whole instead of finding a half-configured one and leaving it so.
 * Returns the warnings (roles left out).
 */
export async function createDatabaseLike(
  source: pg.Client,
  sourceMajor: number,
  admin: pg.Client,
  o: Omit<CreateDatabaseOptions, 'targetRoles'>,
): Promise<string[]> {
  const def = await readDatabaseDefinition(source, sourceMajor);
  const plan = databaseCreationSql(def, { ...o, targetRoles: await readRoleNames(admin) });
  const failed = (statement: string, err: unknown) => {
    const f = serverErrorFields(err);
    return new PgconvoyError(
      `creating the target database ${quoteIdent(o.name)} failed at: ${statement}: ${errorMessage(err)}${f?.code ? ` (SQLSTATE ${f.code})` : ''}`,
      {
        code: 'DATABASE_CREATE_FAILED',
        exitCode: EXIT.target,
        cause: err,
        hint:
          f?.code === SQLSTATE.insufficientPrivilege
            ? 'the target role needs CREATEDB (and membership in the owner role to give it the database): connect as a role that has them, or create the database yourself and run again without --create-database'
            : /locale|collation/i.test(errorMessage(err))
              ? `the target server lacks the source's locale (${describeCollation(def)}): install it there (locale-gen, or ICU), or create the database yourself with a locale it has and run again without --create-database`
              : 'fix the cause on the target and run the same command again (nothing was left behind)',
        details: { statement, ...(f?.code ? { sqlstate: f.code } : {}) },
      },
    );
  };
  try {
    await admin.query(plan.create);
  } catch (err) {
    throw failed(plan.create, err);
  }
  let current = '';
  try {
    await admin.query('BEGIN');
    for (current of plan.after) await admin.query(current);
    await admin.query('COMMIT');
  } catch (err) {
    await admin.query('ROLLBACK').catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(o.name)}`).catch(() => undefined);
    throw failed(current, err);
  }
  return plan.warnings;
}

/** Names of the roles that exist on a server. */
export async function readRoleNames(client: pg.Client): Promise<Set<string>> {
  const res = await client.query<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles');
  return new Set(res.rows.map((r) => r.rolname));
}
