/**
 * The copy phase of a clone: N workers from one snapshot (copy/copy-pool.ts), each table's
 * indexes built as soon as its rows are in (index-builder.ts). A table is complete when its
 * last job commits, whichever worker or machine ran it: a poller reads that from the ledger,
 * at once when a chunk of this run commits, else every COMPLETE_TABLES_POLL_MS (other machines).
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import { closeQuietly } from '../connect/session.js';
import { PgconvoyError } from '../errors.js';
import { lockBudget } from '../inventory/lock-capacity.js';
import { runCopyPool } from '../copy/copy-pool.js';
import type { PullContext } from '../copy/copy-worker.js';
import type { JobRow } from '../ledger/jobs.js';
import { EXIT } from '../defaults.js';
import { tableKey } from '../copy/table-columns.js';
import { isTransient } from '../sqlstate.js';
import { backoffMs, retry } from '../util/wait.js';
import { runSnapshot, type CloneRun } from './clone-run.js';
import { IndexBuilder } from './index-builder.js';
import type { ClonedSchema } from './schema-phase.js';
import { loadBlockers } from '../copy/target-checks.js';
import { tablesToPull } from './via-fdw.js';

/** How often the poller looks for tables completed by other workers. */
const COMPLETE_TABLES_POLL_MS = 500;

export interface CopyResult {
  /** Undefined with `--schema skip`. */
  indexBuilder: IndexBuilder | undefined;
  /** The snapshot the rows were read in. */
  snapshotName: string | undefined;
}

export async function runCopyPhase(run: CloneRun, schema: ClonedSchema | undefined): Promise<CopyResult> {
  const { o, emit, ledger } = run;
  const replicationRole = await checkTriggersOff(run);
  const snapshotName = await runSnapshot(run);
  const jobs = await ledger.list(run.target);
  const pullTables = run.fdw ? tablesToPull(jobs) : [];
  const pull = await pullContext(run, pullTables);
  const indexBuilder = schema ? newIndexBuilder(run, schema, jobs) : undefined;
  await run.phases.run('copy', false, async () => {
    // Tables already complete from an earlier run get their indexes first.
    const markReady = async (client: pg.Client) => {
      for (const table of await ledger.completeTables(client)) indexBuilder?.tableReady(table);
    };
    await markReady(run.target);
    // Chunked tables are complete when their last chunk commits, whichever worker (or machine) did it.
    let copying = true;
    const wake = new Wake();
    const poller = (async () => {
      while (copying) {
        await wake.sleep(COMPLETE_TABLES_POLL_MS);
        await markReady(run.target).catch(() => undefined);
      }
    })();
    try {
      await runCopyPool({
        source: o.source,
        target: o.target,
        ledger,
        snapshot: snapshotName,
        // Online start hands in the slot's snapshot: a copy from any other is worthless.
        snapshotRequired: o.snapshot !== undefined,
        jobs: o.jobs,
        excludeColumns: o.excludeColumns,
        workerPrefix: o.workerPrefix,
        maxAttempts: o.maxAttempts,
        replicationRole,
        signal: o.signal,
        ...(pull ? { pull } : {}),
        onEvent: (e) => {
          if (e.type === 'job-done' && e.job.chunkCount === 1) indexBuilder?.tableReady(e.job.table);
          // Maybe the table's last chunk: the poller looks now, not at its next round.
          else if (e.type === 'job-done') wake.now();
          emit(e);
        },
      });
    } finally {
      copying = false;
      wake.now();
      await poller;
      indexBuilder?.copyDone();
    }
    // The target may have restarted during the copy (workers reconnect by themselves): so does this session.
    run.target = await reconnectIfGone(run);
    await markReady(run.target);
    run.files.writeStatus(await ledger.list(run.target));
  });
  return { indexBuilder, snapshotName };
}

