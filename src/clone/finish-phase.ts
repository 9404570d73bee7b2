/**
 * The phases of a clone after its copy: sequences and large objects (read in the copy's
 * snapshot), the index builds still running, then what needs all the data — final post-data
 * (foreign keys, triggers, …), materialized views, ANALYZE.
 */
import { inTransaction } from '../connect/session.js';
import { displayName, qualifiedName } from '../util/sql.js';
import { tableKey } from '../copy/table-columns.js';
import { copyExtensionConfigData, readExtensionConfigTables } from '../schema/extensions.js';
import type { CloneRun } from './clone-run.js';
import type { CopyResult } from './copy-phase.js';
import { analyzeTables } from '../finish/analyze.js';
import { copyLargeObjects } from '../finish/large-objects.js';
import { setSequences } from '../finish/sequences.js';
import { analyzeTargets, populatedMatviews, refreshMatviews } from './finish-steps.js';
import type { ClonedSchema } from './schema-phase.js';

/** Sequences and large objects, then closes the copy's snapshot. */
export async function runSnapshotSteps(run: CloneRun): Promise<void> {
  const { o, emit, inventory, steps, done } = run;
  // Sequences and large objects are read in the copy's snapshot.
  const sourceSession = run.snapshot?.client ?? run.source;
  await run.phases.run('sequences', done.has('sequences'), async () => {
    const set = await setSequences(sourceSession, run.target, inventory.sequences, {
      beforeCommit: (target) => steps.markDone(target, 'sequences', { count: inventory.sequences.length }),
    });
    emit({ type: 'info', message: `${set.length} sequence(s) set to the source's values` });
  });
  await run.phases.run(
    'large-objects',
    done.has('large-objects') || inventory.largeObjects === 0,
    async () => {
      const r = await copyLargeObjects(sourceSession, run.target, {
        replace: false,
        beforeCommit: (target, copied) => steps.markDone(target, 'large-objects', { ...copied }),
      });
      emit({ type: 'info', message: `${r.count} large object(s), ${r.bytes} bytes` });
    },
    inventory.largeObjects === 0 ? 'none on the source' : 'already done',
  );
  const configTables = o.filter ? [] : await readExtensionConfigTables(sourceSession);
  await run.phases.run(
    'extension-data',
    done.has('extension-data') || configTables.length === 0,
    async () => {
      // The rows and the mark commit together: a rerun never copies them twice.
      const rows = await inTransaction(run.target, async (target) => {
        const copied = await copyExtensionConfigData(sourceSession, target, configTables);
        await steps.markDone(target, 'extension-data', { tables: configTables.length, rows: copied });
        return copied;
      });
      emit({
        type: 'info',
        message: `${rows} row(s) of ${configTables.length} extension configuration table(s) (${configTables.map((t) => `${t.extension}: ${displayName(t.schema, t.name)}`).join(', ')})`,
      });
    },
    o.filter
      ? 'filters given (as pg_dump with -n/-t)'
      : configTables.length === 0
        ? 'no extension configuration tables'
        : 'already done',
  );
  await run.snapshot?.close();
  run.snapshot = undefined;
}

/** Waits for the index builds still running (a big table's last chunk, say). */
export async function drainIndexes(run: CloneRun, copy: CopyResult): Promise<void> {
  const { indexBuilder } = copy;
  await run.phases.run('indexes', !indexBuilder, async () => indexBuilder?.drain(), 'no schema step');
}

/** Everything that needs all the data; run only when every copy job is done. */
export async function runFinishPhases(
  run: CloneRun,
  schema: ClonedSchema | undefined,
  copy: CopyResult,
): Promise<void> {
  const { o, steps, phases } = run;
  const { indexBuilder } = copy;
  // Foreign keys, triggers, partitioned-parent indexes, …
  if (schema && indexBuilder) {
    // Tables without copy jobs (partitioned parents, materialized views) get their 'table'
    // items now, and the foreign keys not added during the copy follow.
    await indexBuilder.finish();
    run.done = await steps.done(run.target);
    await phases.run('post-data', run.done.has('post-data'), schema.applyPostData);
  }
  const views = await populatedMatviews(run.source, o.ledgerSchema);
  await phases.run(
    'materialized-views',
    run.done.has('materialized-views') || views.length === 0 || o.schema === 'skip',
    () => refreshMatviews(run.target, views, steps),
    views.length === 0 ? 'none populated on the source' : 'already done',
  );
  await phases.run('analyze', run.done.has('analyze'), async () => {
    // Tables loaded in more than one job, or pulled (INSERT), were not written frozen (see copy-worker.ts).
    const jobsPerTable = new Map<string, number>();
    for (const j of await run.ledger.list(run.target)) {
      const name = qualifiedName(j.table.schema, j.table.name);
      jobsPerTable.set(name, (jobsPerTable.get(name) ?? 0) + 1);
    }
    const vacuum = new Set(
      o.vacuum ? [...jobsPerTable].filter(([, n]) => n > 1 || o.via === 'fdw').map(([t]) => t) : [],
    );
    // Only what the target has: source partitions merged into a plain table (and their
    // partitioned parents in between) have no table of their own there.
    // (Materialized views are analyzed too: they are relations of their own on the target.)
    const onTarget = await targetRelations(run);
    // Tables the index builder analyzed during the copy are done; the copy is over, so as
    // many sessions as it had workers.
    const early = indexBuilder?.analyzed() ?? new Set<string>();
    const analyzed = analyzeTargets(run.inventory).filter(
      (t) => onTarget.has(tableKey(t)) && !early.has(tableKey(t)),
    );
    // Nothing else of ours runs now: the copy workers' sessions are free, and thousands of
    // small tables' statistics take as long as their round trips and catalog updates.
    await analyzeTables(o.target, analyzed, Math.max(o.jobs, o.indexJobs), vacuum);
    await steps.markDone(run.target, 'analyze');
  });
}

/** The target's tables, partitioned tables and materialized views, as tableKey()s. */
async function targetRelations(run: CloneRun): Promise<Set<string>> {
  const res = await run.target.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'm')`,
  );
  return new Set(res.rows.map((r) => tableKey(r)));
}
