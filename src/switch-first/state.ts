/**
 * Where a switch-first migration stands, kept in the target's ledger (tables `switch_first`
 * and `switch_first_batches`, ledger migration 5), so that prepare, move, status, finish and
 * teardown agree whatever machine they run on.
 *
 * Phases: schema (tables, indexes and constraints but the foreign keys are on the target) →
 * attached (each target table shows its source rows through a postgres_fdw foreign table
 * that inherits from it) → prepared (sequences set past the source's: the application may
 * switch) → moved (the source tables are empty) → cleaned (foreign tables, server, mapping
 * and extension dropped) → finished (foreign keys validated, ANALYZEd); torn-down (a prepare
 * undone before any row moved).
 *
 * Everything read back from here is input: names are quoted where they are used.
 * Checked on PostgreSQL 13, 15 and 17 (the ledger lives on the target).
 */
import type pg from 'pg';
import { z } from 'zod';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { qualifiedName } from '../util/sql.js';

export type SwitchFirstPhase =
  'schema' | 'attached' | 'prepared' | 'moved' | 'cleaned' | 'finished' | 'torn-down';

const MovedTableSchema = z.object({
  schema: z.string(),
  name: z.string(),
  /** The foreign table (in the fdw schema) that shows the source's rows. */
  foreignName: z.string(),
  /** Columns of the batch order: the primary key or a unique NOT NULL index; null = by ctid. */
  key: z.array(z.string()).nullable(),
  /** Columns a batch inserts (generated columns are computed by the target). */
  columns: z.array(z.string()),
  /** pg_class.reltuples on the source at prepare, for progress. */
  estimatedRows: z.number(),
  bytes: z.number(),
});
export type MovedTable = z.infer<typeof MovedTableSchema>;

const DeferredFkSchema = z.object({
  schema: z.string(),
  table: z.string(),
  name: z.string(),
  /** pg_get_constraintdef on the source, names qualified (search_path empty). */
  definition: z.string(),
});
export type DeferredForeignKey = z.infer<typeof DeferredFkSchema>;

const StateRowSchema = z.object({
  phase: z.enum(['schema', 'attached', 'prepared', 'moved', 'cleaned', 'finished', 'torn-down']),
  source: z.string(),
  tables: z.array(MovedTableSchema),
  deferred_fks: z.array(DeferredFkSchema),
  accepted: z.array(z.string()),
  detail: z.record(z.unknown()),
});

export interface SwitchFirstState {
  phase: SwitchFirstPhase;
  /** The source as `user@host:port/db`. */
  source: string;
  tables: MovedTable[];
  deferredForeignKeys: DeferredForeignKey[];
  /** `table:risk` the operator accepted at prepare. */
  accepted: string[];
  detail: Record<string, unknown>;
}

export async function readSwitchFirstState(
  client: pg.Client,
  ledgerSchema: string,
): Promise<SwitchFirstState | undefined> {
  const exists = await client.query<{ ok: boolean }>(
    `SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, 'switch_first')) IS NOT NULL AS ok`,
    [ledgerSchema],
  );
  if (!exists.rows[0]?.ok) return undefined;
  const res = await client.query(
    `SELECT phase, source, tables, deferred_fks, accepted, detail FROM ${qualifiedName(ledgerSchema, 'switch_first')}`,
  );
  if (res.rows.length === 0) return undefined;
  const parsed = StateRowSchema.safeParse(res.rows[0]);
  if (!parsed.success)
    throw new PgconvoyError(`the switch-first state in the ledger "${ledgerSchema}" is damaged`, {
      code: 'LEDGER_DAMAGED',
      hint: `it was changed by hand or by another tool: ${parsed.error.issues[0]?.message ?? ''}`,
      exitCode: EXIT.target,
    });
  const row = parsed.data;
  return {
    phase: row.phase,
    source: row.source,
    tables: row.tables,
    deferredForeignKeys: row.deferred_fks,
    accepted: row.accepted,
    detail: row.detail,
  };
}

/** SQL (and values) that writes the whole state row; run it inside the step's own transaction. */
export function writeStateSql(
  ledgerSchema: string,
  state: SwitchFirstState,
): { text: string; values: unknown[] } {
  const stamp =
    state.phase === 'prepared'
      ? ', prepared_at = pg_catalog.now()'
      : state.phase === 'moved'
        ? ', moved_at = pg_catalog.now()'
        : state.phase === 'finished'
          ? ', finished_at = pg_catalog.now()'
          : '';
  return {
    text: `INSERT INTO ${qualifiedName(ledgerSchema, 'switch_first')} (id, phase, source, tables, deferred_fks, accepted, detail)
           VALUES (1, $1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO UPDATE SET phase = EXCLUDED.phase, source = EXCLUDED.source, tables = EXCLUDED.tables,
             deferred_fks = EXCLUDED.deferred_fks, accepted = EXCLUDED.accepted, detail = EXCLUDED.detail,
             updated_at = pg_catalog.now()${stamp}`,
    values: [
      state.phase,
      state.source,
      JSON.stringify(state.tables),
      JSON.stringify(state.deferredForeignKeys),
      JSON.stringify(state.accepted),
      JSON.stringify(state.detail),
    ],
  };
}

export async function writeSwitchFirstState(
  client: pg.Client,
  ledgerSchema: string,
  state: SwitchFirstState,
): Promise<void> {
  const q = writeStateSql(ledgerSchema, state);
  await client.query(q.text, q.values);
}

/** The state, or an error saying that `command` needs a prepare first. */
export async function requireSwitchFirstState(
  client: pg.Client,
  ledgerSchema: string,
  command: string,
): Promise<SwitchFirstState> {
  const state = await readSwitchFirstState(client, ledgerSchema);
  if (!state || state.phase === 'torn-down')
    throw new PgconvoyError(`no switch-first migration is prepared on this target (for ${command})`, {
      code: 'NO_SWITCH_FIRST',
      hint: 'run pgconvoy switch-first prepare --source ... --target ... first',
      exitCode: EXIT.usage,
    });
  return state;
}

/** Rows moved so far, per table (`schema.name` as JSON key pairs), from the batch marks. */
export async function movedRows(client: pg.Client, ledgerSchema: string): Promise<Map<string, number>> {
  const res = await client.query<{ table_schema: string; table_name: string; rows: string }>(
    `SELECT table_schema, table_name, pg_catalog.sum(rows)::text AS rows
     FROM ${qualifiedName(ledgerSchema, 'switch_first_batches')} GROUP BY 1, 2`,
  );
  return new Map(res.rows.map((r) => [tableKey(r.table_schema, r.table_name), Number(r.rows)]));
}

export function tableKey(schema: string, name: string): string {
  return JSON.stringify([schema, name]);
}
