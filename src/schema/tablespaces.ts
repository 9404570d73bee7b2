/**
 * Tablespaces in the schema: pg_dump records each table's, index's and materialized view's
 * tablespace, and pg_restore sets it with `SET default_tablespace = name;` before the item.
 * The target's tablespaces are often not the source's (other disks, a managed service with
 * none), so:
 *
 * - `--no-tablespaces` (pg_restore's): everything goes into the target database's default.
 * - `--tablespace-map OLD=NEW`: pg_restore's SET lines for OLD name NEW instead. Only those
 *   lines are touched, recognised by their exact form and position (right before the comment
 *   header pg_restore writes for each item, or before the other session SETs it writes
 *   there), never anything inside an item's SQL.
 * - Otherwise a tablespace the schema names that the target lacks stops the clone before
 *   anything is written, naming it and the three ways out (instead of failing mid-schema).
 *
 * Checked with pg_dump/pg_restore 15 on sources 13 to 15.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { quoteIdent, splitIdentifiers } from '../util/sql.js';
import { userSchemas } from '../util/catalog-sql.js';

export type TablespaceMap = ReadonlyMap<string, string>;

/** `--tablespace-map OLD=NEW` values (repeatable) as a map; names as SQL reads them. */
export function parseTablespaceMap(values: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const value of values) {
    const bad = (why: string) =>
      new PgconvoyError(`--tablespace-map "${value}": ${why}`, {
        code: 'BAD_ARGUMENT',
        exitCode: EXIT.usage,
        hint: 'write it as OLD=NEW, e.g. --tablespace-map fast_ssd=pg_default (quote names with capitals: \'"Fast"=fast\')',
      });
    const eq = value.lastIndexOf('=');
    if (eq <= 0 || eq === value.length - 1) throw bad('not OLD=NEW');
    const [from, to] = [value.slice(0, eq), value.slice(eq + 1)].map((part) => {
      const names = splitIdentifiers(part.trim(), bad);
      if (names.length !== 1 || !names[0]) throw bad('a tablespace name has no dots');
      return names[0];
    });
    if (map.has(from!)) throw bad(`"${from}" is mapped twice`);
    map.set(from!, to!);
  }
  return map;
}

/**
 * pg_restore's `SET default_tablespace = …;` right before an item's header (after it maybe
 * its other session SETs, default_table_access_method): the only lines changed.
 */
const SET_BEFORE_ITEM =
  /^SET default_tablespace = ("(?:[^"]|"")*"|[^;\n]+);\n(?=(?:\nSET [^\n]*;\n)*\n--\n-- Name: )/gm;

/** The SQL pg_restore printed, with the tablespaces of `map` renamed. */
export function mapTablespaceSql(sql: string, map: TablespaceMap): string {
  if (map.size === 0) return sql;
  return sql.replace(SET_BEFORE_ITEM, (line, written: string) => {
    if (written === "''") return line;
    const name = written.startsWith('"') ? written.slice(1, -1).replace(/""/g, '"') : written;
    const mapped = map.get(name);
    return mapped === undefined ? line : `SET default_tablespace = ${quoteIdent(mapped)};\n`;
  });
}

/**
 * The tablespaces the source's tables, indexes and materialized views live in (other than the
 * database's default, which pg_dump does not name), outside `excludeSchemas`.
 */
export async function readSchemaTablespaces(client: pg.Client, excludeSchemas: string[]): Promise<string[]> {
  const res = await client.query<{ name: string }>(
    `SELECT DISTINCT t.spcname AS name
     FROM pg_catalog.pg_class c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace
     WHERE c.reltablespace <> 0
       AND c.relkind IN ('r', 'p', 'i', 'I', 'm')
       AND ${userSchemas()}
       AND n.nspname <> ALL ($1::text[])
     ORDER BY 1`,
    [excludeSchemas],
  );
  return res.rows.map((r) => r.name);
}

/**
 * Refuses, before anything is written, tablespaces that `names` (after `map`) name and the
 * target lacks.
 */
export async function checkTargetTablespaces(
  target: pg.Client,
  names: readonly string[],
  map: TablespaceMap,
): Promise<void> {
  const wanted = [...new Set(names.map((n) => map.get(n) ?? n))];
  if (wanted.length === 0) return;
  const res = await target.query<{ spcname: string }>('SELECT spcname FROM pg_catalog.pg_tablespace');
  const have = new Set(res.rows.map((r) => r.spcname));
  const missing = wanted.filter((n) => !have.has(n));
  if (missing.length === 0) return;
  const from = (n: string) => [...map].find(([, to]) => to === n)?.[0];
  throw new PgconvoyError(
    `the schema puts tables or indexes in tablespace(s) the target does not have: ${missing
      .map((n) => (from(n) ? `${quoteIdent(n)} (mapped from ${quoteIdent(from(n)!)})` : quoteIdent(n)))
      .join(', ')}`,
    {
      code: 'TABLESPACE_MISSING',
      exitCode: EXIT.target,
      hint: `create them on the target (CREATE TABLESPACE ${quoteIdent(missing[0]!)} LOCATION '/path'), or map them to ones it has (--tablespace-map ${missing[0]}=pg_default), or leave tablespaces out (--no-tablespaces)`,
      details: { tablespaces: missing },
    },
  );
}
