/**
 * The source's tables as foreign tables on the target, in pgconvoy's private schema of the
 * remote server (remote-server.ts). Each is created with the source table's exact columns
 * (type with its modifier, NOT NULL, and a collation other than the type's, as postgres_fdw's
 * own IMPORT FOREIGN SCHEMA writes them), read from the source's catalog in the caller's
 * session. IMPORT FOREIGN SCHEMA itself is not used: it skips partitions (which the copy
 * reads one by one), and it puts tables of several source schemas with one name into one
 * target schema.
 *
 * A foreign table is named after its source table plus a hash of the qualified name
 * (`orders_1a2b3c4d`): names from different schemas never collide and stay under 63 bytes,
 * and a DBA still sees which table it is (its comment names the source table exactly).
 *
 * The collation matters for more than display: postgres_fdw sends a comparison to the source
 * only when the foreign column's collation is the source column's, and evaluates it on the
 * target otherwise. A chunk's `WHERE key >= … AND key < …` evaluated under another collation
 * could put a row into two chunks or none.
 *
 * Beware: postgres_fdw reads a remote table without ONLY, so a foreign table over an
 * inheritance parent returns its children's rows too. `hasChildren` says when that is so.
 *
 * Checked with PostgreSQL 13, 15 and 17 as the source and 17 as the target.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { TableRef } from '../plan/chunk.js';
import { qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';
import type { RemoteServerNames } from './remote-server.js';

export interface ForeignTable {
  /** The table on the source. */
  source: TableRef;
  /** The foreign table on the target, in the private schema. */
  foreign: TableRef;
  /** The columns as created (every column of the source table, in its order). */
  columns: string[];
  /** The source table is an inheritance parent: reading the foreign table reads its children too. */
  hasChildren: boolean;
}

export interface ForeignTableOptions {
  /**
   * Rows postgres_fdw fetches per round trip (its `fetch_size`, default 100): more rows mean
   * fewer round trips, and memory of about fetch_size × row width on the target.
   */
  fetchSize?: (table: TableRef, averageRowBytes: number) => number;
}

/** The foreign table's name for `table`: see the module comment. */
export function foreignTableName(table: TableRef): string {
  const hash = createHash('sha256').update(`${table.schema}.${table.name}`).digest('hex').slice(0, 8);
  // 63 bytes at most; cut by characters, leaving room for multi-byte ones.
  return `${[...table.name].slice(0, 40).join('').slice(0, 40)}_${hash}`;
}

const SOURCE_COLUMNS_SQL = `
SELECT n.nspname AS schema, c.relname AS name,
       EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid) AND c.relkind <> 'p' AS has_children,
       CASE WHEN c.reltuples > 0 THEN c.relpages::float8 * pg_catalog.current_setting('block_size')::int / c.reltuples
            ELSE 0 END AS row_bytes,
       pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) AS columns,
       pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS types,
       pg_catalog.array_agg(a.attnotnull ORDER BY a.attnum) AS not_null,
       pg_catalog.array_agg(CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                                 THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
                            END ORDER BY a.attnum) AS collations
  FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) WITH ORDINALITY AS wanted(schema, name, ord)
  JOIN pg_catalog.pg_namespace n ON n.nspname = wanted.schema
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.name
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 GROUP BY wanted.ord, n.nspname, c.relname, c.oid, c.relkind, c.relpages, c.reltuples
 ORDER BY wanted.ord`; // 13+; search_path is empty, so format_type qualifies every type outside pg_catalog

interface SourceColumnsRow {
  schema: string;
  name: string;
  has_children: boolean;
  row_bytes: number;
  columns: string[];
  types: string[];
  not_null: boolean[];
  collations: (string | null)[];
}

/**
 * (Re)creates a foreign table on `target` for each of `tables`, with the columns `source`
 * (a session on the source, in the snapshot that matters) reads in its catalog. A foreign
 * table that exists already is replaced, so a rerun sees the source's columns as they are.
 * One transaction. In the order of `tables`; a table the source does not have is left out.
 */
export async function createForeignTables(
  target: pg.Client,
  source: pg.Client,
  names: RemoteServerNames,
  tables: readonly TableRef[],
  options: ForeignTableOptions = {},
): Promise<ForeignTable[]> {
  const out: ForeignTable[] = [];
  if (tables.length === 0) return out;
  const res = await source.query<SourceColumnsRow>(SOURCE_COLUMNS_SQL, [
    tables.map((t) => t.schema),
    tables.map((t) => t.name),
  ]);
  const statements: string[] = [];
  for (const row of res.rows) {
    const sourceTable = { schema: row.schema, name: row.name };
    const foreign = { schema: names.schema, name: foreignTableName(sourceTable) };
    const relation = qualifiedName(foreign.schema, foreign.name);
    const columns = row.columns.map((column, i) => {
      const collation = row.collations[i];
      return `${quoteIdent(column)} ${row.types[i]!}${collation ? ` COLLATE ${collation}` : ''}${row.not_null[i] ? ' NOT NULL' : ''}`;
    });
    const tableOptions = [
      `schema_name ${quoteLiteral(row.schema)}`,
      `table_name ${quoteLiteral(row.name)}`,
      ...(options.fetchSize
        ? [
            `fetch_size ${quoteLiteral(String(Math.max(1, Math.round(options.fetchSize(sourceTable, row.row_bytes)))))}`,
          ]
        : []),
    ];
    statements.push(
      `DROP FOREIGN TABLE IF EXISTS ${relation}`,
      `CREATE FOREIGN TABLE ${relation} (${columns.join(', ')}) SERVER ${quoteIdent(names.server)} OPTIONS (${tableOptions.join(', ')})`,
      `COMMENT ON FOREIGN TABLE ${relation} IS ${quoteLiteral(`pgconvoy: the source's ${qualifiedName(row.schema, row.name)}`)}`,
    );
    out.push({ source: sourceTable, foreign, columns: row.columns, hasChildren: row.has_children });
  }
  await target.query('BEGIN');
  try {
    // A few hundred statements a round trip: thousands of tables in seconds.
    for (let i = 0; i < statements.length; i += 300) {
      await target.query(statements.slice(i, i + 300).join(';\n'));
    }
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return out;
}
