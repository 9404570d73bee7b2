/**
 * Before any row moves into a target laid out by the operator (`--schema skip`): does every
 * row of the source fit a partition of the target's partitioned table of the same name?
 * Without this, a row that fits none fails its job only once it is reached, after the rest
 * was loaded (see copy/partitioned-target.ts, which stays the last line of defence).
 *
 * Checked only where it is cheap and exact enough to be worth it: a target table partitioned
 * by LIST or RANGE on one plain column, with no DEFAULT partition (which takes any row), and a
 * source table that has that column. The source's candidate values are its distinct values
 * (LIST) or its minimum and maximum (RANGE: the rows beyond the first or last partition, the
 * usual "next month's partition is missing"; a gap between two partitions is found by the
 * load), plus NULL when a row has one. They are read with one probe per value through a
 * btree index led by the column, or by one scan when the table is small; a big table without
 * such an index is not prechecked. The target judges the values itself: its own partition
 * constraints (pg_get_partition_constraintdef, the server's deparsed text, run only on the
 * server it came from) are evaluated against the values cast to the target column's type,
 * so the bounds mean what they mean to the router. Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { displayIdent, displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import type { TableRef } from './chunk.js';

/** A source table read whole for its key values when it has no index on the key. */
const SCAN_BYTES = 64 * 1024 * 1024;
/** Distinct LIST values read at most; more are left to the load. */
const MAX_VALUES = 1000;
/** Misfit values named per table. */
const SHOWN_VALUES = 10;

export interface PartitionMisfit {
  table: TableRef;
  column: string;
  /** The source's values no partition takes (NULL as null), at most SHOWN_VALUES. */
  values: (string | null)[];
}

interface TargetKey {
  schema: string;
  name: string;
  strategy: 'l' | 'r';
  column: string;
  type: string;
  /** Each partition's constraint, as SQL over the key column. */
  bounds: string[];
}

// Top-level partitioned tables keyed on one plain column, without a default partition.
const TARGET_KEYS_SQL = `
SELECT n.nspname AS schema, c.relname AS name, pt.partstrat AS strategy,
       a.attname AS column, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       COALESCE((SELECT pg_catalog.array_agg(pg_catalog.pg_get_partition_constraintdef(i.inhrelid))
                 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid), '{}') AS bounds
FROM pg_catalog.pg_partitioned_table pt
JOIN pg_catalog.pg_class c ON c.oid = pt.partrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
WHERE pt.partnatts = 1 AND pt.partstrat IN ('l', 'r') AND pt.partdefid = 0 AND NOT c.relispartition`;

// The source table's size, and whether a valid, whole (not partial) btree index leads with the column.
const SOURCE_TABLE_SQL = `
SELECT pg_catalog.pg_table_size(c.oid) AS bytes,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_catalog.pg_am am ON am.oid = ic.relam
               WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum AND i.indpred IS NULL
                 AND i.indisvalid AND am.amname = 'btree') AS indexed
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND c.relkind = 'r'`;

/**
 * The source tables (of `tables`) with rows no partition of the target's table takes, with
 * those values; tables not checked (not cheap, or nothing to check) are left out. `skipped`
 * hears of each table that would have been checked if it were cheap.
 */
export async function findPartitionMisfits(
  source: pg.Client,
  target: pg.Client,
  tables: readonly TableRef[],
  options: {
    /** A source column left behind (`--exclude-column`): the target's default fills it. */
    leftOut?: (table: TableRef, column: string) => boolean;
    skipped?: (table: TableRef, why: string) => void;
  } = {},
): Promise<PartitionMisfit[]> {
  const keys = new Map(
    (await target.query<TargetKey>(TARGET_KEYS_SQL)).rows.map((k) => [JSON.stringify([k.schema, k.name]), k]),
  );
  const misfits: PartitionMisfit[] = [];
  for (const table of tables) {
    const key = keys.get(JSON.stringify([table.schema, table.name]));
    if (!key || options.leftOut?.(table, key.column)) continue;
    const values = await candidateValues(source, table, key, options.skipped ?? (() => undefined));
    if (values === undefined) continue;
    const bad = await valuesWithoutPartition(target, key, values);
    if (bad.length > 0) misfits.push({ table, column: key.column, values: bad.slice(0, SHOWN_VALUES) });
  }
  return misfits;
}

