/**
 * Applying a long part of the schema (pre-data, the final post-data) in transactions that fit
 * the target's lock table (see schema/batches.ts), each committed with its ledger mark: the
 * step's progress (how many units, in order, are in) and the marks of the units it holds.
 * The last batch also marks the step done. A rerun reads the progress and resumes with the
 * next unit; it refuses when the unit it would continue after is not the one recorded (the
 * source's schema changed in between).
 */
import type pg from 'pg';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import type { LockCapacity } from '../inventory/lock-capacity.js';
import type { Steps } from '../ledger/steps.js';
import { packBatches, unitFingerprint, unitLocks, type SchemaUnit } from '../schema/batches.js';
import type { PgTools } from '../schema/pg-tools.js';
import { schemaSql } from '../schema/index.js';
import type { SchemaDump } from '../schema/types.js';
import { applySqlAtomically } from './apply-sql.js';

export interface BatchedApplyOptions {
  tools: PgTools;
  dump: SchemaDump;
  target: ConnectionSpec;
  /** A session on the target, to read the progress of an earlier run. */
  client: pg.Client;
  steps: Steps;
  /** The step marked done by the last batch ("schema", "post-data"). */
  step: string;
  stepDetail: unknown;
  /** In the order they must be applied (orderUnits). */
  units: SchemaUnit[];
  /** Locks one batch may take (lockBudget). */
  budget: number;
  capacity: LockCapacity;
  /** "the schema (pre-data)": how errors name the step. */
  what: string;
  applicationName: string;
  settings?: Record<string, string>;
  noOwner: boolean;
  noPrivileges: boolean;
  signal: AbortSignal | undefined;
  onInfo: (message: string) => void;
}

interface Progress {
  units: number;
  of: number;
  last: string;
}

export const progressStepName = (step: string): string => `${step}:progress`;

/** How many units an earlier run committed, checked against the units of this run. */
async function resumeAt(o: BatchedApplyOptions): Promise<number> {
  const progress = await o.steps.detail<Progress>(o.client, progressStepName(o.step));
  if (!progress || progress.units === 0) return 0;
  const last = o.units[progress.units - 1];
  if (!last || unitFingerprint(last) !== progress.last) {
    throw new PgconvoyError(
      `the source's schema changed since the interrupted run: ${progress.units} of its ${progress.of} items of ${o.what} are on the target, and they no longer match the source's`,
      {
        code: 'SCHEMA_CHANGED',
        exitCode: EXIT.target,
        hint: 'the target holds part of the old schema: drop the target database (or its objects and the ledger schema) and run the same command again',
        details: { recorded: progress, now: last ? unitFingerprint(last) : undefined },
      },
    );
  }
  return progress.units;
}

function progressMark(o: BatchedApplyOptions, applied: number): string {
  const progress: Progress = {
    units: applied,
    of: o.units.length,
    last: unitFingerprint(o.units[applied - 1]!),
  };
  return o.steps.markDoneScript(progressStepName(o.step), progress);
}

function render(o: BatchedApplyOptions, batch: SchemaUnit[]): Promise<string> {
  return schemaSql({
    tools: o.tools,
    dump: o.dump,
    entries: batch.flatMap((u) => u.entries),
    noOwner: o.noOwner,
    noPrivileges: o.noPrivileges,
  });
}

/** Applies `units` in batches; a rerun resumes after the last committed batch. */
export async function applyInBatches(o: BatchedApplyOptions): Promise<void> {
  const start = await resumeAt(o);
  const batches = packBatches(o.units.slice(start), o.budget);
  if (batches.length === 0) {
    await o.steps.markDone(o.client, o.step, o.stepDetail);
    return;
  }
  if (batches.length > 1 || start > 0) {
    o.onInfo(
      `${o.what}: ${o.units.length - start} item(s) in ${batches.length} transaction(s) of at most ${o.budget} locks` +
        ` (the target's lock table: max_locks_per_transaction ${o.capacity.maxLocksPerTransaction})` +
        (start > 0 ? `; ${start} item(s) were already in` : ''),
    );
  }
  let applied = start;
  // The next batch's SQL is rendered (pg_restore) while the current one applies (psql).
  let next = render(o, batches[0]!);
  for (let i = 0; i < batches.length; i++) {
    const batch = batches[i]!;
    const sql = await next;
    if (i + 1 < batches.length) next = render(o, batches[i + 1]!);
    next.catch(() => undefined); // awaited in the next round; a failure here surfaces there
    const marks = [progressMark(o, applied + batch.length)];
    for (const unit of batch)
      for (const m of unit.marks) marks.push(o.steps.markDoneScript(m, { before: true }));
    if (i === batches.length - 1) marks.push(o.steps.markDoneScript(o.step, o.stepDetail));
    const locks = batch.reduce((s, u) => s + unitLocks(u), 0);
    const label = batches.length > 1 ? `${o.what}, transaction ${i + 1} of ${batches.length}` : o.what;
    await applySqlAtomically({
      tools: o.tools,
      target: o.target,
      sql,
      ledgerSql: marks.join('\n'),
      what: label,
      progress:
        `${applied} of the ${o.units.length} items of ${o.what} are in (committed in earlier transactions), ` +
        `this transaction's ${batch.length} rolled back; the same command resumes with them`,
      locks: { capacity: o.capacity, locks },
      applicationName: o.applicationName,
      ...(o.settings ? { settings: o.settings } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
    applied += batch.length;
  }
}
