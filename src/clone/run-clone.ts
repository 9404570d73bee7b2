/**
 * `pgconvoy clone`: the offline copy of a whole database, phase by phase.
 *
 *   connect (clone-run.ts) → schema (pg_dump, pre-data applied in transactions that fit the
 *   target's lock table: schema-phase.ts) → plan jobs into the ledger (plan-phase.ts) → copy
 *   with N workers from one snapshot, each table's indexes built as soon as its rows are in
 *   (copy-phase.ts) → sequences → large objects → final post-data (foreign keys, triggers, …)
 *   → materialized views → ANALYZE (finish-phase.ts)
 *
 * Every phase is recorded in the ledger on the target, in the same transaction as its work
 * where the work is transactional, so running the same command again resumes: done jobs and
 * steps are skipped, the rest is redone, nothing is duplicated.
 */
import { openClient } from '../connect/open-client.js';
import { closeQuietly } from '../connect/session.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { connectRun, type CloneRun, type RunBasics } from './clone-run.js';
import type { CloneEvent, CloneOptions, CloneSummary, PhaseName } from './clone-types.js';
import { summarize } from './clone-summary.js';
import { runCopyPhase } from './copy-phase.js';
import { drainIndexes, runFinishPhases, runSnapshotSteps } from './finish-phase.js';
import { StepTimer } from '../util/step-timer.js';
import { runPlanPhase } from './plan-phase.js';
import { RunFiles } from './run-files.js';
import { runSchemaPhase } from './schema-phase.js';

export type {
  ChunkPlanner,
  CloneEvent,
  CloneOptions,
  CloneSummary,
  PhaseName,
  TableSummary,
} from './clone-types.js';
export { chunkedTables, defaultWorkerPrefix, wholeTables } from './chunk-planners.js';

export async function runClone(o: CloneOptions): Promise<CloneSummary> {
  const files = new RunFiles(o.runDir);
  const warnings: string[] = [];
  const emit = (e: CloneEvent) => {
    if (e.type === 'warning') warnings.push(e.message);
    if (e.type !== 'bytes') files.log(JSON.stringify(e));
    o.onEvent(e);
  };
  const basics: Omit<RunBasics, 'source'> = {
    o,
    started: Date.now(),
    files,
    warnings,
    emit,
    phases: new StepTimer<PhaseName>((e) =>
      emit({
        type: 'phase',
        phase: e.name,
        state: e.state,
        ...(e.ms === undefined ? {} : { seconds: e.ms / 1000 }),
        ...(e.detail === undefined ? {} : { detail: e.detail }),
      }),
    ),
  };
  const source = await openClient(o.source, { applicationName: 'pgconvoy clone' });
  let run: CloneRun | undefined;
  try {
    run = await connectRun({ ...basics, source });
    return await clonePhases(run);
  } finally {
    await run?.snapshot?.close();
    await run?.fdw?.remove(run.o.target);
    await closeQuietly(source);
    await closeQuietly(run?.target);
  }
}

async function clonePhases(run: CloneRun): Promise<CloneSummary> {
  const schema = await runSchemaPhase(run);
  const planned = await runPlanPhase(run);
  if (run.o.planOnly) return summarize(run, planned, undefined, true);
  const copy = await runCopyPhase(run, schema);
  if (run.o.signal?.aborted) throw interrupted();
  await warnEarlierSnapshots(run, copy.snapshotName);
  await runSnapshotSteps(run);
  await drainIndexes(run, copy);
  const jobs = await run.ledger.list(run.target);
  if (jobs.some((j) => j.state !== 'done')) return summarize(run, jobs, copy.snapshotName, false);
  await runFinishPhases(run, schema, copy);
  return summarize(run, await run.ledger.list(run.target), copy.snapshotName, true);
}

/** A resumed clone holds rows read at more than one instant: say so, and how to check. */
async function warnEarlierSnapshots(run: CloneRun, snapshot: string | undefined): Promise<void> {
  if (!snapshot) return;
  const earlier = await run.ledger.doneInOtherSnapshots(run.target, snapshot);
  const jobs = earlier.reduce((n, e) => n + e.jobs, 0);
  if (jobs === 0) return;
  run.emit({
    type: 'warning',
    message:
      `${jobs} job(s) were copied by an earlier run from another snapshot (${earlier.map((e) => e.snapshot).join(', ')}), the rest from ${snapshot}: ` +
      'if the source changed in between, the target holds it at more than one point in time (a row may be missing or stale, a foreign key may point nowhere); ' +
      'check with pgconvoy verify, or run clone with --verify',
  });
}

function interrupted(): PgconvoyError {
  return new PgconvoyError('interrupted', {
    code: 'INTERRUPTED',
    exitCode: EXIT.interrupted,
    hint: 'run the same command again to resume',
  });
}
