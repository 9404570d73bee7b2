/**
 * The schema phase of a clone: pg_dump the source's schema (always when the schema is applied:
 * the post-data items come from it), apply pre-data once, in batches that fit the target's
 * lock table (schema-batches.ts). Post-data is applied later, by finish-phase.ts.
 */
import { lockBudget } from '../inventory/lock-capacity.js';
import { tableKey } from '../copy/table-columns.js';
import { findPgTools, type PgTools } from '../schema/pg-tools.js';
import { dumpSchema } from '../schema/dump-schema.js';
import { orderUnits, type SchemaUnit } from '../schema/batches.js';
import type { PostDataItem, SchemaDump } from '../schema/types.js';
import { quoteIdent } from '../util/sql.js';
import { runSnapshot, type CloneRun } from './clone-run.js';
import { earlyForeignKey, indexStepName } from './index-builder.js';
import { applyInBatches, type BatchedApplyOptions } from './schema-batches.js';

/** The dumped schema, for the index builds and the post-data step. */
export interface ClonedSchema {
  tools: PgTools;
  dump: SchemaDump;
  /** Applies the final post-data (foreign keys, triggers, …) once all rows are in. */
  applyPostData: () => Promise<void>;
}

/** Undefined with `--schema skip`. */
export async function runSchemaPhase(run: CloneRun): Promise<ClonedSchema | undefined> {
  const { o, emit, steps } = run;
  if (o.schema !== 'apply') {
    run.phases.skip('schema', '--schema skip');
    return undefined;
  }
  const tools = findPgTools({
    sourceMajor: run.sourceInfo.major,
    ...(o.pgBin ? { pgBin: o.pgBin } : {}),
    ...(o.pathEnv !== undefined ? { pathEnv: o.pathEnv } : {}),
  });
  const dump = await dumpSchema({
    // The schema of the instant the rows are read in (not with --plan-only: the workers
    // elsewhere read their own snapshots).
    snapshot: o.planOnly ? undefined : await runSnapshot(run),
    source: o.source,
    tools,
    runDir: o.runDir,
    excludeSchemas: [o.ledgerSchema],
    filterArgs: run.pgDumpArgs,
    noOwner: o.noOwner,
    noPrivileges: o.noPrivileges,
    ...(o.lockWaitTimeoutMs !== undefined ? { lockWaitTimeoutMs: o.lockWaitTimeoutMs } : {}),
    noTablespaces: Boolean(o.noTablespaces),
    ...(o.tablespaceMap ? { tablespaceMap: o.tablespaceMap } : {}),
  });
  const batched = (): Omit<
    BatchedApplyOptions,
    'step' | 'stepDetail' | 'units' | 'what' | 'applicationName'
  > => ({
    tools,
    dump,
    target: o.target,
    client: run.target,
    steps,
    capacity: run.targetCapacity,
    budget: lockBudget(run.targetCapacity, o.jobs + o.indexJobs),
    noOwner: o.noOwner,
    noPrivileges: o.noPrivileges,
    signal: o.signal,
    onInfo: (message: string) => emit({ type: 'info', message }),
  });
  await run.phases.run('schema', run.done.has('schema'), async () => {
    // pg_dump --table dumps no schema: the tables' own must exist before them.
    for (const n of run.schemasOfTables)
      await run.target.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(n)}`);
    // --indexes before: the tables' own indexes and constraints come with the schema.
    const early = o.indexes === 'before' ? dump.postData.filter((i) => i.phase === 'table' && i.table) : [];
    await applyInBatches({
      ...batched(),
      step: 'schema',
      stepDetail: { entries: dump.preData.length },
      units: orderUnits([...dump.preData.map((e) => ({ entries: [e], marks: [] })), ...tableUnits(early)]),
      what: 'the schema (pre-data)',
      applicationName: 'pgconvoy schema',
    });
  });
  run.done = await steps.done(run.target);
  // Foreign keys between plain tables are the index builder's (added as soon as both tables are in).
  const finalItems = dump.postData.filter((i) => i.phase === 'final' && !earlyForeignKey(i));
  const applyPostData = () =>
    applyInBatches({
      ...batched(),
      step: 'post-data',
      stepDetail: { entries: finalItems.length },
      units: orderUnits(finalItems.map((e) => ({ entries: [e], marks: [] }))),
      settings: { maintenance_work_mem: o.maintenanceWorkMem },
      what: 'foreign keys, triggers and the rest of post-data',
      applicationName: 'pgconvoy post-data',
    });
  return { tools, dump, applyPostData };
}

/** One unit per table: its items and its "indexes built" mark commit together. */
function tableUnits(items: readonly PostDataItem[]): SchemaUnit[] {
  const byTable = new Map<string, SchemaUnit>();
  for (const item of items) {
    if (!item.table) continue;
    const key = tableKey(item.table);
    const unit = byTable.get(key) ?? { entries: [], marks: [indexStepName(item.table)] };
    unit.entries.push(item);
    byTable.set(key, unit);
  }
  return [...byTable.values()];
}
