/**
 * The plan phase of a clone: one or more copy jobs per table, into the ledger. Jobs of an
 * earlier run are kept (a table with jobs is not planned again); its failed jobs are retried.
 */
import { copyableTables, type TableInfo } from '../inventory/inventory.js';
import { lockBudget } from '../inventory/lock-capacity.js';
import type { JobRow, PlannedJob } from '../ledger/jobs.js';
import { chunkLabel } from '../plan/chunk.js';
import { scheduleJobs } from '../plan/split-table.js';
import { readPartitionedTables, targetRelation } from '../copy/partitioned-target.js';
import { flatTargetParents } from '../copy/partitioned-source.js';
import { findPartitionMisfits, partitionMisfitError } from '../plan/partition-fit.js';
import type { TableRef } from '../plan/chunk.js';
import {
  excludedKey,
  columnPlanNotes,
  planTableColumns,
  readColumnCatalog,
  tableKey,
  type ColumnCatalog,
} from '../copy/table-columns.js';
import { displayName } from '../util/sql.js';
import type { CloneRun } from './clone-run.js';
import type { ChunkPlanner } from './clone-types.js';
import { existingRowsError, nonEmptyTables, rowSecurityLoadError } from '../copy/target-checks.js';

/** Plans the jobs and returns every job of the ledger. */
export async function runPlanPhase(run: CloneRun): Promise<JobRow[]> {
  const { queue } = run;
  const columns = {
    source: await readColumnCatalog(run.source),
    target: await readColumnCatalog(run.target),
  };
  const tables = queue ? queue.tables.map((t) => t.table) : copyableTables(run.inventory);
  // Source partitions whose partitioned parent is a plain table on the target load into it.
  const flatParents = await flatTargetParents(
    run.source,
    new Set(columns.target.keys()),
    await readPartitionedTables(run.target),
  );
  const loaded = tables.map((t) => flatParents.get(tableKey(t)) ?? t);
  // Before any job exists: a table the target role may not load fails every job of it alike.
  const refused = await rowSecurityLoadError(run.target, loaded, run.o.ledgerSchema);
  if (refused) throw refused;
  const planChunks: ChunkPlanner = queue
    ? (_client, table) =>
        Promise.resolve({
          chunks: queue.tables.find((t) => t.table.oid === table.oid)?.chunks ?? [],
          method: 'key-range',
        })
    : run.o.planChunks;
  await run.phases.run('plan', false, () => planJobs(run, tables, columns, flatParents, planChunks));
  const jobs = await run.ledger.list(run.target);
  run.emit({ type: 'planned', jobs, totalBytes: jobs.reduce((s, j) => s + j.estimatedBytes, 0) });
  run.files.writeStatus(jobs);
  return jobs;
}

