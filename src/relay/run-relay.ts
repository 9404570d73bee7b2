/**
 * `pgconvoy replicate` (and the end of `start --via relay`): the relay. pgconvoy, where it
 * reaches both servers, streams the slot's changes and applies them to the target itself,
 * so the target needs no path to the source and no right to subscribe.
 *
 *   ledger position → START_REPLICATION from it → per source transaction, in commit order:
 *   changes into the group's target transaction (or, streamed in progress, into a spill
 *   file until Stream Commit) → group COMMIT with the ledger's new position → standby
 *   status update with that position as flushed
 *
 * Exactly once: the position moves in the same target transaction as the rows; a restart
 * asks the slot for the changes after it and skips any transaction whose commit is not
 * after it (the slot's confirmed position may trail the ledger's by one group). A group
 * ends at a transaction boundary when the stream has nothing more waiting, or when it
 * reaches its size or age bound; so the relay commits often when it keeps up and in big
 * groups when it falls behind.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import os from 'node:os';
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { migrationScope, requireOnlineState, type OnlineState } from '../replicate/online-state.js';
import { excludedKey } from '../copy/table-columns.js';
import { ApplySession } from './apply-session.js';
import { formatLsn, parseLsn } from './lsn.js';
import { markRelayRunning, markRelayStopped, readRelayProgress } from './relay-progress.js';
import { RelayLoop, type RelayEvent } from './relay-loop.js';
import { startReplication, type ReplicationStream } from './replication-stream.js';
import { StreamSpill } from './stream-spill.js';

export interface RelayOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  /** Ends the relay once the current group is committed. */
  signal?: AbortSignal;
  /** A group commits at this many changes … */
  maxGroupChanges?: number;
  /** … or when it is this old (ms), at the next transaction boundary. */
  maxGroupMs?: number;
  /** Standby status updates at least this often (ms); well under wal_sender_timeout. */
  statusIntervalMs?: number;
  /** Progress every this many ms. */
  progressMs?: number;
  onEvent: (e: RelayEvent) => void;
}

export type { RelayEvent, RelayProgressEvent } from './relay-loop.js';

export interface RelayResult {
  /** Why it stopped: asked to, or cutover finished and dropped the slot. */
  reason: 'stopped' | 'cutover-done';
  appliedLsn: string;
  changes: number;
  transactions: number;
  seconds: number;
}

export async function runRelay(o: RelayOptions): Promise<RelayResult> {
  const started = Date.now();
  const tgt = await openClient(o.target, { applicationName: 'pgconvoy relay' });
  let apply: ApplySession | undefined;
  let stream: ReplicationStream | undefined;
  let spill: StreamSpill | undefined;
  const timers: NodeJS.Timeout[] = [];
  let stopReason = 'stopped';
  try {
    const start = await readRelayStart(tgt, o);
    if ('reason' in start) return start;
    const { state, appliedLsn } = start;
    const resumeLsn = parseLsn(appliedLsn);
    // Columns start left out of the copy (--exclude-column) are left out of the changes too.
    const excluded = migrationScope(state, o.ledgerSchema).excludeColumns ?? new Set<string>();
    apply = await ApplySession.open(o.target, o.ledgerSchema, (schema, name, column) =>
      excluded.has(excludedKey({ schema, name }, column)),
    );
    if (!apply.replicaRole)
      o.onEvent({
        type: 'warning',
        message:
          'the target role may not set session_replication_role: triggers and foreign-key checks fire while the relay applies',
      });
    spill = await StreamSpill.create();
    stream = await startReplication(o.source, state.names.slot, state.names.publication, resumeLsn);
    await markRelayRunning(tgt, o.ledgerSchema, os.hostname(), process.pid);
    o.onEvent({
      type: 'info',
      message: `relay streaming slot "${state.names.slot}" from ${appliedLsn} (source ${stream.major}, protocol ${stream.streaming ? '2, large transactions streamed' : '1'})`,
    });
    const loop = new RelayLoop(stream, apply, spill, resumeLsn, {
      maxGroupChanges: o.maxGroupChanges ?? 20_000,
      maxGroupMs: o.maxGroupMs ?? 500,
      onEvent: o.onEvent,
    });
    loop.startTimers(timers, o.statusIntervalMs ?? 10_000, o.progressMs ?? 1000);
    loop.watch(o.signal);
    await loop.run();
    return {
      reason: 'stopped',
      appliedLsn: formatLsn(loop.confirmed),
      changes: loop.totalChanges,
      transactions: loop.totalTransactions,
      seconds: (Date.now() - started) / 1000,
    };
  } catch (err) {
    await apply?.rollback();
    const ended = await endedByCutover(tgt, o.ledgerSchema, err);
    if (ended) {
      stopReason = 'cutover finished: the slot was dropped';
      const p = await readRelayProgress(tgt, o.ledgerSchema).catch(() => undefined);
      return {
        reason: 'cutover-done',
        appliedLsn: p?.appliedLsn ?? '?',
        changes: 0,
        transactions: 0,
        seconds: (Date.now() - started) / 1000,
      };
    }
    stopReason = errorMessage(err);
    throw err;
  } finally {
    for (const t of timers) clearInterval(t);
    await stream?.close();
    await apply?.close();
    await spill?.close();
    await markRelayStopped(tgt, o.ledgerSchema, stopReason).catch(() => undefined);
    await tgt.end().catch(() => undefined);
  }
}

