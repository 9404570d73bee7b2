/**
 * The shape of the source's tables (names, columns, types) taken when `start` copies, and
 * compared again at `cutover`. Logical replication carries rows, never DDL: a column added
 * on the source after start is not on the target, and its values are silently lost (or the
 * subscription stops on the first row that does not fit). Cutover refuses then, naming each
 * change, instead of finding out from a broken application.
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { displayIdent, displayName } from '../util/sql.js';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';

export interface TableShape {
  schema: string;
  name: string;
  /** r: table, p: partitioned table. */
  kind: string;
  /** [column name, type] in column order. */
  columns: [string, string][];
}

export interface SchemaFingerprint {
  tables: TableShape[];
}

const SHAPE_SQL = `
SELECT n.nspname AS schema,
       c.relname AS name,
       c.relkind::text AS kind,
       coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
                                    ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '[]') AS columns
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND ${userSchemas()}
  AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
GROUP BY n.nspname, c.relname, c.relkind
ORDER BY n.nspname, c.relname`;

/** The tables and columns the connected session sees (in its snapshot, if it imported one). */
export async function schemaFingerprint(client: pg.Client, ledgerSchema: string): Promise<SchemaFingerprint> {
  const res = await client.query<TableShape>(SHAPE_SQL, [ledgerSchema]);
  return {
    tables: res.rows.map((r) => ({ schema: r.schema, name: r.name, kind: r.kind, columns: r.columns })),
  };
}

const key = (t: { schema: string; name: string }) => JSON.stringify([t.schema, t.name]);

/**
 * What changed from `before` to `after`, one line each, e.g.
 * `column public.orders.note added (text)`; empty when nothing did.
 */
export function diffFingerprints(before: SchemaFingerprint, after: SchemaFingerprint): string[] {
  const changes: string[] = [];
  const old = new Map(before.tables.map((t) => [key(t), t]));
  const now = new Map(after.tables.map((t) => [key(t), t]));
  for (const [k, t] of now) {
    const was = old.get(k);
    const name = displayName(t.schema, t.name);
    if (!was) {
      changes.push(`table ${name} added`);
      continue;
    }
    if (was.kind !== t.kind)
      changes.push(`table ${name} is now ${t.kind === 'p' ? 'partitioned' : 'a plain table'}`);
    const oldCols = new Map(was.columns.map(([c, type]) => [c, type]));
    const newCols = new Map(t.columns.map(([c, type]) => [c, type]));
    for (const [c, type] of newCols) {
      const oldType = oldCols.get(c);
      if (oldType === undefined) changes.push(`column ${name}.${displayIdent(c)} added (${type})`);
      else if (oldType !== type) changes.push(`column ${name}.${displayIdent(c)}: type ${oldType} → ${type}`);
    }
    for (const c of oldCols.keys())
      if (!newCols.has(c)) changes.push(`column ${name}.${displayIdent(c)} dropped`);
  }
  for (const [k, t] of old) if (!now.has(k)) changes.push(`table ${displayName(t.schema, t.name)} dropped`);
  return changes;
}
