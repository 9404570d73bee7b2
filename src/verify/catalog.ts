/**
 * What verify compares besides rows: one side's catalog, read in that side's snapshot —
 * schemas, tables and their columns, indexes, constraints, triggers, views, sequences and
 * extensions. System schemas, pgconvoy's ledger schema and objects that belong to an
 * extension are left out. Every query was checked on PostgreSQL 13, 15 and 17 (needs 12+:
 * attgenerated).
 */
import type pg from 'pg';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';

/** Schemas that are never user data, and pgconvoy's ledger ($1). */
const USER_SCHEMA = (ns: string) => `${userSchemas(ns)} AND ${ns}.nspname <> $1`;

const SCHEMAS_SQL = `
SELECT n.nspname AS name
FROM pg_catalog.pg_namespace n
WHERE ${USER_SCHEMA('n')} AND ${notExtensionMember('pg_catalog.pg_namespace', 'n.oid')}
ORDER BY 1`;

const TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind, c.relispopulated AS populated,
       pn.nspname AS parent_schema, pc.relname AS parent_name,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid, true) END AS definition,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS partition_bound,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key,
       COALESCE((
         SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                  'name', a.attname,
                  'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                  'notNull', a.attnotnull,
                  'default', pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
                  'generated', a.attgenerated::text,
                  'identity', a.attidentity::text,
                  'base', (SELECT bt.typname
                           FROM pg_catalog.pg_type ty
                           JOIN pg_catalog.pg_type bt
                             ON bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
                           WHERE ty.oid = a.atttypid AND bt.typtype = 'b'
                             AND bt.typnamespace = 'pg_catalog'::pg_catalog.regnamespace)) ORDER BY a.attnum)
         FROM pg_catalog.pg_attribute a
         LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::pg_catalog.json) AS columns
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_inherits h ON c.relispartition AND h.inhrelid = c.oid
LEFT JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent
LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'm', 'v')
  AND ${USER_SCHEMA('n')}
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY 1, 2`;

const INDEXES_SQL = `
SELECT n.nspname AS schema, t.relname AS table, ic.relname AS name,
       pg_catalog.pg_get_indexdef(i.indexrelid) AS definition, i.indisvalid AS valid
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE t.relkind IN ('r', 'p', 'm')
  AND ${USER_SCHEMA('n')}
  AND ${notExtensionMember('pg_catalog.pg_class', 't.oid')}
ORDER BY 1, 2, 3`;

// contype n (NOT NULL, 18+) is left out: the columns' NOT NULL is compared with the columns.
const CONSTRAINTS_SQL = `
SELECT n.nspname AS schema, t.relname AS table, k.conname AS name, k.contype::text AS type,
       pg_catalog.pg_get_constraintdef(k.oid) AS definition, k.convalidated AS validated
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE k.contype IN ('p', 'u', 'f', 'c', 'x')
  AND ${USER_SCHEMA('n')}
  AND ${notExtensionMember('pg_catalog.pg_class', 't.oid')}
ORDER BY 1, 2, 3`;

const TRIGGERS_SQL = `
SELECT n.nspname AS schema, t.relname AS table, g.tgname AS name,
       pg_catalog.pg_get_triggerdef(g.oid) AS definition, g.tgenabled::text AS enabled
FROM pg_catalog.pg_trigger g
JOIN pg_catalog.pg_class t ON t.oid = g.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE NOT g.tgisinternal
  AND ${USER_SCHEMA('n')}
  AND ${notExtensionMember('pg_catalog.pg_class', 't.oid')}
