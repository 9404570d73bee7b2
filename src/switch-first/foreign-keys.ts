/**
 * Foreign keys after the move: prepare left them out (on the target they would check only the
 * target's rows). Each is added NOT VALID (checks new rows from now on; a short lock) and then
 * VALIDATEd (reads the table under SHARE UPDATE EXCLUSIVE: the application keeps writing).
 * When VALIDATE fails the constraint stays NOT VALID and the offending keys are listed, so the
 * operator can fix the rows and run the same command again. Idempotent.
 *
 * Checked on PostgreSQL 17 as the target.
 */
import type pg from 'pg';
import { serverErrorFields } from '../errors.js';
import { qualifiedName, quoteIdent } from '../util/sql.js';
import type { DeferredForeignKey } from './state.js';
import { SQLSTATE } from '../sqlstate.js';

export interface ForeignKeyOutcome {
  schema: string;
  table: string;
  name: string;
  status: 'validated' | 'violated' | 'not valid on the source';
  /** Up to MAX_LISTED offending keys, as `(col, ...)=(value, ...)`. */
  violations: string[];
}

const MAX_LISTED = 20;

const CONSTRAINT_SQL = `
SELECT x.convalidated AS validated,
       pg_catalog.format('%I.%I', rn.nspname, r.relname) AS ref_table,
       ARRAY(SELECT a.attname FROM pg_catalog.unnest(x.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS columns,
       ARRAY(SELECT a.attname FROM pg_catalog.unnest(x.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = x.confrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS ref_columns
FROM pg_catalog.pg_constraint x
JOIN pg_catalog.pg_class r ON r.oid = x.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE x.conrelid = $1::pg_catalog.regclass AND x.conname = $2 AND x.contype = 'f'`;

interface ConstraintRow {
  validated: boolean;
  ref_table: string;
  columns: string[];
  ref_columns: string[];
}

export async function restoreForeignKeys(
  tgt: pg.Client,
  fks: readonly DeferredForeignKey[],
  o: { onlyParent: boolean },
): Promise<ForeignKeyOutcome[]> {
  const outcomes: ForeignKeyOutcome[] = [];
  for (const fk of fks) {
    const table = qualifiedName(fk.schema, fk.table);
    const notValidOnSource = /\sNOT VALID$/.test(fk.definition);
    const definition = fk.definition.replace(/\s+NOT VALID$/, '');
    let row = (await tgt.query<ConstraintRow>(CONSTRAINT_SQL, [table, fk.name])).rows[0];
    if (!row) {
      await tgt.query(
        `ALTER TABLE ${o.onlyParent ? 'ONLY ' : ''}${table} ADD CONSTRAINT ${quoteIdent(fk.name)} ${definition} NOT VALID`,
      );
      row = (await tgt.query<ConstraintRow>(CONSTRAINT_SQL, [table, fk.name])).rows[0]!;
    }
    const base = { schema: fk.schema, table: fk.table, name: fk.name };
    if (notValidOnSource) {
      outcomes.push({ ...base, status: 'not valid on the source', violations: [] });
      continue;
    }
    if (row.validated) {
      outcomes.push({ ...base, status: 'validated', violations: [] });
      continue;
    }
    try {
      await tgt.query(`ALTER TABLE ${table} VALIDATE CONSTRAINT ${quoteIdent(fk.name)}`);
      outcomes.push({ ...base, status: 'validated', violations: [] });
    } catch (err) {
      if (serverErrorFields(err)?.code !== SQLSTATE.foreignKeyViolation) throw err;
      outcomes.push({ ...base, status: 'violated', violations: await violations(tgt, table, row) });
    }
  }
  return outcomes;
}

/** Keys of `table` with no match in the referenced table (MATCH SIMPLE: a NULL part matches). */
async function violations(tgt: pg.Client, table: string, c: ConstraintRow): Promise<string[]> {
  const cols = c.columns.map((n) => `c.${quoteIdent(n)}`);
  const match = c.columns
    .map((n, i) => `p.${quoteIdent(c.ref_columns[i]!)} = c.${quoteIdent(n)}`)
    .join(' AND ');
  // ref_table comes from format('%I.%I'): quoted by the server.
  const res = await tgt.query<{ key: string }>(
    `SELECT pg_catalog.format('(%s)=%s', $1::text, ROW(${cols.join(', ')})::text) AS key
     FROM ONLY ${table} AS c
     WHERE ${cols.map((x) => `${x} IS NOT NULL`).join(' AND ')}
       AND NOT EXISTS (SELECT 1 FROM ONLY ${c.ref_table} AS p WHERE ${match})
     LIMIT ${MAX_LISTED}`,
    [c.columns.join(', ')],
  );
  return res.rows.map((r) => r.key);
}
