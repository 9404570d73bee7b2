/**
 * What cutover checks: before it touches anything (forward replication streaming, the
 * source's and the target's schemas alike NOW — a change made on both sides passes —, every
 * table's initial copy done, lag under --max-lag), and after the freeze (verify's verdict).
 * A refusal exits 7 and changes nothing; a verify difference exits 6.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, type ErrorCode } from '../errors.js';
import { driftSummary, readSchemaDrift, type DriftItem } from '../online/schema-drift.js';
import { migrationScope, type OnlineState } from '../replicate/online-state.js';
import { replicationStatus, type ReplicationStatus } from '../replicate/status.js';
import { tablesStillSyncing } from '../replicate/subscription.js';
import { NO_RELAY_HINT, relayStatus } from '../relay/relay-status.js';
import { formatBytes } from '../util/format.js';
import { displayName } from '../util/sql.js';
import type { VerifyReport } from '../verify/types.js';
import type { CutoverOptions } from './cutover-types.js';
import { sleep } from '../util/wait.js';

function refuse(
  message: string,
  code: ErrorCode,
  hint: string,
  details?: Record<string, unknown>,
): PgconvoyError {
  return new PgconvoyError(message, { code, hint, exitCode: EXIT.blocked, ...(details ? { details } : {}) });
}

/** The checks before anything is touched. */
export async function checkReady(
  o: Pick<CutoverOptions, 'maxLagBytes' | 'ledgerSchema'>,
  src: pg.Client,
  tgt: pg.Client,
  state: OnlineState,
): Promise<void> {
  const status = await replicationStatus(src, tgt, state.names);
  const sub = status.subscription;
  if (!status.slot || !sub) {
    throw refuse(
      `forward replication is incomplete: ${!status.slot ? `slot "${state.names.slot}" is missing on the source` : `subscription "${state.names.subscription}" is missing on the target`}`,
      'REPLICATION_BROKEN',
      'the target no longer follows the source: run pgconvoy teardown and start again',
    );
  }
  if (status.slot.walStatus === 'lost') {
    throw refuse(
      `replication slot "${state.names.slot}" is lost (the source removed WAL it needed)`,
      'SLOT_LOST',
      'run pgconvoy teardown and start again',
    );
  }
  const drift = await readSchemaDrift(src, tgt, o.ledgerSchema, migrationScope(state, o.ledgerSchema));
  if (drift.length > 0) throw driftError(drift, !sub.enabled || sub.workerPid === null);
  const ready = await waitUntilApplying(src, tgt, state);
  const now = ready.status.subscription ?? sub;
  if (!now.enabled || now.workerPid === null) {
    throw refuse(
      `subscription "${state.names.subscription}" is ${now.enabled ? 'enabled but its apply worker is not running' : 'disabled'}`,
      'SUBSCRIPTION_NOT_RUNNING',
      `the schemas agree, so look at the target server's log for the apply error (errors so far: ${now.applyErrorCount ?? 'unknown before 15'}); pgconvoy status shows the lag`,
    );
  }
  if (ready.syncing.length > 0) {
    throw refuse(
      `the subscription is still copying ${ready.syncing.length} table(s) added after start: ${ready.syncing.map((t) => t.table).join(', ')}`,
      'TABLES_SYNCING',
      'wait until pgconvoy status no longer lists them, then run cutover',
    );
  }
  const lag = ready.status.lagBytes ?? 0;
  if (lag > o.maxLagBytes) {
    throw refuse(
      `the target is ${formatBytes(lag)} behind the source, more than --max-lag ${formatBytes(o.maxLagBytes)}`,
      'LAG_TOO_HIGH',
      'wait until pgconvoy status shows a small lag (writes stay blocked until the target has caught up), or raise --max-lag',
      { lagBytes: lag },
    );
  }
}

