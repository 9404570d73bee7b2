/**
 * The journal on the source: the rows of each batch, written in the same source transaction
 * that deletes them, in their row type's text form (`r::text`, exact for every type and read
 * back on the target with a cast to the table's row type). A batch's journal entry is removed
 * once its rows and its ledger mark have committed on the target. So after any crash a batch
 * is in exactly one durable place: the source table, the journal, or the target (plus,
 * briefly, the journal too, which the ledger mark says to drop). See move-batch.ts.
 *
 * The schema is marked with a comment, so finish drops it only when pgconvoy created it.
 * Checked on PostgreSQL 13, 15 and 17 as the source.
 */
import type pg from 'pg';
import { qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';
import type { SwitchFirstNames } from './names.js';

const OWNED_MARK = 'pgconvoy:';

export function journalTable(names: SwitchFirstNames): string {
  return qualifiedName(names.journalSchema, names.journalTable);
}

export async function ensureJournal(src: pg.Client, names: SwitchFirstNames): Promise<void> {
  const exists = await src.query<{ ok: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1) AS ok',
    [names.journalSchema],
  );
  if (!exists.rows[0]?.ok) {
    await src.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(names.journalSchema)}`);
    await src.query(
      `COMMENT ON SCHEMA ${quoteIdent(names.journalSchema)} IS ${quoteLiteral(`${OWNED_MARK} switch-first journal; dropped by pgconvoy switch-first finish`)}`,
    );
  }
  await src.query(`CREATE TABLE IF NOT EXISTS ${journalTable(names)} (
  batch_id text NOT NULL,
  table_schema text NOT NULL,
  table_name text NOT NULL,
  row text NOT NULL,
  journaled_at timestamptz NOT NULL DEFAULT pg_catalog.now()
)`);
  await src.query(
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${names.journalTable}_batch_idx`)} ON ${journalTable(names)} (batch_id)`,
  );
}

export interface JournaledBatch {
  batchId: string;
  schema: string;
  table: string;
  rows: string[];
}

/** Batches in the journal, of one table or all. */
export async function journaledBatches(
  src: pg.Client,
  names: SwitchFirstNames,
  table?: { schema: string; name: string },
): Promise<JournaledBatch[]> {
  if (!(await journalExists(src, names))) return [];
  const res = await src.query<{ batch_id: string; table_schema: string; table_name: string; rows: string[] }>(
    `SELECT batch_id, table_schema, table_name, pg_catalog.array_agg(row) AS rows
     FROM ${journalTable(names)}
     WHERE $1::text IS NULL OR (table_schema = $1 AND table_name = $2)
     GROUP BY 1, 2, 3 ORDER BY pg_catalog.min(journaled_at)`,
    [table?.schema ?? null, table?.name ?? null],
  );
  return res.rows.map((r) => ({
    batchId: r.batch_id,
    schema: r.table_schema,
    table: r.table_name,
    rows: r.rows,
  }));
}

export async function journalExists(src: pg.Client, names: SwitchFirstNames): Promise<boolean> {
  const res = await src.query<{ ok: boolean }>(
    `SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)) IS NOT NULL AS ok`,
    [names.journalSchema, names.journalTable],
  );
  return res.rows[0]?.ok ?? false;
}

export async function forgetBatch(src: pg.Client, names: SwitchFirstNames, batchId: string): Promise<void> {
  await src.query(`DELETE FROM ${journalTable(names)} WHERE batch_id = $1`, [batchId]);
}

/** Drops the journal (it must be empty), and its schema when pgconvoy created it and it is empty. */
export async function dropJournal(src: pg.Client, names: SwitchFirstNames): Promise<void> {
  if (await journalExists(src, names)) await src.query(`DROP TABLE ${journalTable(names)}`);
  const res = await src.query<{ ours: boolean; empty: boolean }>(
    `SELECT pg_catalog.obj_description(n.oid, 'pg_namespace') LIKE $2 AS ours,
            NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid)
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid)
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid) AS empty
     FROM pg_catalog.pg_namespace n WHERE n.nspname = $1`,
    [names.journalSchema, `${OWNED_MARK}%`],
  );
  const row = res.rows[0];
  if (row?.ours && row.empty) await src.query(`DROP SCHEMA ${quoteIdent(names.journalSchema)}`);
}
