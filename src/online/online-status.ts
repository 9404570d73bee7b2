/**
 * The online part of `pgconvoy status`: the phase from the target's ledger and, when the
 * source can be reached too, the replication that matters in that phase (forward while
 * copying, replicating or cutting over; back-replication after cutover): lag in bytes and
 * seconds, WAL the slot makes its server keep, the subscription's apply errors. Plus the
 * warnings an operator must not miss: a slot holding a lot of WAL (over 1 GB, or over half
 * of max_slot_wal_keep_size), a lost slot, apply errors, and any pgconvoy slot nobody
 * streams from (it fills the disk).
 *
 * While the target follows the source, the schema drift too (schema-drift.ts: what differs
 * between the two catalogs now, with the statements that align the target), the tables the
 * subscription is still copying, and — as history — what changed on the source since the
 * fingerprint `start` took. An apply worker that is down is explained: the drift is the
 * likely cause, the target's log line the actual one where it can be read; and this
 * migration's own slot, inactive only because its subscriber stopped, is never called a
 * leftover to tear down.
 *
 * Read-only on both servers. Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { readApplyError, type ApplyError } from '../replicate/apply-error.js';
import { readPgconvoySlots } from '../replicate/precheck-rows.js';
import { replicationStatus, type ReplicationStatus } from '../replicate/status.js';
import { tablesStillSyncing } from '../replicate/subscription.js';
import { formatBytes } from '../util/format.js';
import { diffFingerprints, schemaFingerprint } from '../schema/fingerprint.js';
import { driftSummary, readSchemaDrift, type DriftItem } from './schema-drift.js';
import { relayStatus, NO_RELAY_HINT, type RelayStatus } from '../relay/relay-status.js';
import { migrationScope, readOnlineState, type OnlineState } from '../replicate/online-state.js';
import { readFreeze, type FreezeRecord } from '../replicate/freeze-record.js';

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
  /** Source and target schemas compared now (forward replication only, with a source session). */
  drift: DriftItem[] | undefined;
  /** What changed on the source since start's fingerprint: history, not a verdict. */
  sourceChangesSinceStart: string[] | undefined;
  /** Tables whose initial copy by the subscription is not finished (added by sync-schema). */
  syncing: { table: string; state: string }[];
  /** The apply worker's last error, from the target's log when it can be read. */
  applyError: ApplyError | undefined;
  /** When pgconvoy's relay applies the changes (start --via relay): its position and whether it runs. */
  relay: RelayStatus | undefined;
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
  drift: DriftItem[] = [],
  applyError?: ApplyError,
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
        `subscription "${sub.name}" reports ${sub.applyErrorCount ?? 0} apply error(s) (pg_stat_subscription_stats)${applyError ? `, the last: ${applyError.message} (${applyError.logged})` : `: ${r.errorsNote}`}`,
      );
    const failing = drift.length > 0 && (sub.applyErrorCount ?? 0) > 0;
    if (sub.enabled && (sub.workerPid === null || failing)) {
      const cause =
        drift.length > 0
          ? `most likely because of the schema drift listed above (${drift[0]?.kind ?? ''} ${drift[0]?.object ?? ''} ${drift[0]?.change ?? ''}${drift.length > 1 ? `, and ${drift.length - 1} more` : ''}); ${driftSummary(drift)}; the worker restarts by itself once the target fits`
          : applyError
            ? `its last error: ${applyError.message}`
            : "look at the subscribing server's log for the error";
      const state =
        sub.workerPid === null
          ? 'is enabled but its apply worker is not running'
          : 'keeps restarting its apply worker after errors';
      warnings.push(`subscription "${sub.name}" ${state}: ${cause}`);
    }
  }
  return warnings;
}

/**
 * Why a pgconvoy slot on the source is inactive, and what to do. This migration's forward
 * slot is inactive while start copies, or because its subscriber stopped streaming: it
 * keeps the changes the target still needs, so tearing it down would throw the migration
 * away. Only a slot of no migration this target follows is a leftover.
 */
function inactiveSlotAdvice(
  slot: string,
  own: string,
  state: OnlineState,
  r: ReplicationStatus | undefined,
): string {
  if (slot !== own) return ': run pgconvoy teardown for its migration';
  if (state.phase !== 'copying' && state.via === 'relay')
    return ` (this migration's slot, inactive because no relay is running: ${NO_RELAY_HINT}; it keeps every change the target still needs: do not tear it down)`;
  if (state.phase === 'copying')
    return " (this migration's slot: normal while start copies; if no start is running, run pgconvoy teardown)";
  const sub = r?.subscription;
  const why = !sub
    ? 'its subscription is missing on the target'
    : !sub.enabled
      ? 'its subscription is disabled (ALTER SUBSCRIPTION … ENABLE resumes it)'
      : sub.workerPid === null
        ? "its subscription's apply worker is not running (see above)"
        : 'its subscriber is reconnecting';
  return ` (this migration's slot, inactive because ${why}; it keeps every change the target still needs: do not tear it down)`;
}

/** Drift, tables still copying, the apply worker's last error and the source's changes since start. */
async function readSchemaState(
  report: OnlineStatusReport,
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
): Promise<void> {
  const names = report.state.names;
  report.drift = await readSchemaDrift(
    source,
    target,
    ledgerSchema,
    migrationScope(report.state, ledgerSchema),
  );
  report.syncing = await tablesStillSyncing(target, names.subscription);
  const sub = report.replication?.subscription;
  if (sub && (sub.workerPid === null || (sub.applyErrorCount ?? 0) > 0))
    report.applyError = await readApplyError(target, names.subscription);
  const start = report.state.schemaFingerprint;
  if (start)
    report.sourceChangesSinceStart = diffFingerprints(start, await schemaFingerprint(source, ledgerSchema));
  if (report.drift.length > 0)
    report.warnings.push(
      `the source's schema differs from the target's (DDL is not replicated): ${report.drift.length} difference(s), listed above; cutover refuses until they agree`,
    );
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
    drift: undefined,
    sourceChangesSinceStart: undefined,
    syncing: [],
    applyError: undefined,
    relay: undefined,
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
      if (state.phase !== 'copying') await readSchemaState(report, source, target, ledgerSchema);
      if (state.via === 'relay' && state.phase !== 'copying') {
        report.relay = await relayStatus(source, target, ledgerSchema, names.slot);
        if (report.relay.progress?.stopped && !report.relay.running)
          report.warnings.push(`the relay stopped: ${report.relay.progress.stopped}`);
      }
      report.warnings.push(
        ...replicationWarnings(
          report.replication,
          'source',
          report.maxSlotWalKeepBytes,
          report.drift,
          report.applyError,
        ),
      );
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
      const kept = slot.retainedBytes === null ? '?' : formatBytes(slot.retainedBytes);
      report.warnings.push(
        `inactive pgconvoy slot "${slot.name}" on the source keeps ${kept} of WAL${inactiveSlotAdvice(slot.name, names.slot, state, report.replication)}`,
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