/** `--via fdw`: the foreign tables the workers pull from, under the snapshot session's write locks. */
async function pullContext(
  run: CloneRun,
  tables: ReturnType<typeof tablesToPull>,
): Promise<PullContext | undefined> {
  if (!run.fdw || !run.snapshot) return undefined;
  const foreignTables = await run.fdw.foreignTables(run.target, run.snapshot.client, tables);
  if (tables.length > 0)
    run.emit({
      type: 'info',
      message: `${tables.length} source table(s) locked against writes (SHARE) until the copy ends: the target pulls them in many transactions, all seeing this one point in time`,
    });
  return { foreignTables, lockHolderPid: run.snapshot.pid };
}

/**
 * Triggers and foreign keys must not fire during the load. Returns whether the target role may
 * set session_replication_role (then the workers do); without it, nothing may be there to fire.
 */
async function checkTriggersOff(run: CloneRun): Promise<boolean> {
  const { role } = run.targetInfo;
  if (role.canSetReplicationRole) return true;
  const blockers = await loadBlockers(run.target);
  if (blockers.length > 0) {
    throw new PgconvoyError(
      `the target role "${role.name}" may not set session_replication_role, and ${blockers[0]} would fire during the load`,
      {
        code: 'TRIGGERS_WOULD_FIRE',
        exitCode: EXIT.target,
        hint: 'connect to the target as a superuser, or on PostgreSQL 15+ GRANT SET ON PARAMETER session_replication_role TO that role, or let pgconvoy create the schema (foreign keys and triggers then come after the data)',
        details: { blockers },
      },
    );
  }
  return false;
}

/** A sleep that a chunk's commit cuts short. */
class Wake {
  private wakeUp: (() => void) | undefined;
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  now(): void {
    this.wakeUp?.();
  }
}

function newIndexBuilder(run: CloneRun, schema: ClonedSchema, jobs: readonly JobRow[]): IndexBuilder {
  const { o, emit } = run;
  const inventoryBytes = new Map(run.inventory.tables.map((t) => [tableKey(t), t.bytes]));
  // Tables the final phase VACUUMs before it analyzes them (finish-phase.ts) wait for it.
  const vacuumed = new Set(
    o.vacuum ? jobs.filter((j) => j.chunkCount > 1 || o.via === 'fdw').map((j) => tableKey(j.table)) : [],
  );
  const analyzeDone = run.done.has('analyze');
  return new IndexBuilder({
    tools: schema.tools,
    dump: schema.dump,
    target: o.target,
    steps: run.steps,
    concurrency: o.indexJobs,
    tailConcurrency: Math.max(o.jobs, o.indexJobs),
    analyzeEarly: (t) => !analyzeDone && !vacuumed.has(tableKey(t)),
    done: run.done,
    noOwner: o.noOwner,
    noPrivileges: o.noPrivileges,
    maintenanceWorkMem: o.maintenanceWorkMem,
    maxAttempts: o.maxAttempts,
    signal: o.signal,
    tableBytes: (t) => inventoryBytes.get(tableKey(t)) ?? 0,
    lockBudget: lockBudget(run.targetCapacity, o.jobs + o.indexJobs),
    onBuilt: (tables, items, seconds) => emit({ type: 'tables-indexed', tables, items, seconds }),
    onForeignKeys: (count, seconds) =>
      emit({ type: 'info', message: `${count} foreign key(s) added in ${seconds.toFixed(1)} s` }),
  });
}

/** Returns a working target session: the same one, or a new one after the server came back. */
async function reconnectIfGone(run: CloneRun): Promise<pg.Client> {
  const { target, o } = run;
  try {
    await target.query('SELECT 1');
    return target;
  } catch (err) {
    if (!isTransient(err)) throw err;
  }
  await closeQuietly(target);
  const fresh = await retry(() => openClient(o.target, { applicationName: 'pgconvoy clone' }), {
    retryable: isTransient,
    attempts: o.maxAttempts * 3,
    delayMs: (attempt) => backoffMs(Math.min(attempt, 8)),
  });
  run.emit({ type: 'info', message: 'reconnected to the target' });
  return fresh;
}
