/**
 * `pgconvoy clean`: drops the ledger schema from the target once nothing needs it. The ledger
 * is what makes a clone resumable and an online migration steerable (status, cutover,
 * rollback), so it goes only when the clone's jobs are all done and an online migration is
 * done or rolled back with its replication objects on the target torn down.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { ledgerExists } from '../ledger/ledger-schema.js';
import { readLedgerStatus } from '../ledger/ledger-status.js';
import type { ReplicationNames } from '../replicate/names.js';
import { quoteIdent } from '../util/sql.js';
import { readOnlineState } from '../replicate/online-state.js';

export interface CleanResult {
  /** false: there was no ledger schema (nothing to do; running clean again is fine). */
  removed: boolean;
  schema: string;
}

function refuse(message: string, hint: string): PgconvoyError {
  return new PgconvoyError(message, { code: 'CLEAN_REFUSED', hint, exitCode: EXIT.blocked });
}

/** pgconvoy's replication objects still on the target (subscription, back publication and slot). */
async function replicationLeftovers(target: pg.Client, names: ReplicationNames): Promise<string[]> {
  const res = await target.query<{ what: string }>(
    `SELECT 'subscription ' || pg_catalog.quote_ident(subname) AS what FROM pg_catalog.pg_subscription
       WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
     UNION ALL SELECT 'publication ' || pg_catalog.quote_ident(pubname) FROM pg_catalog.pg_publication WHERE pubname = $2
     UNION ALL SELECT 'replication slot ' || pg_catalog.quote_ident(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $3`,
    [names.subscription, names.backPublication, names.backSlot],
  );
  return res.rows.map((r) => r.what);
}

export async function cleanLedger(target: pg.Client, schema: string): Promise<CleanResult> {
  if (!(await ledgerExists(target, schema))) return { removed: false, schema };
  const state = await readOnlineState(target, schema);
  if (state && state.phase !== 'done' && state.phase !== 'rolled-back') {
    throw refuse(
      `the online migration is not finished (phase ${state.phase}): its ledger is still needed`,
      'finish it with pgconvoy cutover, or give up with pgconvoy rollback (after cutover) or pgconvoy teardown, then run clean',
    );
  }
  if (state) {
    const left = await replicationLeftovers(target, state.names);
    if (left.length > 0) {
      throw refuse(
        `pgconvoy's replication objects are still on the target: ${left.join(', ')}`,
        'run pgconvoy teardown first (with --force after a cutover that kept back-replication: the way back to the source ends)',
      );
    }
  } else {
    const status = await readLedgerStatus(target, schema);
    const unfinished = status.counts.total - status.counts.done;
    if (unfinished > 0) {
      throw refuse(
        `the clone is not finished: ${unfinished} of ${status.counts.total} job(s) not done`,
        'run the same pgconvoy clone command again to finish it (it resumes from the ledger), then run clean',
      );
    }
  }
  await target.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
  return { removed: true, schema };
}
