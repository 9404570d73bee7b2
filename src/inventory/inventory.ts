/**
 * The source inventory: what there is to move and how big it is. Read from the catalogs
 * only (no table is scanned), so it is cheap on a database of any size. Checked on 13, 15, 17.
 */
import type pg from 'pg';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError, serverErrorFields } from '../errors.js';
import { SQLSTATE } from '../sqlstate.js';
import { lockHolders, lockHoldersHint } from './lock-holders.js';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';

export type TableKind = 'table' | 'partitioned' | 'foreign' | 'materialized-view';

export interface TableInfo {
  oid: number;
  schema: string;
  name: string;
  kind: TableKind;
  unlogged: boolean;
  /** A partition of a partitioned table (its rows are copied through it). */
  partitionOf: string | undefined;
  /** Heap + TOAST on disk (pg_table_size). */
  bytes: number;
  /** Tables plus their indexes (pg_total_relation_size). */
  totalBytes: number;
  /** From pg_class.reltuples; undefined when the table was never analyzed. */
  estimatedRows: number | undefined;
  primaryKey: string[] | undefined;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  /** Leading integer column of a valid btree index, for range chunks. */
  splitColumn: { name: string; type: 'smallint' | 'integer' | 'bigint' } | undefined;
}

export interface SequenceInfo {
  schema: string;
  name: string;
  lastValue: string | undefined;
  /** `schema.table.column` for serial/identity sequences */
  ownedBy: string | undefined;
}

export interface Inventory {
  schemas: string[];
  /** Largest first. */
  tables: TableInfo[];
  sequences: SequenceInfo[];
  extensions: { name: string; version: string; schema: string }[];
  largeObjects: number;
  totalBytes: number;
}

const TABLES_SQL = `
SELECT c.oid::int8 AS oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind AS relkind,
       c.relpersistence = 'u' AS unlogged,
       CASE WHEN c.relispartition THEN (
         SELECT pg_catalog.format('%I.%I', pn.nspname, pc.relname)
         FROM pg_catalog.pg_inherits h
         JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent
         JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE h.inhrelid = c.oid) END AS partition_of,
       CASE WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_table_size(c.oid) ELSE 0 END AS bytes,
       CASE WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_total_relation_size(c.oid) ELSE 0 END AS total_bytes,
       CASE WHEN c.reltuples < 0 OR (c.reltuples = 0 AND c.relpages = 0) THEN NULL ELSE c.reltuples::int8 END AS estimated_rows,
       c.relreplident AS replident,
       (SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord)
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key,
       (SELECT pg_catalog.format('%s:%s', a.attname, pg_catalog.format_type(a.atttypid, NULL))
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL AND i.indkey[0] <> 0
          AND a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype)
        ORDER BY i.indisprimary DESC, i.indisunique DESC, a.attnotnull DESC, ic.relname
        LIMIT 1) AS split_column
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'm')
  AND ${userSchemas()}
  AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY bytes DESC, n.nspname, c.relname`;

const SEQUENCES_SQL = `
SELECT n.nspname AS schema,
       c.relname AS name,
       s.last_value::text AS last_value,
       (SELECT pg_catalog.format('%I.%I.%I', tn.nspname, t.relname, a.attname)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
        JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
        LIMIT 1) AS owned_by
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
WHERE c.relkind = 'S'
  AND ${userSchemas()}
  AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY n.nspname, c.relname`;

const SCHEMAS_SQL = `
SELECT n.nspname AS name
FROM pg_catalog.pg_namespace n
WHERE ${userSchemas()} AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_namespace', 'n.oid')}
ORDER BY n.nspname`;

const EXTENSIONS_SQL = `
SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
ORDER BY e.extname`;

const KINDS: Record<string, TableKind> = {
  r: 'table',
  p: 'partitioned',
  f: 'foreign',
  m: 'materialized-view',
};
const IDENTITY: Record<string, TableInfo['replicaIdentity']> = {
  d: 'default',
  n: 'nothing',
  f: 'full',
  i: 'index',
};

interface TableRow {
  oid: string;
  schema: string;
  name: string;
  relkind: string;
  unlogged: boolean;
  partition_of: string | null;
  bytes: string;
  total_bytes: string;
  estimated_rows: string | null;
  replident: string;
  primary_key: string[] | null;
  split_column: string | null;
}

