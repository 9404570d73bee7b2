/**
 * What the relay needs to write one source table's changes into the target: the target
 * table found by the source's schema and table name, its columns matched to the source's
 * by name, and the SQL of each statement (prepared once per relation and shape).
 *
 * A Relation message whose columns the target table cannot take (a column the target
 * lacks, a generated one, or a NOT NULL target column without a default the source does
 * not send) is a schema difference: the relay stops before applying anything past it.
 *
 * Values travel as text and go through the target type's input function (`$n::type`), as
 * PostgreSQL's own apply worker does. Checked with PostgreSQL 13, 15 and 17 as the target.
 */
import type pg from 'pg';
import { qualifiedName, quoteIdent } from '../util/sql.js';
import type { PgoutputMessage, TupleValue } from './pgoutput-decoder.js';

type RelationMessage = Extract<PgoutputMessage, { tag: 'relation' }>;

export interface TargetColumn {
  name: string;
  /** format_type() on the target, for the `$n::type` casts. */
  type: string;
}

export interface RelationPlan {
  oid: number;
  schema: string;
  name: string;
  /** Quoted schema.table on the target. */
  qualified: string;
  /**
   * One entry per source column, in the source's order; undefined for a column left out
   * (`--exclude-column`): its values are not written, the target keeps its own.
   */
  columns: (TargetColumn | undefined)[];
  /** Indexes (into `columns`) of the columns an INSERT writes. */
  insertIndexes: number[];
  /** Indexes (into `columns`) of the replica identity; every column for REPLICA IDENTITY FULL. */
  keyIndexes: number[];
  full: boolean;
  insertSql: string;
}

export interface SchemaDifference {
  table: string;
  problems: string[];
}

