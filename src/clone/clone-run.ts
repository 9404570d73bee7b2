/**
 * One clone run's context, shared by its phases (schema-phase.ts, plan-phase.ts,
 * copy-phase.ts, finish-phase.ts, clone-summary.ts), and the connect step that builds it:
 * both servers, the (filtered) inventory, the queue file, the ledger.
 */
import type pg from 'pg';
import { describeConnection } from '../connect/resolve.js';
import { openOrCreateDatabase } from '../connect/open-or-create.js';
import { closeQuietly } from '../connect/session.js';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { copyableTables, readInventory, type Inventory } from '../inventory/inventory.js';
import { filterInventory } from '../inventory/table-filter.js';
import { readServerInfo, type ServerInfo } from '../inventory/server-info.js';
import { checkSourceLocks, readLockCapacity, type LockCapacity } from '../inventory/lock-capacity.js';
import { ensureLedger } from '../ledger/ledger-schema.js';
import { JobLedger } from '../ledger/jobs.js';
import { Steps } from '../ledger/steps.js';
import { resolveQueueFile, type QueuePlan } from '../plan/queue-plan.js';
import { exportSnapshot, type SnapshotHandle } from '../copy/source-snapshot.js';
import { tableKey } from '../copy/table-columns.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import type { CloneEvent, CloneOptions, PhaseName } from './clone-types.js';
import type { StepTimer } from '../util/step-timer.js';
import type { RunFiles } from './run-files.js';
import { FdwClone } from './via-fdw.js';
import { prepareTarget } from './prepare-target.js';

/** What every phase of one run reads, and the little it changes (target, done, snapshot). */
export interface CloneRun {
  readonly o: CloneOptions;
  readonly started: number;
  readonly files: RunFiles;
  readonly warnings: string[];
  /** Tells o.onEvent, logs to the run directory, collects warnings. */
  readonly emit: (e: CloneEvent) => void;
  readonly phases: StepTimer<PhaseName>;
  readonly source: pg.Client;
  readonly sourceInfo: ServerInfo;
  /** A new session when the target restarted during the copy (copy-phase.ts). */
  target: pg.Client;
  readonly targetInfo: ServerInfo;
  readonly targetCapacity: LockCapacity;
  /** The source's inventory as the filter leaves it: jobs, sequences, analyze. */
  readonly inventory: Inventory;
  /** pg_dump's switches for the same filter. */
  readonly pgDumpArgs: string[];
  /** With --table, the schemas the included tables need (pg_dump dumps none). */
  readonly schemasOfTables: string[];
  readonly queue: QueuePlan | undefined;
  readonly steps: Steps;
  readonly ledger: JobLedger;
  /** Steps the ledger has as done; read again after the phases that add to it. */
  done: Set<string>;
  /** The copy's exported snapshot, held until sequences and large objects are read in it. */
  snapshot: SnapshotHandle | undefined;
  /** `--via fdw`: the source as a foreign server on the target; removed when the run ends. */
  fdw: FdwClone | undefined;
}

export type RunBasics = Pick<CloneRun, 'o' | 'started' | 'files' | 'warnings' | 'emit' | 'phases' | 'source'>;

/**
 * Reads the source, checks the queue file, connects to the target (creating the database when
 * asked) and claims its ledger. The target session is closed again when a check fails.
 */
