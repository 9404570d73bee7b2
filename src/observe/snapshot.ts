/**
 * Everything the dashboard and /metrics show about one target database, read from its
 * ledger (and, when a source session is at hand, the replication there). Read-only, and
 * the same whoever reads it: the process doing the work, `pgconvoy serve` on another
 * machine, or after a crash.
 */
import { phaseSince } from '../replicate/online-state.js';
import type pg from 'pg';
import { indexStepName } from '../clone/index-builder.js';
import { readLedgerStatus, type LedgerStatus } from '../ledger/ledger-status.js';
import { readOnlineStatus, type OnlineStatusReport } from '../online/online-status.js';
import { parseLsn } from '../relay/lsn.js';
import { readRelayProgress } from '../relay/relay-progress.js';
import { displayName } from '../util/sql.js';
import { ledgerPhase, nextStep } from './next-step.js';

export type TableState = 'pending' | 'copying' | 'done' | 'failed';

export interface TableProgress {
  schema: string;
  name: string;
  /** `schema.name` as pgconvoy prints it. */
  display: string;
  rows: number;
  bytes: number;
  estimatedBytes: number;
  jobs: { pending: number; running: number; done: number; failed: number };
  /** Copy seconds of its done jobs, added up. */
  seconds: number;
  /** Its indexes and constraints are built (step `indexes:<table>` done). */
  indexed: boolean;
  state: TableState;
}

export interface OnlineView {
  phase: string;
  since: string | undefined;
  slot: string;
  direction: 'forward' | 'back' | undefined;
  lagBytes: number | undefined;
  lagSeconds: number | undefined;
  retainedWalBytes: number | undefined;
  slotActive: boolean | undefined;
  walStatus: string | undefined;
  applyErrors: number | undefined;
  /** Writes blocked on the source: recorded at the end of cutover, counting while frozen. */
  writesBlockedSeconds: number | undefined;
  frozen: boolean;
  warnings: string[];
}

/** The relay of `start --via relay` / `replicate`, from the ledger (and the source when at hand). */
export interface RelayView {
  appliedLsn: string;
  /** The applied LSN as a byte position in the source's WAL. */
  appliedPosition: number;
  /** When the relay last committed a group or confirmed it had caught up. */
  appliedAt: string;
  /** Changes (rows) and source transactions applied since start: ledger counters. */
  changes: number;
  transactions: number;
  /** Whether a relay streams the slot now; undefined without a source session. */
  running: boolean | undefined;
  /** `host pid` of the relay that last wrote. */
  by: string | undefined;
  /** Why the last relay stopped (undefined while one runs). */
  stopped: string | undefined;
  /** Source WAL after the applied position; undefined without a source session. */
  lagBytes: number | undefined;
}

export interface Snapshot {
  at: string;
  ledger: boolean;
  phase: string;
  source: string | undefined;
  counts: LedgerStatus['counts'];
  rowsDone: number;
  bytesDone: number;
  bytesEstimated: number;
  /** The estimates of the done jobs: progress in the same unit as bytesEstimated. */
  estimatedBytesDone: number;
  tables: TableProgress[];
  workers: { worker: string; job: number; table: string; chunk: string }[];
  failed: { table: string; chunk: string; attempts: number; error: string }[];
  steps: string[];
  /** Copy seconds of every done job (the chunk-duration histogram). */
  chunkSeconds: number[];
  online: OnlineView | undefined;
  relay: RelayView | undefined;
  next: string | undefined;
}

function tableProgress(s: LedgerStatus): TableProgress[] {
  const running = new Set(s.running.map((r) => r.job.id));
  const steps = new Set(s.steps);
  const byTable = new Map<string, TableProgress>();
  for (const j of s.jobs) {
    const key = JSON.stringify([j.table.schema, j.table.name]);
    let t = byTable.get(key);
    if (!t) {
      t = {
        schema: j.table.schema,
        name: j.table.name,
        display: displayName(j.table.schema, j.table.name),
        rows: 0,
        bytes: 0,
        estimatedBytes: 0,
        jobs: { pending: 0, running: 0, done: 0, failed: 0 },
        seconds: 0,
        indexed: steps.has(indexStepName(j.table)),
        state: 'pending',
      };
      byTable.set(key, t);
    }
    t.estimatedBytes += j.estimatedBytes;
    if (j.state === 'done') {
      t.rows += j.rows ?? 0;
      t.bytes += j.bytes ?? 0;
      t.seconds += j.seconds ?? 0;
    }
    t.jobs[running.has(j.id) ? 'running' : j.state]++;
  }
  for (const t of byTable.values()) {
    const total = t.jobs.pending + t.jobs.running + t.jobs.done + t.jobs.failed;
    t.state =
      t.jobs.failed > 0
        ? 'failed'
        : t.jobs.done === total
          ? 'done'
          : t.jobs.running > 0 || t.jobs.done > 0
            ? 'copying'
            : 'pending';
  }
  return [...byTable.values()];
}

