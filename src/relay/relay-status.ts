/**
 * Where the relay stands, read from both servers: the ledger's applied position (on the
 * target, committed with the rows), whether a relay streams the slot now (the slot is
 * active on the source), and the lag behind the source's current WAL position. And the
 * wait cutover makes for the relay to reach the freeze point.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { DEFAULTS } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { formatBytes } from '../util/format.js';
import { sleep } from '../util/wait.js';
import { readRelayProgress, type RelayProgress } from './relay-progress.js';

export interface RelayStatus {
  progress: RelayProgress | undefined;
  sourceLsn: string;
  slotFound: boolean;
  /** A walsender streams the slot: the relay runs (somewhere). */
  running: boolean;
  walsenderPid: number | null;
  /** Source WAL after the ledger's applied position. */
  lagBytes: number | undefined;
  /** 13+: reserved, extended, unreserved or lost. */
  walStatus: string | null;
  retainedWalBytes: number | null;
}

const SLOT_SQL = `
SELECT pg_catalog.pg_current_wal_lsn()::text AS current_lsn,
       s.slot_name IS NOT NULL AS found, s.active, s.active_pid,
       pg_catalog.to_jsonb(s.*) ->> 'wal_status' AS wal_status,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::int8 AS retained,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), $2::text::pg_lsn)::int8 AS lag
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1`; // 10+; wal_status 13+

export async function relayStatus(
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
  slot: string,
): Promise<RelayStatus> {
  // The target first: its position is then never ahead of the source's current LSN.
  const progress = await readRelayProgress(target, ledgerSchema);
  const res = await source.query<{
    current_lsn: string;
    found: boolean;
    active: boolean | null;
    active_pid: number | null;
    wal_status: string | null;
    retained: string | null;
    lag: string | null;
  }>(SLOT_SQL, [slot, progress?.appliedLsn ?? null]);
  const r = res.rows[0];
  if (!r) throw new Error('the slot status query returned no row');
  return {
    progress,
    sourceLsn: r.current_lsn,
    slotFound: r.found,
    running: Boolean(r.active),
    walsenderPid: r.active_pid,
    lagBytes: r.lag === null ? undefined : Math.max(0, Number(r.lag)),
    walStatus: r.wal_status,
    retainedWalBytes: r.retained === null ? null : Number(r.retained),
  };
}

export const NO_RELAY_HINT =
  'start it with pgconvoy replicate --source … --target … (it resumes where the target stands), and keep it running through cutover';

/**
 * Waits until the ledger's applied position reaches `goal` (the source's WAL position once
 * writes were frozen). The relay runs as its own process; when none streams the slot this
 * says so at once, and again when time runs out.
 */
export async function waitForRelayCatchUp(
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
  slot: string,
  goal: string,
  options: { timeoutMs?: number; pollMs?: number; onWarning: (message: string) => void },
): Promise<RelayStatus> {
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULTS.catchUpTimeoutMs);
  let warned = false;
  for (;;) {
    const status = await relayStatus(source, target, ledgerSchema, slot);
    if (!status.slotFound)
      throw new PgconvoyError(`replication slot "${slot}" does not exist`, {
        code: 'NO_SLOT',
        hint: 'replication was torn down or never started',
      });
    const reached = await source.query<{ ok: boolean }>('SELECT $1::text::pg_lsn >= $2::text::pg_lsn AS ok', [
      status.progress?.appliedLsn ?? '0/0',
      goal,
    ]);
    if (reached.rows[0]?.ok) return status;
    if (!status.running && !warned) {
      warned = true;
      options.onWarning(`no relay is running (nothing streams slot "${slot}"): ${NO_RELAY_HINT}`);
    }
    if (Date.now() > deadline)
      throw new PgconvoyError(
        `the relay did not apply up to ${goal} in time: ${status.running ? `still ${formatBytes(status.lagBytes ?? 0)} behind (applied ${status.progress?.appliedLsn ?? '?'})` : 'no relay is running'}`,
        {
          code: 'CATCHUP_TIMEOUT',
          hint: status.running
            ? 'the relay is slower than the wait allows: run cutover again with a longer --timeout (writes stay frozen), or look at its output'
            : `${NO_RELAY_HINT}; then run cutover again (writes stay frozen meanwhile)`,
          details: { status },
        },
      );
    await sleep(options.pollMs ?? DEFAULTS.catchUpPollMs);
  }
}
