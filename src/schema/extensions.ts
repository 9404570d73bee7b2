/**
 * Extensions between the two servers:
 *
 * - `extensionGaps`: the source's extensions the target server cannot install (no control
 *   file: a package is missing) or has not installed in the database yet. `clone` and `start`
 *   refuse the first before anything is written (the schema's CREATE EXTENSION would fail
 *   halfway), with the package to install; `precheck` lists both.
 * - `copyExtensionConfigData`: the rows of extension configuration tables (marked with
 *   pg_extension_config_dump), which CREATE EXTENSION does not bring: as pg_dump, only the
 *   rows the extension's filter condition selects (its own rows come with CREATE EXTENSION on
 *   the target), read in the copy's snapshot, in one transaction with the ledger's mark.
 *
 * Checked on PostgreSQL 13 to 18.
 */
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { pipeline } from 'node:stream/promises';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { qualifiedName, quoteIdent } from '../util/sql.js';

export interface ExtensionGaps {
  /** The source's extensions (plpgsql aside), with their versions. */
  used: { name: string; version: string }[];
  /** Not available on the target server at all. */
  missing: { name: string; version: string }[];
  /** Available there, not created in the target database yet. */
  notInstalled: { name: string; version: string; targetDefault: string | null }[];
}

export async function extensionGaps(source: pg.Client, target: pg.Client): Promise<ExtensionGaps> {
  const used = await source.query<{ name: string; version: string }>(
    "SELECT e.extname AS name, e.extversion AS version FROM pg_catalog.pg_extension e WHERE e.extname <> 'plpgsql' ORDER BY 1",
  );
  const available = await target.query<{
    name: string;
    installed: string | null;
    default_version: string | null;
  }>(
    'SELECT a.name, a.installed_version AS installed, a.default_version FROM pg_catalog.pg_available_extensions a',
  );
  const onTarget = new Map(available.rows.map((r) => [r.name, r]));
  return {
    used: used.rows,
    missing: used.rows.filter((e) => !onTarget.has(e.name)),
    notInstalled: used.rows
      .filter((e) => onTarget.has(e.name) && !onTarget.get(e.name)?.installed)
      .map((e) => ({ ...e, targetDefault: onTarget.get(e.name)?.default_version ?? null })),
  };
}

/** Extensions shipped with PostgreSQL itself (contrib). */
const CONTRIB = new Set(
  (
    'amcheck autoinc bloom btree_gin btree_gist citext cube dblink dict_int dict_xsyn earthdistance file_fdw ' +
    'fuzzystrmatch hstore insert_username intagg intarray isn lo ltree moddatetime old_snapshot pageinspect ' +
    'pg_buffercache pg_freespacemap pg_prewarm pg_stat_statements pg_surgery pg_trgm pg_visibility pg_walinspect ' +
    'pgcrypto pgrowlocks pgstattuple postgres_fdw refint seg sslinfo tablefunc tcn tsm_system_rows ' +
    'tsm_system_time unaccent uuid-ossp xml2 plperl plperlu plpython3u pltcl pltclu'
  ).split(' '),
);

/** Where the extension comes from, for the target's major: the package to install. */
export function extensionPackageHint(name: string, targetMajor: number): string {
  if (name === 'adminpack' && targetMajor >= 17)
    return 'adminpack was removed in PostgreSQL 17: drop it from the source (DROP EXTENSION adminpack)';
  if (CONTRIB.has(name))
    return `${name} is part of PostgreSQL's contrib (Debian/Ubuntu: postgresql-${targetMajor}; RHEL: postgresql${targetMajor}-contrib; managed services: allow it in the parameter group)`;
  const known: Record<string, string> = {
    postgis: `postgresql-${targetMajor}-postgis-3`,
    vector: `postgresql-${targetMajor}-pgvector`,
    timescaledb: 'timescaledb-2-postgresql-' + targetMajor,
    pg_partman: `postgresql-${targetMajor}-partman`,
    pg_cron: `postgresql-${targetMajor}-cron`,
    pg_repack: `postgresql-${targetMajor}-repack`,
  };
  const pkg = known[name] ?? `postgresql-${targetMajor}-${name.replace(/_/g, '-')}`;
  return `install ${name}'s package on the target server (Debian/Ubuntu: ${pkg}; RHEL: ${name}_${targetMajor}; managed services: allow it in the parameter group)`;
}

/** The refusal for extensions the target server lacks. */
export function missingExtensionsError(gaps: ExtensionGaps, targetMajor: number): PgconvoyError {
  return new PgconvoyError(
    `the source uses ${gaps.missing.length} extension(s) the target server does not have: ${gaps.missing
      .map((e) => `${e.name} ${e.version}`)
      .join(', ')}; the schema's CREATE EXTENSION would fail`,
    {
      code: 'EXTENSION_MISSING',
      exitCode: EXIT.target,
      hint: `${gaps.missing.map((e) => extensionPackageHint(e.name, targetMajor)).join('; ')}; then run the same command again (nothing was written)`,
      details: { extensions: gaps.missing },
    },
  );
}

export interface ConfigTable {
  extension: string;
  schema: string;
  name: string;
  condition: string;
}

/** The source's extension configuration tables (sequences are set with the other sequences). */
export async function readExtensionConfigTables(source: pg.Client): Promise<ConfigTable[]> {
  const res = await source.query<ConfigTable>(
    `SELECT e.extname AS extension, n.nspname AS schema, c.relname AS name, coalesce(x.condition, '') AS condition
     FROM pg_catalog.pg_extension e
     CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition)) AS x (relid, condition)
     JOIN pg_catalog.pg_class c ON c.oid = x.relid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
     ORDER BY 1, 2, 3`,
  );
  return res.rows;
}

/**
 * Copies the rows of `tables` that their extension's condition selects, source (a session in
 * the copy's snapshot) to target, in the target's open transaction. Returns the rows copied.
 * The condition is the extension's own SQL (`WHERE NOT builtin`), as pg_dump runs it.
 */
export async function copyExtensionConfigData(
  source: pg.Client,
  target: pg.Client,
  tables: ConfigTable[],
): Promise<number> {
  let rows = 0;
  for (const t of tables) {
    const table = qualifiedName(t.schema, t.name);
    // By name, not position: the target's table comes from its own CREATE EXTENSION.
    const cols = await source.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       ORDER BY a.attnum`,
      [table],
    );
    const list = cols.rows.map((c) => quoteIdent(c.name)).join(', ');
    const out = source.query(copyTo(`COPY (SELECT ${list} FROM ONLY ${table} ${t.condition}) TO STDOUT`));
    const into = target.query(copyFrom(`COPY ${table} (${list}) FROM STDIN`));
    await pipeline(out, into);
    rows += Number(into.rowCount ?? 0);
  }
  return rows;
}