async function planJobs(
  run: CloneRun,
  tables: TableInfo[],
  catalogs: { source: ColumnCatalog; target: ColumnCatalog },
  flatParents: ReadonlyMap<string, TableRef>,
  planChunks: ChunkPlanner,
): Promise<void> {
  const { o, source, target, ledger, emit } = run;
  const existing = await ledger.list(target);
  const started = new Set(existing.map((j) => tableKey(j.table)));
  // Source partitions merged into their parent's plain table: the parent's jobs, one per partition.
  const merged = new Map<string, { parent: TableRef; partitions: TableInfo[] }>();
  for (const t of tables) {
    const parent = flatParents.get(tableKey(t));
    if (!parent) continue;
    const group = merged.get(tableKey(parent)) ?? { parent, partitions: [] };
    group.partitions.push(t);
    merged.set(tableKey(parent), group);
  }
  const direct = tables.filter((t) => !flatParents.has(tableKey(t)));
  const loaded: TableRef[] = [...direct, ...[...merged.values()].map((g) => g.parent)];
  // Every table must exist on the target with the source's columns before anything is judged.
  const formats = new Map(
    loaded.map((t) => [tableKey(t), planTableColumns(t, catalogs.source, catalogs.target, o.excludeColumns)]),
  );
  const fresh = loaded.filter((t) => !started.has(tableKey(t)));
  // A row no partition of a reshaped target takes: refused now, not after the rest is loaded.
  const misfits = await findPartitionMisfits(source, target, fresh, {
    leftOut: (t, column) => o.excludeColumns.has(excludedKey(t, column)),
    skipped: (t, why) =>
      emit({ type: 'info', message: `${displayName(t.schema, t.name)}: partitions not prechecked: ${why}` }),
  });
  if (misfits.length > 0) throw partitionMisfitError(misfits);
  const skip = await existingRows(run, fresh);
  const planned: (PlannedJob & { tableKey: string })[] = [];
  for (const { parent, partitions } of merged.values()) {
    const key = tableKey(parent);
    const columns = formats.get(key);
    if (skip.has(key) || started.has(key) || !columns) continue;
    emit({
      type: 'info',
      message: `${displayName(parent.schema, parent.name)}: ${partitions.length} partition(s) of the source into one plain table on the target`,
    });
    for (const p of partitions)
      planned.push({
        table: parent,
        chunk: { kind: 'partition', schema: p.schema, name: p.name },
        chunkLabel: chunkLabel({ kind: 'partition', schema: p.schema, name: p.name }),
        chunkCount: partitions.length,
        estimatedBytes: p.bytes,
        copyFormat: columns.format,
        tableKey: key,
      });
  }
  for (const table of direct) {
    const key = tableKey(table);
    const columns = formats.get(key);
    if (skip.has(key) || started.has(key) || !columns) continue;
    const name = displayName(table.schema, table.name);
    if (columns.reason) emit({ type: 'info', message: `${name}: text COPY (${columns.reason})` });
    const columnNotes = columnPlanNotes(columns);
    if (columnNotes) emit({ type: 'info', message: `${name}: ${columnNotes}` });
    const plan = await planChunks(source, table, run.sourceInfo.major);
    if (plan.note) emit({ type: 'warning', message: plan.note });
    if (plan.chunks.length > 1) {
      emit({ type: 'info', message: `${name}: ${plan.chunks.length} chunks by ${plan.method}` });
    }
    plan.chunks.forEach((chunk) =>
      planned.push({
        table: { schema: table.schema, name: table.name },
        chunk,
        chunkLabel: chunkLabel(chunk),
        chunkCount: plan.chunks.length,
        estimatedBytes: Math.round(table.bytes / plan.chunks.length),
        copyFormat: columns.format,
        tableKey: key,
      }),
    );
  }
  // Largest work first, chunks of big tables round-robin: see plan/schedule-jobs.ts.
  await ledger.addJobs(target, scheduleJobs(planned));
  const reset = await ledger.resetFailed(target);
  if (reset > 0)
    emit({ type: 'info', message: `${reset} failed job(s) from an earlier run will be retried` });
}

/**
 * Rows in a table pgconvoy has no job for (yet) are somebody else's: an error, emptied or left
 * alone as --existing-rows says. Returns the tableKey()s of the tables left alone.
 */
async function existingRows(run: CloneRun, fresh: TableRef[]): Promise<Set<string>> {
  const { o, target, emit } = run;
  const partitioned = await readPartitionedTables(target);
  // Nothing else of ours runs yet: half the lock table, a few locks (table, indexes) per probe.
  const perStatement = Math.floor(lockBudget(run.targetCapacity, 0) / 4);
  const occupied = await nonEmptyTables(target, fresh, partitioned, perStatement);
  const skip = new Set<string>();
  if (occupied.length > 0 && o.existingRows === 'error') throw existingRowsError(occupied);
  for (const t of occupied) {
    if (o.existingRows === 'truncate') {
      await target.query(`TRUNCATE ${targetRelation(t, partitioned)}`);
      emit({
        type: 'info',
        message: `emptied ${displayName(t.schema, t.name)} on the target (--existing-rows truncate)`,
      });
    } else {
      skip.add(tableKey(t));
      emit({
        type: 'warning',
        message: `left ${displayName(t.schema, t.name)} as it is on the target: it already has rows (--existing-rows skip)`,
      });
    }
  }
  return skip;
}