/**
 * The table sizes take ACCESS SHARE on every table: behind someone's ACCESS EXCLUSIVE (a long
 * transaction that ran DDL) they would wait without end, so they wait `lockWaitTimeoutMs` at
 * most and then say who holds the lock.
 */
async function readTableRows(
  client: pg.Client,
  ledgerSchema: string,
  lockWaitTimeoutMs: number,
): Promise<TableRow[]> {
  await client.query("SELECT pg_catalog.set_config('lock_timeout', $1, false)", [`${lockWaitTimeoutMs}ms`]);
  try {
    return (await client.query<TableRow>(TABLES_SQL, [ledgerSchema])).rows;
  } catch (err) {
    if (serverErrorFields(err)?.code !== SQLSTATE.lockNotAvailable) throw err;
    const holders = await lockHolders(client, null, 'AccessShareLock').catch(() => []);
    throw new PgconvoyError(
      `waited ${lockWaitTimeoutMs / 1000} s (--lock-wait-timeout) for a lock on a table of the source to read its size, in vain`,
      {
        code: 'LOCK_TIMEOUT',
        exitCode: EXIT.source,
        hint: `reading a table's size takes ACCESS SHARE on it, and another session holds ACCESS EXCLUSIVE: ${lockHoldersHint(holders)}`,
        details: { holders },
        cause: err,
      },
    );
  } finally {
    await client.query('RESET lock_timeout').catch(() => undefined);
  }
}

export async function readInventory(
  client: pg.Client,
  ledgerSchema: string,
  lockWaitTimeoutMs: number = DEFAULTS.lockWaitTimeoutMs,
): Promise<Inventory> {
  const tables = (await readTableRows(client, ledgerSchema, lockWaitTimeoutMs)).map((r): TableInfo => {
    let splitColumn: TableInfo['splitColumn'];
    if (r.split_column) {
      const colon = r.split_column.lastIndexOf(':');
      splitColumn = {
        name: r.split_column.slice(0, colon),
        type: r.split_column.slice(colon + 1) as 'smallint' | 'integer' | 'bigint',
      };
    }
    return {
      oid: Number(r.oid),
      schema: r.schema,
      name: r.name,
      kind: KINDS[r.relkind] ?? 'table',
      unlogged: r.unlogged,
      partitionOf: r.partition_of ?? undefined,
      bytes: Number(r.bytes),
      totalBytes: Number(r.total_bytes),
      estimatedRows: r.estimated_rows === null ? undefined : Number(r.estimated_rows),
      primaryKey: r.primary_key ?? undefined,
      replicaIdentity: IDENTITY[r.replident] ?? 'default',
      splitColumn,
    };
  });
  const sequences = (
    await client.query<{ schema: string; name: string; last_value: string | null; owned_by: string | null }>(
      SEQUENCES_SQL,
      [ledgerSchema],
    )
  ).rows.map((r) => ({
    schema: r.schema,
    name: r.name,
    lastValue: r.last_value ?? undefined,
    ownedBy: r.owned_by ?? undefined,
  }));
  const schemas = (await client.query<{ name: string }>(SCHEMAS_SQL, [ledgerSchema])).rows.map((r) => r.name);
  const extensions = (await client.query<{ name: string; version: string; schema: string }>(EXTENSIONS_SQL))
    .rows;
  const lo = await client.query<{ n: string }>(
    'SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_largeobject_metadata',
  );
  return {
    schemas,
    tables,
    sequences,
    extensions,
    largeObjects: Number(lo.rows[0]!.n),
    totalBytes: tables.reduce((sum, t) => sum + t.bytes, 0),
  };
}

/** Tables whose rows are copied: plain tables and partitions (not partitioned parents, views, foreign tables). */
export function copyableTables(inventory: Inventory): TableInfo[] {
  return inventory.tables.filter((t) => t.kind === 'table');
}

/** Tables that logical replication cannot carry UPDATE/DELETE for. */
export function tablesWithoutKey(inventory: Inventory): TableInfo[] {
  return inventory.tables.filter(
    (t) =>
      t.kind === 'table' && !t.primaryKey && t.replicaIdentity !== 'index' && t.replicaIdentity !== 'full',
  );
}
