/**
 * Sequences are not replicated: at cutover every sequence (identity, serial and standalone)
 * of the target is set from the source's last_value, and at rollback the other way round.
 * An optional margin moves each one `margin` increments further, for the case where a
 * value was handed out but its row never reached the other side.
 *
 * All sequences are set in one transaction on the receiving side. Checked on PostgreSQL 13,
 * 15 and 17 (pg_sequence: 10+).
 */
import { schemaObjectInScope, tableInScope, type Scope } from '../verify/scope.js';
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { displayName, qualifiedName } from '../util/sql.js';

export interface SequenceValue {
  schema: string;
  name: string;
  /** The value set on the receiving side (null: never used, left unused). */
  value: string | null;
}

const SEQUENCES_SQL = `
SELECT n.nspname AS schema, c.relname AS name,
       s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max,
       (SELECT ARRAY[tn.nspname::text, t.relname::text]
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
        JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
        LIMIT 1) AS owner
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND n.nspname <> $1
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`;

interface SeqRow {
  schema: string;
  name: string;
  increment: string;
  min: string;
  max: string;
  /** The table that owns it (serial, identity), as [schema, name]. */
  owner: [string, string] | null;
}

/** Sets every sequence of `to` from `from`; `ledgerSchema` (pgconvoy's own) is left out on both. */
export async function copySequenceValues(
  from: pg.Client,
  to: pg.Client,
  ledgerSchema: string,
  margin: number,
  /** What the migration moves (state.ts migrationScope): a sequence left out stays as it is. */
  scope: Scope,
): Promise<SequenceValue[]> {
  // Like pg_dump: an owned sequence follows its table, any other its schema.
  const inScope = (s: SeqRow) =>
    s.owner
      ? tableInScope(scope, { schema: s.owner[0], name: s.owner[1] })
      : schemaObjectInScope(scope, s.schema);
  const seqs = (await from.query<SeqRow>(SEQUENCES_SQL, [ledgerSchema])).rows.filter(inScope);
  const present = new Set(
    (await to.query<SeqRow>(SEQUENCES_SQL, [ledgerSchema])).rows.map((r) =>
      JSON.stringify([r.schema, r.name]),
    ),
  );
  const missing = seqs.filter((s) => !present.has(JSON.stringify([s.schema, s.name])));
  if (missing.length > 0) {
    throw new PgconvoyError(
      `sequence(s) missing on the receiving side: ${missing.map((s) => displayName(s.schema, s.name)).join(', ')}`,
      {
        code: 'SEQUENCE_MISSING',
        exitCode: EXIT.failed,
        hint: 'a sequence was created after start (DDL is not replicated): create it on the other side, then run again',
      },
    );
  }
  const result: SequenceValue[] = [];
  await to.query('BEGIN');
  try {
    for (const s of seqs) {
      const name = qualifiedName(s.schema, s.name);
      const cur = await from.query<{ last_value: string; is_called: boolean }>(
        `SELECT last_value::text AS last_value, is_called FROM ${name}`,
      );
      const row = cur.rows[0];
      if (!row) continue;
      let value = BigInt(row.last_value);
      let called = row.is_called;
      if (margin > 0) {
        value += BigInt(margin) * BigInt(s.increment);
        if (value > BigInt(s.max)) value = BigInt(s.max);
        if (value < BigInt(s.min)) value = BigInt(s.min);
        called = true;
      }
      await to.query('SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::int8, $3)', [
        name,
        value.toString(),
        called,
      ]);
      result.push({ schema: s.schema, name: s.name, value: called ? value.toString() : null });
    }
    await to.query('COMMIT');
  } catch (err) {
    await to.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return result;
}