export async function connectRun(basics: RunBasics): Promise<CloneRun> {
  const { o, source, emit } = basics;
  const sourceInfo = await readServerInfo(source);
  // Before anything else reads or writes: the inventory itself reads every sequence at once.
  await checkSourceLocks(source, o.ledgerSchema);
  // The filter narrows everything after this line: jobs, sequences, analyze, pg_dump.
  const filtered = filterInventory(
    await readInventory(source, o.ledgerSchema, o.lockWaitTimeoutMs),
    o.filter,
  );
  const { inventory } = filtered;
  // A queue file is checked whole, against the source, before anything is written anywhere.
  const queue = o.queueFile
    ? await resolveQueueFile(o.queueFile.text, o.queueFile.fileName, source, inventory, {
        allowGaps: o.queueFile.allowGaps,
      })
    : undefined;
  if (queue) warnQueueGaps(queue, inventory, emit);
  const target = o.targetPrepared
    ? await openOrCreateDatabase(o.target, {
        applicationName: 'pgconvoy clone',
        create: false,
        onCreated: () => undefined,
      })
    : await prepareTarget(o, source, sourceInfo.major, 'pgconvoy clone', emit);
  let fdw: FdwClone | undefined;
  try {
    const targetInfo = await readServerInfo(target);
    const targetCapacity = await readLockCapacity(target);
    emit({
      type: 'info',
      message: `source ${describeConnection(o.source)} (PostgreSQL ${sourceInfo.version}), target ${describeConnection(o.target)} (PostgreSQL ${targetInfo.version})`,
    });
    await ensureLedger(target, o.ledgerSchema);
    await checkPlanOwner(target, o);
    // --via fdw: the target server must read the source before anything more is written.
    // (Not for an online start, which hands in its slot's snapshot: that copy must import it.)
    if (o.via === 'fdw' && !o.planOnly && o.snapshot === undefined)
      fdw = await FdwClone.connect(target, {
        source: o.source,
        sourceFromTarget: o.sourceFromTarget,
        ledgerSchema: o.ledgerSchema,
        onInfo: (message) => emit({ type: 'info', message }),
        onWarning: (message) => emit({ type: 'warning', message }),
      });
    const steps = new Steps(o.ledgerSchema);
    return {
      ...basics,
      ...filtered,
      sourceInfo,
      target,
      targetInfo,
      targetCapacity,
      queue,
      steps,
      ledger: new JobLedger(o.ledgerSchema),
      done: await steps.done(target),
      snapshot: undefined,
      fdw,
    };
  } catch (err) {
    await closeQuietly(target);
    await fdw?.remove(o.target);
    throw err;
  }
}

/**
 * The snapshot this run reads the source in (schema, rows, sequences, large objects): online
 * start's slot snapshot, or one exported now and held until the sequences are read.
 */
export async function runSnapshot(run: CloneRun): Promise<string> {
  if (run.o.snapshot) return run.o.snapshot;
  if (!run.snapshot) {
    // --via fdw: the target's many remote transactions cannot import the snapshot, so the
    // tables are locked against writes (SHARE) until the copy ends: they all see this one point.
    run.snapshot = await exportSnapshot(
      run.o.source,
      run.fdw
        ? { lockAgainstWrites: copyableTables(run.inventory), lockTimeoutMs: DEFAULTS.lockWaitTimeoutMs }
        : {},
    );
    run.emit({
      type: 'info',
      message: `source snapshot ${run.snapshot.name} at WAL ${run.snapshot.lsn ?? '(standby)'}`,
    });
  }
  return run.snapshot.name;
}

function warnQueueGaps(queue: QueuePlan, inventory: Inventory, emit: (e: CloneEvent) => void): void {
  for (const gap of queue.gaps) emit({ type: 'warning', message: `--allow-gaps: ${gap}` });
  const listed = new Set(queue.tables.map((t) => tableKey(t.table)));
  const left = copyableTables(inventory).filter((t) => !listed.has(tableKey(t)));
  if (left.length > 0) {
    emit({
      type: 'warning',
      message: `${left.length} table(s) are not in the queue file and stay empty on the target: ${left
        .slice(0, 8)
        .map((t) => displayName(t.schema, t.name))
        .join(', ')}${left.length > 8 ? ', …' : ''}`,
    });
  }
}

/** One ledger serves one source: refuse to mix two migrations into one target database. */
async function checkPlanOwner(target: pg.Client, o: CloneOptions): Promise<void> {
  const plan = qualifiedName(o.ledgerSchema, 'plan');
  const src = describeConnection(o.source);
  const res = await target.query<{ source: string }>(`SELECT source FROM ${plan} WHERE id = 1`);
  const existing = res.rows[0]?.source;
  if (existing === undefined) {
    await target.query(
      `INSERT INTO ${plan} (id, source, options) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING`,
      [src, JSON.stringify({ jobs: o.jobs })],
    );
    return;
  }
  if (existing !== src) {
    throw new PgconvoyError(
      `the target's ledger (schema "${o.ledgerSchema}") belongs to a migration from ${existing}, not from ${src}`,
      {
        code: 'LEDGER_OTHER_SOURCE',
        exitCode: EXIT.target,
        hint: `resume that migration with its own --source, or use another --ledger-schema (or DROP SCHEMA ${quoteIdent(o.ledgerSchema)} CASCADE to start over)`,
      },
    );
  }
}
