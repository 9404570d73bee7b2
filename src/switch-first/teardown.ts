/**
 * `switch-first teardown`: undoes a prepare that is not wanted, before any row moved. Drops
 * the foreign tables, server, user mapping and extension (if pgconvoy created it) on the
 * target and the journal on the source; the application goes back to the source. The
 * target's tables stay (empty): drop the target database if it is not wanted.
 *
 * Refused once a batch has moved (those rows are only on the target now: finish the move
 * instead), and while the target tables hold rows the application wrote there (they would be
 * left behind when the application goes back to the source).
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { removeRemoteServer, type RemoteServerRemoval } from '../fdw/remote-server.js';
import { displayName, qualifiedName } from '../util/sql.js';
import { dropJournal, journaledBatches } from './journal.js';
import { switchFirstNames } from './names.js';
import { movedRows, requireSwitchFirstState, writeSwitchFirstState } from './state.js';

export async function teardownSwitchFirst(
  src: pg.Client,
  tgt: pg.Client,
  ledgerSchema: string,
): Promise<RemoteServerRemoval> {
  const state = await requireSwitchFirstState(tgt, ledgerSchema, 'teardown');
  const names = switchFirstNames(ledgerSchema);
  const moved = [...(await movedRows(tgt, ledgerSchema)).values()].reduce((a, b) => a + b, 0);
  const journaled = await journaledBatches(src, names);
  if (moved > 0 || journaled.length > 0 || !['schema', 'attached', 'prepared'].includes(state.phase))
    throw new PgconvoyError(
      `rows have already moved to the target (${moved}); teardown would strand them there`,
      {
        code: 'TEARDOWN_REFUSED',
        hint: 'finish the migration instead: pgconvoy switch-first move, then switch-first finish',
        exitCode: EXIT.blocked,
      },
    );
  const written: string[] = [];
  for (const t of state.tables) {
    const res = await tgt
      .query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ONLY ${qualifiedName(t.schema, t.name)}) AS any`)
      .catch(() => ({ rows: [{ any: false }] }));
    if (res.rows[0]?.any) written.push(displayName(t.schema, t.name));
  }
  if (written.length > 0)
    throw new PgconvoyError(`the application has written rows on the target: ${written.join(', ')}`, {
      code: 'TEARDOWN_REFUSED',
      hint: 'going back to the source would leave them behind: finish the migration instead (move, finish), or move those rows back yourself first',
      exitCode: EXIT.blocked,
    });
  const removal = await removeRemoteServer(tgt, names);
  await dropJournal(src, names);
  await writeSwitchFirstState(tgt, ledgerSchema, { ...state, phase: 'torn-down' });
  return removal;
}