/** The values to try, as text in ISO forms; undefined when reading them would not be cheap. */
async function candidateValues(
  source: pg.Client,
  table: TableRef,
  key: TargetKey,
  skipped: (table: TableRef, why: string) => void,
): Promise<(string | null)[] | undefined> {
  const info = (
    await source.query<{ bytes: string; indexed: boolean }>(SOURCE_TABLE_SQL, [
      table.schema,
      table.name,
      key.column,
    ])
  ).rows[0];
  // No such column on the source: the target's default fills it, whatever partition that picks.
  if (!info) return undefined;
  if (!info.indexed && Number(info.bytes) > SCAN_BYTES) {
    skipped(
      table,
      `no index on the source leads with ${displayIdent(key.column)}, and reading the whole table to check it is not worth it: a row that fits no partition stops its load instead`,
    );
    return undefined;
  }
  const t = qualifiedName(table.schema, table.name);
  const c = quoteIdent(key.column);
  // LIST: every distinct value; through the index, one probe per value (a "loose index scan").
  const listSql = info.indexed
    ? `WITH RECURSIVE d(v) AS (
         (SELECT ${c} FROM ONLY ${t} WHERE ${c} IS NOT NULL ORDER BY ${c} LIMIT 1)
         UNION ALL
         SELECT (SELECT ${c} FROM ONLY ${t} WHERE ${c} > d.v ORDER BY ${c} LIMIT 1) FROM d WHERE d.v IS NOT NULL)
       SELECT v::text AS v FROM d WHERE v IS NOT NULL LIMIT ${MAX_VALUES}`
    : `SELECT DISTINCT ${c}::text AS v FROM ONLY ${t} WHERE ${c} IS NOT NULL LIMIT ${MAX_VALUES}`;
  // RANGE: the ends (min and max use the index when there is one).
  const rangeSql = `SELECT v FROM (SELECT min(${c})::text AS v FROM ONLY ${t}
                                   UNION ALL SELECT max(${c})::text FROM ONLY ${t}) m WHERE v IS NOT NULL`;
  // Text forms the target reads back whatever the two servers' DateStyle.
  await source.query('BEGIN READ ONLY');
  try {
    await source.query("SET LOCAL DateStyle = 'ISO'; SET LOCAL IntervalStyle = 'postgres'");
    const values = (await source.query<{ v: string }>(key.strategy === 'l' ? listSql : rangeSql)).rows.map(
      (r) => r.v,
    );
    const nulls = await source.query(`SELECT 1 FROM ONLY ${t} WHERE ${c} IS NULL LIMIT 1`);
    await source.query('COMMIT');
    return nulls.rowCount ? [...values, null] : values;
  } catch (err) {
    await source.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The values (of `values`) that no partition's constraint accepts, judged by the target. */
async function valuesWithoutPartition(
  target: pg.Client,
  key: TargetKey,
  values: (string | null)[],
): Promise<(string | null)[]> {
  if (values.length === 0) return [];
  // No partition at all: nothing fits.
  const fits = key.bounds.length > 0 ? key.bounds.map((b) => `(${b})`).join(' OR ') : 'false';
  // The inner select has only the key column in scope, so the constraint's bare column name
  // means the candidate value, whatever the column is called.
  const res = await target.query<{ v: string | null }>(
    `SELECT u.v FROM pg_catalog.unnest($1::text[]) AS u(v)
     WHERE (SELECT (${fits}) IS NOT TRUE FROM (SELECT u.v::${key.type} AS ${quoteIdent(key.column)}) k)`,
    [values],
  );
  return res.rows.map((r) => r.v);
}

/** One misfit as a user reads it: `public.events: partition key (region) = (ap), (NULL)`. */
export function describeMisfit(m: PartitionMisfit): string {
  const values = m.values.map((v) => `(${v === null ? 'NULL' : v})`).join(', ');
  return `${displayName(m.table.schema, m.table.name)}: partition key (${displayIdent(m.column)}) = ${values}`;
}

/** What to do about misfits: a partition for the values, or a default one. */
export function misfitHint(misfits: readonly PartitionMisfit[]): string {
  const name = misfits[0] ? displayName(misfits[0].table.schema, misfits[0].table.name) : 'the table';
  return `on the target, add partitions for those values (CREATE TABLE … PARTITION OF ${name} FOR VALUES …) or a default one (CREATE TABLE … PARTITION OF ${name} DEFAULT), then run the same command again`;
}

/** Refuses the load of tables with rows no partition takes, naming each value and the fix. */
export function partitionMisfitError(misfits: readonly PartitionMisfit[]): PgconvoyError {
  const first = misfits[0]!;
  const what =
    misfits.length === 1 ? displayName(first.table.schema, first.table.name) : `${misfits.length} tables`;
  return new PgconvoyError(
    `no partition of ${what} on the target accepts rows of the source, nothing was loaded: ${misfits.map(describeMisfit).join('; ')}`,
    {
      code: 'NO_PARTITION_FOR_ROW',
      exitCode: EXIT.target,
      hint: misfitHint(misfits),
      details: {
        tables: misfits.map((m) => ({
          table: displayName(m.table.schema, m.table.name),
          column: m.column,
          values: m.values,
        })),
      },
    },
  );
}