function onlineView(o: OnlineStatusReport, now: number): OnlineView {
  const s = o.state;
  const since = phaseSince(s);
  const frozen = o.freeze !== undefined && o.freeze.releasedAt === null;
  const r = o.replication;
  return {
    phase: s.phase,
    since: since?.toISOString(),
    slot: s.names.slot,
    direction: o.direction,
    // The relay's position is the ledger's (the slot's confirmed position trails it by a group).
    lagBytes: o.relay?.lagBytes ?? r?.lagBytes,
    lagSeconds: r?.lagSeconds,
    retainedWalBytes: r?.slot?.retainedWalBytes ?? undefined,
    slotActive: r?.slot?.active,
    walStatus: r?.slot?.walStatus ?? undefined,
    applyErrors: r?.subscription?.applyErrorCount,
    writesBlockedSeconds:
      s.writesBlockedMs !== null
        ? s.writesBlockedMs / 1000
        : frozen && o.freeze
          ? (now - o.freeze.recordedAt.getTime()) / 1000
          : undefined,
    frozen,
    warnings: o.warnings,
  };
}

/** The relay's figures: the ledger's position and counters, the source's view when it was read. */
async function relayView(
  target: pg.Client,
  online: OnlineStatusReport | undefined,
  ledgerSchema: string,
): Promise<RelayView | undefined> {
  if (online?.state.via !== 'relay') return undefined;
  const status = online.relay;
  const p = status?.progress ?? (await readRelayProgress(target, ledgerSchema));
  if (!p) return undefined;
  return {
    appliedLsn: p.appliedLsn,
    appliedPosition: Number(parseLsn(p.appliedLsn)),
    appliedAt: p.appliedAt.toISOString(),
    changes: p.changes,
    transactions: p.transactions,
    running: status?.running,
    by: p.host !== null && p.pid !== null ? `${p.host} ${p.pid}` : undefined,
    stopped: p.stopped ?? undefined,
    lagBytes: status?.lagBytes,
  };
}

/** Reads the snapshot; `source` adds replication lag and retained WAL of an online migration. */
export async function readSnapshot(
  target: pg.Client,
  source: pg.Client | undefined,
  ledgerSchema: string,
): Promise<Snapshot> {
  const status = await readLedgerStatus(target, ledgerSchema);
  const online = status.exists ? await readOnlineStatus(target, source, ledgerSchema) : undefined;
  const now = Date.now();
  return {
    at: new Date(now).toISOString(),
    ledger: status.exists,
    phase: online ? `online: ${online.state.phase}` : ledgerPhase(status),
    source: online?.state.source ?? status.source,
    counts: status.counts,
    rowsDone: status.rowsDone,
    bytesDone: status.bytesDone,
    bytesEstimated: status.bytesEstimated,
    estimatedBytesDone: status.jobs
      .filter((j) => j.state === 'done')
      .reduce((n, j) => n + j.estimatedBytes, 0),
    tables: tableProgress(status),
    workers: status.running.map((r) => ({
      worker: r.worker,
      job: r.job.id,
      table: displayName(r.job.table.schema, r.job.table.name),
      chunk: r.job.chunkLabel,
    })),
    failed: status.failed.map((j) => ({
      table: displayName(j.table.schema, j.table.name),
      chunk: j.chunkLabel,
      attempts: j.attempts,
      error: j.error ?? '',
    })),
    steps: status.steps,
    chunkSeconds: status.jobs.filter((j) => j.state === 'done' && j.seconds !== null).map((j) => j.seconds!),
    online: online ? onlineView(online, now) : undefined,
    relay: await relayView(target, online, ledgerSchema),
    next: nextStep(status, online?.state.phase),
  };
}
