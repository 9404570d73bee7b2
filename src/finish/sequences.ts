/**
 * Sequences are neither in a data copy nor replicated: clone sets the target's from the
 * source's values read in the copy's snapshot, cutover sets every sequence (identity, serial
 * and standalone) of the target from the source's last_value, and rollback the other way
 * round. An optional margin moves each one `margin` increments further, for the case where a
 * value was handed out but its row never reached the other side.
 *
 * Values are read a few hundred per statement and set a few hundred per statement, all in one
 * transaction on the receiving side. Checked on PostgreSQL 13, 15 and 17 (pg_sequence: 10+).
 */
import { schemaObjectInScope, tableInScope, type Scope } from '../verify/scope.js';
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { inTransaction } from '../connect/session.js';
import { tableKey } from '../copy/table-columns.js';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';
import { displayName, qualifiedName } from '../util/sql.js';

export interface SequenceValue {
  schema: string;
  name: string;
  /** The value set on the receiving side (null: never used, left unused). */
  value: string | null;
}

/** A sequence to set; its bounds are needed only with a margin. */
export interface SequenceToSet {
  schema: string;
  name: string;
  increment?: string;
  min?: string;
  max?: string;
}

/** Sequences read, and set, per statement. */
const SEQUENCE_BATCH = 500;

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
  AND ${userSchemas('n')}
  AND n.nspname <> $1
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY 1, 2`;

interface SeqRow extends Required<SequenceToSet> {
  /** The table that owns it (serial, identity), as [schema, name]. */
  owner: [string, string] | null;
}

export interface SetSequencesOptions {
  /** Increments to add to each value (0: the value as it is). */
  margin?: number;
  /** Runs in the receiving transaction before COMMIT (clone's ledger mark commits with the values). */
  beforeCommit?: (to: pg.Client) => Promise<void>;
}

/**
 * Sets `sequences` on `to` to their values on `from` (read in `from`'s session, so in its
 * snapshot if it has one), in one transaction on `to`.
 */
export async function setSequences(
  from: pg.Client,
  to: pg.Client,
  sequences: readonly SequenceToSet[],
  options: SetSequencesOptions = {},
): Promise<SequenceValue[]> {
  const margin = options.margin ?? 0;
  return inTransaction(to, async () => {
    const result: SequenceValue[] = [];
    for (let start = 0; start < sequences.length; start += SEQUENCE_BATCH) {
      const batch = sequences.slice(start, start + SEQUENCE_BATCH);
      const names = batch.map((seq) => qualifiedName(seq.schema, seq.name));
      const res = await from.query<{ i: number; last_value: string; is_called: boolean }>(
        names
          .map((name, i) => `SELECT ${i} AS i, last_value::text, is_called FROM ${name}`)
          .join('\nUNION ALL '),
      );
      const values = res.rows.map((r) => withMargin(batch[Number(r.i)]!, r.last_value, r.is_called, margin));
      await to.query(
        `SELECT pg_catalog.setval(s.name::pg_catalog.regclass, s.value, s.called)
         FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::int8[]), pg_catalog.unnest($3::boolean[]))
              AS s(name, value, called)`,
        [res.rows.map((r) => names[Number(r.i)]!), values.map((v) => v.value), values.map((v) => v.called)],
      );
      res.rows.forEach((r, k) => {
        const seq = batch[Number(r.i)]!;
        result.push({
          schema: seq.schema,
          name: seq.name,
          value: values[k]!.called ? values[k]!.value : null,
        });
      });
    }
    await options.beforeCommit?.(to);
    return result;
  });
}

/** The value to set: `margin` increments past the read one, within the sequence's bounds. */
function withMargin(
  seq: SequenceToSet,
  lastValue: string,
  isCalled: boolean,
  margin: number,
): { value: string; called: boolean } {
  if (margin <= 0) return { value: lastValue, called: isCalled };
  let value = BigInt(lastValue) + BigInt(margin) * BigInt(seq.increment ?? '1');
  if (seq.max !== undefined && value > BigInt(seq.max)) value = BigInt(seq.max);
  if (seq.min !== undefined && value < BigInt(seq.min)) value = BigInt(seq.min);
  return { value: value.toString(), called: true };
}

/**
 * Sets every sequence of `to` in `scope` from `from`; `ledgerSchema` (pgconvoy's own) is left
 * out on both. A sequence missing on `to` stops it before anything is set.
 */
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
  const present = new Set((await to.query<SeqRow>(SEQUENCES_SQL, [ledgerSchema])).rows.map(tableKey));
  const missing = seqs.filter((s) => !present.has(tableKey(s)));
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
  return setSequences(from, to, seqs, { margin });
}
