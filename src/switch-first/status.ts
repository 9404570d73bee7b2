/**
 * `switch-first status`: the phase, and per table the rows moved (ledger), still on the
 * source (exact counts) and journaled (in flight, or left by an interrupted move), plus what
 * to run next.
 */
import type pg from 'pg';
import { sourceRowsLeft } from './finish.js';
import { journaledBatches } from './journal.js';
import { switchFirstNames } from './names.js';
import { movedRows, requireSwitchFirstState, tableKey, type SwitchFirstPhase } from './state.js';

export interface SwitchFirstStatus {
  phase: SwitchFirstPhase;
  source: string;
  tables: { schema: string; name: string; moved: number; onSource: number | null; journaled: number }[];
  next: string;
}

const NEXT: Record<SwitchFirstPhase, string> = {
  schema: 'prepare did not complete: run switch-first prepare again',
  attached: 'prepare did not complete: run switch-first prepare again',
  prepared: 'point the application at the target (if not done yet), then run switch-first move',
  moved: 'run switch-first finish',
  cleaned: 'run switch-first finish again (foreign keys, ANALYZE)',
  finished: 'nothing: the migration is finished',
  'torn-down': 'nothing: the prepare was torn down',
};

export async function switchFirstStatus(
  src: pg.Client | undefined,
  tgt: pg.Client,
  ledgerSchema: string,
): Promise<SwitchFirstStatus> {
  const state = await requireSwitchFirstState(tgt, ledgerSchema, 'status');
  const moved = await movedRows(tgt, ledgerSchema);
  const sourceGone = ['cleaned', 'finished', 'torn-down'].includes(state.phase);
  const left = src && !sourceGone ? await sourceRowsLeft(src, state.tables) : undefined;
  const journal = src && !sourceGone ? await journaledBatches(src, switchFirstNames(ledgerSchema)) : [];
  const tables = state.tables.map((t) => ({
    schema: t.schema,
    name: t.name,
    moved: moved.get(tableKey(t.schema, t.name)) ?? 0,
    onSource: left ? (left.get(t) ?? 0) : null,
    journaled: journal
      .filter((b) => b.schema === t.schema && b.table === t.name)
      .reduce((s, b) => s + b.rows.length, 0),
  }));
  const inFlight = tables.some((t) => t.journaled > 0);
  return {
    phase: state.phase,
    source: state.source,
    tables,
    next: inFlight
      ? 'rows are journaled on the source (an interrupted move): run switch-first move to bring them in'
      : NEXT[state.phase],
  };
}