ORDER BY 1, 2, 3`;

const SEQUENCES_SQL = `
SELECT n.nspname AS schema, c.relname AS name,
       pg_catalog.format_type(s.seqtypid, NULL) AS type,
       s.seqstart::text AS start, s.seqincrement::text AS increment,
       s.seqmin::text AS min, s.seqmax::text AS max, s.seqcycle AS cycle,
       CASE WHEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT,USAGE')
            THEN pg_catalog.pg_sequence_last_value(c.oid)::text END AS last_value,
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
               WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                 AND d.deptype = 'i') AS identity
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S'
  AND ${USER_SCHEMA('n')}
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY 1, 2`;

const EXTENSIONS_SQL = `
SELECT e.extname AS name, e.extversion AS version
FROM pg_catalog.pg_extension e
ORDER BY 1`;

export interface CatalogColumn {
  name: string;
  type: string;
  notNull: boolean;
  default: string | null;
  /** '' or 's' (stored generated column). */
  generated: string;
  /** '' or 'a' / 'd' (identity ALWAYS / BY DEFAULT). */
  identity: string;
  /** The base type (through one domain) when it is a pg_catalog base type: how verify hashes it. */
  base: string | null;
}

export interface CatalogTable {
  schema: string;
  name: string;
  /** r table, p partitioned, f foreign, m materialized view, v view */
  relkind: string;
  populated: boolean;
  parent: { schema: string; name: string } | undefined;
  definition: string | null;
  /** A partition's bound (`FOR VALUES …`). */
  partitionBound: string | null;
  /** A partitioned table's key (`RANGE (day)`). */
  partitionKey: string | null;
  columns: CatalogColumn[];
}

export interface CatalogIndex {
  schema: string;
  table: string;
  name: string;
  definition: string;
  valid: boolean;
}

export interface CatalogConstraint {
  schema: string;
  table: string;
  name: string;
  type: string;
  definition: string;
  validated: boolean;
}

export interface CatalogTrigger {
  schema: string;
  table: string;
  name: string;
  definition: string;
  /** O origin (enabled), D disabled, R replica, A always */
  enabled: string;
}

export interface CatalogSequence {
  schema: string;
  name: string;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cycle: boolean;
  last_value: string | null;
  /** Belongs to an identity column (made and dropped with it). */
  identity: boolean;
}

export interface Catalog {
  schemas: string[];
  tables: CatalogTable[];
  indexes: CatalogIndex[];
  constraints: CatalogConstraint[];
  triggers: CatalogTrigger[];
  sequences: CatalogSequence[];
  extensions: { name: string; version: string }[];
}

interface TableRow {
  schema: string;
  name: string;
  relkind: string;
  populated: boolean;
  parent_schema: string | null;
  parent_name: string | null;
  definition: string | null;
  partition_bound: string | null;
  partition_key: string | null;
  columns: CatalogColumn[];
}

/** Reads one side's catalog; call it inside a snapshot transaction. */
export async function readCatalog(client: pg.Client, ledgerSchema: string): Promise<Catalog> {
  const p = [ledgerSchema];
  const schemas = (await client.query<{ name: string }>(SCHEMAS_SQL, p)).rows.map((r) => r.name);
  const tables = (await client.query<TableRow>(TABLES_SQL, p)).rows.map((r): CatalogTable => ({
    schema: r.schema,
    name: r.name,
    relkind: r.relkind,
    populated: r.populated,
    parent:
      r.parent_schema !== null && r.parent_name !== null
        ? { schema: r.parent_schema, name: r.parent_name }
        : undefined,
    definition: r.definition,
    partitionBound: r.partition_bound,
    partitionKey: r.partition_key,
    columns: r.columns,
  }));
  const indexes = (await client.query<CatalogIndex>(INDEXES_SQL, p)).rows;
  const constraints = (await client.query<CatalogConstraint>(CONSTRAINTS_SQL, p)).rows;
  const triggers = (await client.query<CatalogTrigger>(TRIGGERS_SQL, p)).rows;
  const sequences = (await client.query<CatalogSequence>(SEQUENCES_SQL, p)).rows;
  const extensions = (await client.query<{ name: string; version: string }>(EXTENSIONS_SQL)).rows;
  return { schemas, tables, indexes, constraints, triggers, sequences, extensions };
}