/** The checks before anything is touched, when pgconvoy's relay applies the changes. */
export async function checkRelayReady(
  o: Pick<CutoverOptions, 'maxLagBytes' | 'ledgerSchema'>,
  src: pg.Client,
  tgt: pg.Client,
  state: OnlineState,
): Promise<void> {
  const status = await relayStatus(src, tgt, o.ledgerSchema, state.names.slot);
  if (!status.slotFound)
    throw refuse(
      `forward replication is incomplete: slot "${state.names.slot}" is missing on the source`,
      'REPLICATION_BROKEN',
      'the target no longer follows the source: run pgconvoy teardown and start again',
    );
  if (status.walStatus === 'lost')
    throw refuse(
      `replication slot "${state.names.slot}" is lost (the source removed WAL it needed)`,
      'SLOT_LOST',
      'run pgconvoy teardown and start again',
    );
  const drift = await readSchemaDrift(src, tgt, o.ledgerSchema);
  if (drift.length > 0) throw driftError(drift, !status.running);
  if (!status.running)
    throw refuse(
      `no relay is running: nothing streams slot "${state.names.slot}"${status.progress?.stopped ? ` (the last one stopped: ${status.progress.stopped})` : ''}`,
      'RELAY_NOT_RUNNING',
      `${NO_RELAY_HINT}; nothing was changed`,
    );
  const lag = status.lagBytes ?? 0;
  if (lag > o.maxLagBytes)
    throw refuse(
      `the target is ${formatBytes(lag)} behind the source, more than --max-lag ${formatBytes(o.maxLagBytes)}`,
      'LAG_TOO_HIGH',
      'wait until pgconvoy status shows a small lag (writes stay blocked until the relay has caught up), or raise --max-lag',
      { lagBytes: lag },
    );
}

/** How long cutover waits for an apply worker to restart and for new tables to finish copying. */
const SETTLE_MS = 30_000;

/**
 * An apply worker that stopped on an error the operator has since fixed is restarted by the
 * target within wal_retrieve_retry_interval (5 s by default); tables sync-schema added
 * finish their copy. Waits a bounded time for both, then returns what it sees.
 */
async function waitUntilApplying(
  src: pg.Client,
  tgt: pg.Client,
  state: OnlineState,
): Promise<{ status: ReplicationStatus; syncing: { table: string; state: string }[] }> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const status = await replicationStatus(src, tgt, state.names);
    const syncing = await tablesStillSyncing(tgt, state.names.subscription);
    const sub = status.subscription;
    const running = sub !== undefined && sub.enabled && sub.workerPid !== null;
    if ((running && syncing.length === 0) || !sub?.enabled || Date.now() > deadline)
      return { status, syncing };
    await sleep(500);
  }
}

/** The refusal that lists the drift: what sync-schema would apply, and what is left to the operator. */
export function driftError(drift: DriftItem[], workerDown: boolean): PgconvoyError {
  const summary = driftSummary(drift);
  return refuse(
    `the source's schema differs from the target's (DDL is not replicated): ${drift.map((d) => `${d.kind} ${d.object} ${d.change}`).join('; ')}${workerDown ? '; the apply worker is not running, most likely because of this' : ''}`,
    'SCHEMA_DRIFT',
    `${summary}; then run cutover`,
    { drift },
  );
}

/** Verify's verdict, except that sequences moved on by --sequence-margin are meant to differ. */
export function verifyOk(report: VerifyReport, margin: number): boolean {
  if (report.ok) return true;
  if (report.tables.some((t) => t.status !== 'match')) return false;
  return report.schema.every(
    (d) =>
      d.severity !== 'difference' ||
      (margin > 0 && d.kind === 'sequence' && /^last_value /.test(d.source ?? '')),
  );
}

export function mismatchError(report: VerifyReport): PgconvoyError {
  const tables = report.tables.filter((t) => t.status !== 'match');
  const schema = report.schema.filter((d) => d.severity === 'difference');
  const list = [
    ...tables.map(
      (t) =>
        `${displayName(t.schema, t.name)} ${t.status} (rows ${t.rows.source ?? '-'} vs ${t.rows.target ?? '-'})`,
    ),
    ...schema.map((d) => `${d.kind} ${d.object} ${d.problem}`),
  ];
  return new PgconvoyError(
    `verification found differences after the freeze: ${list.slice(0, 10).join('; ')}${list.length > 10 ? ` … and ${list.length - 10} more` : ''}`,
    {
      code: 'VERIFY_MISMATCH',
      exitCode: EXIT.mismatch,
      hint: 'writes stay frozen on the source and forward replication is still in place; run pgconvoy verify to list the rows, fix the cause, then run cutover again, or run pgconvoy rollback to give the source its logins back',
      details: { verify: report },
    },
  );
}
