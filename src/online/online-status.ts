/**
 * The online part of `pgconvoy status`: the phase from the target's ledger and, when the
 * source can be reached too, the replication that matters in that phase (forward while
 * copying, replicating or cutting over; back-replication after cutover): lag in bytes and
 * seconds, WAL the slot makes its server keep, the subscription's apply errors. Plus the
 * warnings an operator must not miss: a slot holding a lot of WAL (over 1 GB, or over half
 * of max_slot_wal_keep_size), a lost slot, apply errors, and any pgconvoy slot nobody
 * streams from (it fills the disk).
 *
 * Read-only on both servers. Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { readPgconvoySlots } from '../replicate/precheck-rows.js';
import { replicationStatus, type ReplicationStatus } from '../replicate/status.js';
import { formatBytes } from '../util/format.js';
import { readFreeze, readOnlineState, type FreezeRecord, type OnlineState } from './state.js';

/** Retained WAL above this is worth a warning whatever the server allows. */
export const RETAINED_WAL_WARN_BYTES = 1024 ** 3;

export interface OnlineStatusReport {
  state: OnlineState;
  /** The write freeze of the source database, when cutover made one. */
  freeze: FreezeRecord | undefined;
  /** Which replication `replication` describes; undefined without a source session. */
  direction: 'forward' | 'back' | undefined;
  replication: ReplicationStatus | undefined;
  /** max_slot_wal_keep_size of the publishing server in bytes (-1: unlimited; undefined before 13). */
  maxSlotWalKeepBytes: number | undefined;
  warnings: string[];
}

async function maxSlotWalKeep(client: pg.Client): Promise<number | undefined> {
  const res = await client.query<{ setting: string; unit: string | null }>(
    "SELECT setting, unit FROM pg_catalog.pg_settings WHERE name = 'max_slot_wal_keep_size'",
  );
  const row = res.rows[0];
  if (!row) return undefined;
  const value = Number(row.setting);
  if (value < 0) return -1;
  return row.unit === 'MB' ? value * 1024 ** 2 : value;
}

function replicationWarnings(
  r: ReplicationStatus,
  side: 'source' | 'target',
  keep: number | undefined,
): string[] {
  const warnings: string[] = [];
  const slot = r.slot;
  if (slot) {
    const retained = slot.retainedWalBytes ?? 0;
    const half = keep !== undefined && keep > 0 ? keep / 2 : undefined;
    if (retained > RETAINED_WAL_WARN_BYTES || (half !== undefined && retained > half)) {
      warnings.push(
        `slot "${slot.name}" makes the ${side} keep ${formatBytes(retained)} of WAL${keep !== undefined && keep > 0 ? ` (max_slot_wal_keep_size ${formatBytes(keep)}: past it the slot is lost)` : ''}: the subscriber is not keeping up or not connected`,
      );
    }
    if (slot.walStatus === 'lost')
      warnings.push(
        `slot "${slot.name}" is lost: the ${side} removed WAL it needed; run teardown and start again`,
      );
  }
  const sub = r.subscription;
  if (sub) {
    if ((sub.applyErrorCount ?? 0) > 0)
      warnings.push(
        `subscription "${sub.name}" reports ${sub.applyErrorCount ?? 0} apply error(s): ${r.errorsNote}`,
      );
    if (sub.enabled && sub.workerPid === null)
      warnings.push(
        `subscription "${sub.name}" is enabled but its apply worker is not running (look at the subscribing server's log)`,
      );
  }
  return warnings;
}

/** The online status, or undefined when the target has no online migration. */
export async function readOnlineStatus(
  target: pg.Client,
  source: pg.Client | undefined,
  ledgerSchema: string,
): Promise<OnlineStatusReport | undefined> {
  const state = await readOnlineState(target, ledgerSchema);
  if (!state) return undefined;
  const report: OnlineStatusReport = {
    state,
    freeze: await readFreeze(target, ledgerSchema),
    direction: undefined,
    replication: undefined,
    maxSlotWalKeepBytes: undefined,
    warnings: [],
  };
  const names = state.names;
  if (source) {
    const forward = state.phase === 'copying' || state.phase === 'replicating' || state.phase === 'cutover';
    const back = state.phase === 'done' && state.back?.createdAt !== undefined;
    if (forward) {
      report.direction = 'forward';
      report.replication = await replicationStatus(source, target, names);
      report.maxSlotWalKeepBytes = await maxSlotWalKeep(source);
      report.warnings.push(...replicationWarnings(report.replication, 'source', report.maxSlotWalKeepBytes));
    } else if (back) {
      report.direction = 'back';
      report.replication = await replicationStatus(target, source, {
        slot: names.backSlot,
        subscription: names.backSubscription,
      });
      report.maxSlotWalKeepBytes = await maxSlotWalKeep(target);
      report.warnings.push(...replicationWarnings(report.replication, 'target', report.maxSlotWalKeepBytes));
    }
    for (const slot of await readPgconvoySlots(source)) {
      if (slot.active) continue;
      const own = slot.name === names.slot && state.phase === 'copying';
      report.warnings.push(
        `inactive pgconvoy slot "${slot.name}" on the source keeps ${slot.retainedBytes === null ? '?' : formatBytes(slot.retainedBytes)} of WAL${own ? " (this migration's slot: normal while start copies; if no start is running, run pgconvoy teardown)" : ': run pgconvoy teardown for its migration'}`,
      );
    }
  }
  for (const slot of await readPgconvoySlots(target)) {
    if (!slot.active)
      report.warnings.push(
        `inactive pgconvoy slot "${slot.name}" on the target keeps ${slot.retainedBytes === null ? '?' : formatBytes(slot.retainedBytes)} of WAL: run pgconvoy teardown (or rollback) for its migration`,
      );
  }
  return report;
}