/**
 * The migration's state and the ledger's relay position, checked: a relay migration past
 * its copy; or, once cutover is done, the result to return at once.
 */
async function readRelayStart(
  tgt: pg.Client,
  o: RelayOptions,
): Promise<RelayResult | { state: OnlineState; appliedLsn: string }> {
  const state = await requireOnlineState(tgt, o.ledgerSchema, o.target);
  if (state.via !== 'relay')
    throw new PgconvoyError(
      'this online migration replicates through a subscription on the target, not a relay',
      {
        code: 'RELAY_WRONG_MODE',
        exitCode: EXIT.usage,
        hint: 'pgconvoy status shows how it replicates; the relay serves migrations begun with pgconvoy start --via relay',
      },
    );
  if (state.phase === 'done' || state.phase === 'rolled-back')
    return {
      reason: 'cutover-done',
      appliedLsn: state.cutoverLsn ?? '0/0',
      changes: 0,
      transactions: 0,
      seconds: 0,
    };
  if (state.phase === 'copying')
    throw new PgconvoyError('the initial copy of this online migration has not finished', {
      code: 'ONLINE_PHASE',
      hint: 'pgconvoy start --via relay runs the relay itself once its copy is done; if that start stopped, run pgconvoy teardown, then start again',
    });
  const progress = await readRelayProgress(tgt, o.ledgerSchema);
  if (!progress)
    throw new PgconvoyError('the ledger holds no relay position for this migration', {
      code: 'LEDGER_DAMAGED',
      exitCode: EXIT.target,
      hint: 'the position is written when start --via relay finishes its copy; without it the relay cannot know what the target holds: run pgconvoy teardown, then start again',
    });
  return { state, appliedLsn: progress.appliedLsn };
}

/** The walsender was ended because cutover finished (phase done, slot dropped). */
async function endedByCutover(tgt: pg.Client, schema: string, err: unknown): Promise<boolean> {
  const code = serverErrorFields(err)?.code;
  if (code !== undefined && !code.startsWith('57') && !code.startsWith('08') && code !== '42704')
    return false;
  try {
    const state = await requireOnlineState(tgt, schema, { side: 'target' } as ConnectionSpec);
    return (
      state.phase === 'done' ||
      state.phase === 'rolled-back' ||
      typeof state.detail.forwardDroppedAt === 'string'
    );
  } catch {
    return false;
  }
}
