/**
 * `switch-first finish`: once every source table is empty and nothing is journaled, drops
 * what prepare created (the foreign tables with their schema, the user mapping, the server,
 * the postgres_fdw extension if pgconvoy created it; the journal on the source), puts the
 * foreign keys back and validates them, ANALYZEs the tables and counts their rows.
 * Resumable: each part is idempotent and the phase records the last one done.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { removeRemoteServer, type RemoteServerRemoval } from '../fdw/remote-server.js';
import { displayName, qualifiedName } from '../util/sql.js';
import { restoreForeignKeys, type ForeignKeyOutcome } from './foreign-keys.js';
import { dropJournal, journaledBatches } from './journal.js';
import { switchFirstNames } from './names.js';
import { requireSwitchFirstState, writeSwitchFirstState, type MovedTable } from './state.js';

export interface FinishResult {
  already: boolean;
  removal: RemoteServerRemoval | undefined;
  foreignKeys: ForeignKeyOutcome[];
  counts: { schema: string; name: string; targetRows: number; sourceRows: number }[];
}

/** Rows still on the source, per table (exact counts: finish must be sure). */
export async function sourceRowsLeft(
  src: pg.Client,
  tables: readonly MovedTable[],
): Promise<Map<MovedTable, number>> {
  const left = new Map<MovedTable, number>();
  for (const t of tables) {
    const res = await src.query<{ n: string }>(
      `SELECT pg_catalog.count(*)::text AS n FROM ONLY ${qualifiedName(t.schema, t.name)}`,
    );
    left.set(t, Number(res.rows[0]?.n ?? 0));
  }
  return left;
}

export async function finishSwitchFirst(
  src: pg.Client,
  tgt: pg.Client,
  ledgerSchema: string,
): Promise<FinishResult> {
  let state = await requireSwitchFirstState(tgt, ledgerSchema, 'finish');
  const names = switchFirstNames(ledgerSchema);
  if (state.phase === 'schema' || state.phase === 'attached')
    throw new PgconvoyError(`switch-first prepare did not complete (phase "${state.phase}")`, {
      code: 'SWITCH_FIRST_PHASE',
      hint: 'run switch-first prepare again, then move, then finish',
      exitCode: EXIT.usage,
    });
  const already = state.phase === 'finished';
  let removal: RemoteServerRemoval | undefined;
  if (state.phase === 'prepared' || state.phase === 'moved') {
    const journaled = await journaledBatches(src, names);
    const left = [...(await sourceRowsLeft(src, state.tables))].filter(([, n]) => n > 0);
    if (journaled.length > 0 || left.length > 0)
      throw new PgconvoyError(
        `rows are still on the source: ${[
          ...left.map(([t, n]) => `${displayName(t.schema, t.name)} ${n}`),
          ...(journaled.length > 0
            ? [`${journaled.reduce((s, b) => s + b.rows.length, 0)} in the journal`]
            : []),
        ].join(', ')}`,
        {
          code: 'SWITCH_FIRST_NOT_MOVED',
          hint: 'run pgconvoy switch-first move (it replays the journal and drains the tables), then finish',
          exitCode: EXIT.blocked,
        },
      );
    removal = await removeRemoteServer(tgt, names);
    await dropJournal(src, names);
    state = { ...state, phase: 'cleaned' };
    await writeSwitchFirstState(tgt, ledgerSchema, state);
  }
  const foreignKeys = await restoreForeignKeys(tgt, state.deferredForeignKeys, { onlyParent: true });
  const violated = foreignKeys.filter((f) => f.status === 'violated');
  if (violated.length > 0)
    throw new PgconvoyError(
      `rows break ${violated.length} foreign key(s); they stay NOT VALID:\n${violated
        .map((f) => `  ${displayName(f.schema, f.table)} "${f.name}": ${f.violations.join(', ')}`)
        .join('\n')}`,
      {
        code: 'FOREIGN_KEY_VIOLATIONS',
        hint: 'these rows were written while the foreign keys were not enforced: fix or delete them, then run switch-first finish again',
        exitCode: EXIT.mismatch,
        details: { foreignKeys: violated },
      },
    );
  const counts: FinishResult['counts'] = [];
  for (const t of state.tables) {
    const table = qualifiedName(t.schema, t.name);
    if (!already) await tgt.query(`ANALYZE ${table}`);
    const n = await tgt.query<{ n: string }>(`SELECT pg_catalog.count(*)::text AS n FROM ${table}`);
    const s = await src.query<{ n: string }>(`SELECT pg_catalog.count(*)::text AS n FROM ONLY ${table}`);
    counts.push({
      schema: t.schema,
      name: t.name,
      targetRows: Number(n.rows[0]?.n),
      sourceRows: Number(s.rows[0]?.n),
    });
  }
  if (!already) await writeSwitchFirstState(tgt, ledgerSchema, { ...state, phase: 'finished' });
  return { already, removal, foreignKeys, counts };
}