const TARGET_COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, a.atthasdef AS has_default, a.attgenerated <> '' AS generated
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`; // 12+ (attgenerated)

interface TargetColumnRow {
  name: string;
  type: string;
  not_null: boolean;
  has_default: boolean;
  generated: boolean;
}

/** Reads the target table of `rel` and plans its statements, or names what differs. */
export async function planRelation(
  target: pg.Client,
  rel: RelationMessage,
  leftOut: (column: string) => boolean = () => false,
): Promise<RelationPlan | SchemaDifference> {
  const table = `${quoteIdent(rel.schema)}.${quoteIdent(rel.name)}`;
  const rows = (await target.query<TargetColumnRow>(TARGET_COLUMNS_SQL, [rel.schema, rel.name])).rows;
  if (rows.length === 0) return { table, problems: ['the table does not exist on the target'] };
  const byName = new Map(rows.map((r) => [r.name, r]));
  const sent = new Set(rel.columns.map((c) => c.name));
  const problems: string[] = [];
  const columns: (TargetColumn | undefined)[] = [];
  for (const c of rel.columns) {
    const t = byName.get(c.name);
    if (leftOut(c.name)) {
      sent.delete(c.name);
      columns.push(undefined);
    } else if (!t) problems.push(`column ${quoteIdent(c.name)} is on the source but not on the target`);
    else if (t.generated) problems.push(`column ${quoteIdent(c.name)} is generated on the target`);
    else columns.push({ name: t.name, type: t.type });
  }
  for (const t of rows)
    if (!sent.has(t.name) && t.not_null && !t.has_default && !t.generated)
      problems.push(
        `column ${quoteIdent(t.name)} is NOT NULL without a default on the target, and the source does not send it`,
      );
  if (problems.length > 0) return { table, problems };

  const full = rel.replicaIdentity === 'f';
  const keyIndexes = rel.columns.flatMap((c, i) => ((full || c.key) && columns[i] ? [i] : []));
  const insertIndexes = columns.flatMap((c, i) => (c ? [i] : []));
  const kept = columns.filter((c): c is TargetColumn => c !== undefined);
  const names = kept.map((c) => quoteIdent(c.name)).join(', ');
  const casts = kept.map((c, i) => `u.c${i}::${c.type}`).join(', ');
  // ROWS FROM: the multi-array unnest() is syntax that cannot be schema-qualified.
  const arrays = kept.map((_, i) => `pg_catalog.unnest($${i + 1}::text[])`).join(', ');
  const aliases = kept.map((_, i) => `c${i}`).join(', ');
  return {
    oid: rel.oid,
    schema: rel.schema,
    name: rel.name,
    qualified: qualifiedName(rel.schema, rel.name),
    columns,
    insertIndexes,
    keyIndexes,
    full,
    insertSql: `INSERT INTO ${qualifiedName(rel.schema, rel.name)} (${names}) SELECT ${casts} FROM ROWS FROM (${arrays}) AS u(${aliases})`,
  };
}

export function isDifference(p: RelationPlan | SchemaDifference): p is SchemaDifference {
  return 'problems' in p;
}

/** A statement and its parameters (the apply session prepares each text once). */
export interface PlannedStatement {
  text: string;
  values: (string | null)[];
}

function value(v: TupleValue): string | null {
  if (v.kind === 'text') return v.text;
  if (v.kind === 'null') return null;
  throw new Error(`pgoutput: a ${v.kind} value where a text one was expected`);
}

/**
 * The WHERE clause that finds the row `old` names, and its parameters (numbered from `from`).
 * With a key, equality on the key columns (the target's index finds it). With REPLICA
 * IDENTITY FULL there may be no index and no equality operator (json, point), and two rows
 * may be identical: one row whose columns all read the same through the target's output
 * functions is picked, as PostgreSQL's apply worker changes exactly one.
 */
function whereRow(
  plan: RelationPlan,
  old: TupleValue[],
  from: number,
): { sql: string; values: (string | null)[] } {
  const values: (string | null)[] = [];
  const terms: string[] = [];
  for (const i of plan.keyIndexes) {
    const v = old[i];
    const col = plan.columns[i];
    if (!v || !col || v.kind === 'unchanged') continue;
    const ident = quoteIdent(col.name);
    if (plan.full) {
      values.push(value(v));
      terms.push(`r.${ident}::text IS NOT DISTINCT FROM ($${from + values.length - 1}::${col.type})::text`);
    } else {
      values.push(value(v));
      terms.push(`${ident} = $${from + values.length - 1}::${col.type}`);
    }
  }
  if (terms.length === 0) throw new Error(`no replica identity value for ${plan.qualified}`);
  const sql = plan.full
    ? `(tableoid, ctid) = (SELECT r.tableoid, r.ctid FROM ${plan.qualified} r WHERE ${terms.join(' AND ')} LIMIT 1)`
    : terms.join(' AND ');
  return { sql, values };
}

/** UPDATE of the columns the source sent (unchanged TOAST values are left as they are). */
export function updateStatement(
  plan: RelationPlan,
  old: TupleValue[] | undefined,
  row: TupleValue[],
): PlannedStatement {
  const sets: string[] = [];
  const values: (string | null)[] = [];
  row.forEach((v, i) => {
    const col = plan.columns[i];
    if (!col || v.kind === 'unchanged') return;
    values.push(value(v));
    sets.push(`${quoteIdent(col.name)} = $${values.length}::${col.type}`);
  });
  const where = whereRow(plan, old ?? row, values.length + 1);
  const text = `UPDATE ${plan.qualified} SET ${sets.join(', ')} WHERE ${where.sql}`;
  return { text, values: [...values, ...where.values] };
}

export function deleteStatement(plan: RelationPlan, old: TupleValue[]): PlannedStatement {
  const where = whereRow(plan, old, 1);
  return { text: `DELETE FROM ${plan.qualified} WHERE ${where.sql}`, values: where.values };
}

/** The identity values of a row, for messages: `id=42`. */
export function describeKey(plan: RelationPlan, old: TupleValue[]): string {
  return plan.keyIndexes
    .map((i) => {
      const v = old[i];
      const shown = !v ? '?' : v.kind === 'text' ? v.text : v.kind === 'null' ? 'NULL' : '(unchanged TOAST)';
      return `${plan.columns[i]?.name ?? '?'}=${shown.length > 80 ? `${shown.slice(0, 80)}…` : shown}`;
    })
    .join(', ');
}
