/**
 * What switch-first needs to know of each source table, read from the source's catalog:
 * size, the batch key, the columns a batch inserts, and what could keep the mode from being
 * correct (unique indexes, user triggers, foreign keys, partitioning, inheritance).
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';

export interface UniqueIndexInfo {
  name: string;
  columns: string[];
  /** One column filled from a sequence (serial/identity): switch-first sets it past the source's. */
  sequenceFilled: boolean;
}

export interface ForeignKeyInfo {
  name: string;
  /** The table that holds the constraint. */
  schema: string;
  table: string;
  /** The referenced table. */
  refSchema: string;
  refTable: string;
  definition: string;
}

export interface SourceTable {
  schema: string;
  name: string;
  relkind: string;
  inheritance: boolean;
  partition: boolean;
  estimatedRows: number;
  bytes: number;
  key: string[] | null;
  columns: string[];
  uniqueIndexes: UniqueIndexInfo[];
  triggers: string[];
  foreignKeys: ForeignKeyInfo[];
}

// Ordinary and partitioned tables of the user's schemas, largest first. Extension members
// and pgconvoy's own schema are left out.
const TABLES_SQL = `
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
       c.relispartition AS partition,
       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid OR h.inhparent = c.oid)
         AND NOT c.relispartition AND c.relkind <> 'p' AS inheritance,
       GREATEST(c.reltuples, 0)::float8 AS estimated_rows,
       pg_catalog.pg_table_size(c.oid)::float8 AS bytes,
       ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             ORDER BY a.attnum)::text[] AS columns,
       ARRAY(SELECT t.tgname FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid = c.oid AND NOT t.tgisinternal ORDER BY 1)::text[] AS triggers
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND ${userSchemas()}
  AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY pg_catalog.pg_table_size(c.oid) DESC, 2, 3`;

// Unique indexes (primary keys included), valid, plain columns only for `columns`; whether
// the one column is filled by a sequence (identity, or a nextval() default).
const UNIQUE_SQL = `
SELECT i.indrelid AS table_oid, ic.relname AS name, i.indisprimary AS primary,
       i.indpred IS NULL AND NOT (0 = ANY (i.indkey::int2[])) AS plain,
       ARRAY(SELECT a.attname FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[] AS columns,
       (SELECT pg_catalog.bool_and(a.attnotnull) FROM pg_catalog.unnest(i.indkey::int2[]) k(attnum)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS not_null,
       i.indnatts = 1 AND EXISTS (
         SELECT 1 FROM pg_catalog.pg_attribute a
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           AND (a.attidentity <> '' OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')) AS sequence_filled
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE i.indisunique AND i.indisvalid AND i.indrelid = ANY ($1::pg_catalog.oid[])
ORDER BY i.indisprimary DESC, ic.relname`;

const FOREIGN_KEYS_SQL = `
SELECT x.conname AS name, n.nspname AS schema, c.relname AS table,
       rn.nspname AS ref_schema, r.relname AS ref_table,
       pg_catalog.pg_get_constraintdef(x.oid) AS definition
FROM pg_catalog.pg_constraint x
JOIN pg_catalog.pg_class c ON c.oid = x.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class r ON r.oid = x.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE x.contype = 'f' AND x.conparentid = 0
  AND (x.conrelid = ANY ($1::pg_catalog.oid[]) OR x.confrelid = ANY ($1::pg_catalog.oid[]))
ORDER BY 2, 3, 1`;

interface TableRow {
  oid: number;
  schema: string;
  name: string;
  relkind: string;
  partition: boolean;
  inheritance: boolean;
  estimated_rows: number;
  bytes: number;
  columns: string[];
  triggers: string[];
}

/** The source's tables, largest first. `search_path` must be empty (definitions come qualified). */
export async function readSourceTables(client: pg.Client, ledgerSchema: string): Promise<SourceTable[]> {
  const tables = (await client.query<TableRow>(TABLES_SQL, [ledgerSchema])).rows;
  const oids = tables.map((t) => t.oid);
  const uniques = (
    await client.query<{
      table_oid: number;
      name: string;
      primary: boolean;
      plain: boolean;
      columns: string[];
      not_null: boolean;
      sequence_filled: boolean;
    }>(UNIQUE_SQL, [oids])
  ).rows;
  const fks = (
    await client.query<{
      name: string;
      schema: string;
      table: string;
      ref_schema: string;
      ref_table: string;
      definition: string;
    }>(FOREIGN_KEYS_SQL, [oids])
  ).rows;
  return tables.map((t) => {
    const own = uniques.filter((u) => u.table_oid === t.oid);
    const keyIndex = own.find((u) => u.primary) ?? own.find((u) => u.plain && u.not_null);
    return {
      schema: t.schema,
      name: t.name,
      relkind: t.relkind,
      inheritance: t.inheritance,
      partition: t.partition,
      estimatedRows: t.estimated_rows,
      bytes: t.bytes,
      key: keyIndex ? keyIndex.columns : null,
      columns: t.columns,
      uniqueIndexes: own.map((u) => ({
        name: u.name,
        columns: u.columns,
        sequenceFilled: u.sequence_filled,
      })),
      triggers: t.triggers,
      foreignKeys: fks
        .filter(
          (f) =>
            (f.schema === t.schema && f.table === t.name) ||
            (f.ref_schema === t.schema && f.ref_table === t.name),
        )
        .map((f) => ({
          name: f.name,
          schema: f.schema,
          table: f.table,
          refSchema: f.ref_schema,
          refTable: f.ref_table,
          definition: f.definition,
        })),
    };
  });
}
