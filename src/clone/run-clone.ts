/**
 * `pgconvoy clone`: the offline copy of a whole database, phase by phase.
 *
 *   connect → inventory → schema (pg_dump, pre-data applied in transactions that fit the
 *   target's lock table, see schema-batches.ts) → plan jobs
 *   into the ledger → copy with N workers from one snapshot, each table's indexes built as
 *   soon as its rows are in → final post-data (foreign keys, triggers, …) → sequences →
 *   large objects → materialized views → ANALYZE
 *
 * Every phase is recorded in the ledger on the target, in the same transaction as its work
 * where the work is transactional, so running the same command again resumes: done jobs and
 * steps are skipped, the rest is redone, nothing is duplicated.
 */
import os from 'node:os';
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { readInventory, copyableTables, type TableInfo } from '../inventory/inventory.js';
import { filterInventory, type TableFilter } from '../inventory/table-filter.js';
import { readServerInfo, type ServerInfo } from '../inventory/server-info.js';
import { ensureLedger } from '../ledger/ledger-schema.js';
import { JobLedger, type JobRow, type PlannedJob } from '../ledger/jobs.js';
import { Steps } from '../ledger/steps.js';
import { chunkLabel, type TableRef } from '../plan/chunk.js';
import { planTableChunks, scheduleJobs, type SplitPlan as ChunkPlan } from '../plan/split-table.js';
import { resolveQueueFile } from '../plan/queue-plan.js';
import { findPgTools, type PgTools } from '../schema/pg-tools.js';
import { dumpSchema } from '../schema/dump-schema.js';
import type { SchemaDump } from '../schema/types.js';
import type { CopyEvent } from '../copy/copy-worker.js';
import { runCopyPool } from '../copy/copy-pool.js';
import { isTransient } from '../sqlstate.js';
import { exportSnapshot, type SnapshotHandle } from '../copy/source-snapshot.js';
import { findPartitionMisfits, partitionMisfitError } from '../plan/partition-fit.js';
import {
  excludedKey,
  columnPlanNotes,
  planTableColumns,
  readColumnCatalog,
  tableKey,
  type ColumnCatalog,
  type ExcludedColumns,
} from '../copy/table-columns.js';
import { readPartitionedTables, targetRelation } from '../copy/partitioned-target.js';
import { flatTargetParents } from '../copy/partitioned-source.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import { checkSourceLocks, lockBudget, readLockCapacity } from '../inventory/lock-capacity.js';
import { orderUnits, type SchemaUnit } from '../schema/batches.js';
import type { PostDataItem } from '../schema/types.js';
import { applyInBatches } from './schema-batches.js';
import { IndexBuilder, indexStepName } from './index-builder.js';
import { analyzeTables } from './analyze-tables.js';
import { RunFiles } from './run-files.js';
import {
  analyzeTargets,
  copyLargeObjects,
  populatedMatviews,
  refreshMatviews,
  syncSequences,
} from './finish-steps.js';
import {
  existingRowsError,
  loadBlockers,
  nonEmptyTables,
  rowSecurityLoadError,
  type ExistingRowsPolicy,
} from './target-checks.js';
import { backoffMs, retry, sleep } from '../util/wait.js';

export type PhaseName =
  | 'connect'
  | 'schema'
  | 'plan'
  | 'copy'
  | 'indexes'
  | 'post-data'
  | 'sequences'
  | 'large-objects'
  | 'materialized-views'
  | 'analyze';

export type CloneEvent =
  | CopyEvent
  | {
      type: 'phase';
      phase: PhaseName;
      state: 'start' | 'done' | 'skipped';
      detail?: string;
      seconds?: number;
    }
  | { type: 'planned'; jobs: JobRow[]; totalBytes: number }
  /** One build: a table's indexes and constraints, or those of several small tables together. */
  | { type: 'tables-indexed'; tables: TableRef[]; items: number; seconds: number }
  | { type: 'info'; message: string };

/** Chooses the chunks of one table (whole, key ranges, block ranges). */
export type ChunkPlanner = (source: pg.Client, table: TableInfo, serverMajor: number) => Promise<ChunkPlan>;

export interface CloneOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  jobs: number;
  indexJobs: number;
  ledgerSchema: string;
  runDir: string;
  schema: 'apply' | 'skip';
  indexes: 'before' | 'after';
  createDatabase: boolean;
  existingRows: ExistingRowsPolicy;
  pgBin: string | undefined;
  pathEnv: string | undefined;
  noOwner: boolean;
  noPrivileges: boolean;
  maxAttempts: number;
  maintenanceWorkMem: string;
  /** Only plan (write jobs into the ledger) and stop: workers elsewhere do the copy. */
  planOnly: boolean;
  /** Use this exported snapshot instead of exporting one (online start). */
  snapshot: string | undefined;
  planChunks: ChunkPlanner;
  /** Flexy's queue file: only the tables it lists, cut as it says (see plan/queue-plan.ts). */
  queueFile?: { text: string; fileName: string; allowGaps: boolean };
  /** VACUUM (ANALYZE) chunked tables after their load (`--no-vacuum`: ANALYZE only). */
  vacuum?: boolean;
  /** pg_dump's -n/-N/-t/-T/--exclude-table-data/--filter (inventory/table-filter.ts). */
  filter?: TableFilter | undefined;
  /** Source columns left behind (`--exclude-column`), as excludedKey()s. */
  excludeColumns: ExcludedColumns;
  /** Names the workers of this process (`host-pid-N`). */
  workerPrefix: string;
  signal: AbortSignal | undefined;
  onEvent: (e: CloneEvent) => void;
}

export interface TableSummary {
  table: TableRef;
  rows: number;
  bytes: number;
  seconds: number;
  jobs: number;
  state: 'done' | 'failed' | 'pending';
}

export interface CloneSummary {
  ok: boolean;
  source: string;
  target: string;
  seconds: number;
  phases: { phase: PhaseName; seconds: number; state: 'done' | 'skipped' }[];
  tables: TableSummary[];
  rows: number;
  bytes: number;
  failed: JobRow[];
  warnings: string[];
  snapshot: string | undefined;
  runDir: string;
}

export const defaultWorkerPrefix = (): string => `${os.hostname()}-${process.pid}`;

/** Whole tables only; the chunk planner of `plan/` replaces this for big tables. */
export const wholeTables: ChunkPlanner = () =>
  Promise.resolve({ chunks: [{ kind: 'whole' }], method: 'whole' });

/** Tables above `splitLargerThan` cut into chunks of about `chunkBytes` (see plan/split-table.ts). */
export function chunkedTables(splitLargerThan: number, chunkBytes: number): ChunkPlanner {
  return (client, table, serverMajor) =>
    table.bytes <= splitLargerThan
      ? Promise.resolve({ chunks: [{ kind: 'whole' }], method: 'whole' })
      : planTableChunks(client, table, { chunkBytes, serverMajor });
}

async function connectTarget(o: CloneOptions): Promise<pg.Client> {
  try {
    return await openClient(o.target, { applicationName: 'pgconvoy clone' });
  } catch (err) {
    if (!(err instanceof PgconvoyError) || err.code !== 'NO_DATABASE' || !o.createDatabase) throw err;
    const admin = await openClient(
      { ...o.target, database: 'postgres', conninfo: { ...o.target.conninfo, dbname: 'postgres' } },
      { applicationName: 'pgconvoy clone' },
    );
    try {
      await admin.query(`CREATE DATABASE ${quoteIdent(o.target.database)}`);
    } finally {
      await admin.end();
    }
    o.onEvent({ type: 'info', message: `created database ${quoteIdent(o.target.database)} on the target` });
    return openClient(o.target, { applicationName: 'pgconvoy clone' });
  }
}

class Phases {
  readonly list: CloneSummary['phases'] = [];
  constructor(private readonly onEvent: (e: CloneEvent) => void) {}
  async run<T>(
    phase: PhaseName,
    skip: boolean,
    work: () => Promise<T>,
    skipReason = 'already done',
  ): Promise<T | undefined> {
    if (skip) {
      this.list.push({ phase, seconds: 0, state: 'skipped' });
      this.onEvent({ type: 'phase', phase, state: 'skipped', detail: skipReason });
      return undefined;
    }
    const started = Date.now();
    this.onEvent({ type: 'phase', phase, state: 'start' });
    const result = await work();
    const seconds = (Date.now() - started) / 1000;
    this.list.push({ phase, seconds, state: 'done' });
    this.onEvent({ type: 'phase', phase, state: 'done', seconds });
    return result;
  }
}

export async function runClone(o: CloneOptions): Promise<CloneSummary> {
  const started = Date.now();
  const files = new RunFiles(o.runDir);
  const warnings: string[] = [];
  const emit = (e: CloneEvent) => {
    if (e.type === 'warning') warnings.push(e.message);
    if (e.type !== 'bytes') files.log(JSON.stringify(e));
    o.onEvent(e);
  };
  const phases = new Phases(emit);
  const source = await openClient(o.source, { applicationName: 'pgconvoy clone' });
  let target: pg.Client | undefined;
  let snapshot: SnapshotHandle | undefined;
  try {
    const sourceInfo = await readServerInfo(source);
    // Before anything else reads or writes: the inventory itself reads every sequence at once.
    await checkSourceLocks(source, o.ledgerSchema);
    // The filter narrows everything after this line: jobs, sequences, analyze, pg_dump.
    const { inventory, pgDumpArgs, schemasOfTables } = filterInventory(
      await readInventory(source, o.ledgerSchema),
      o.filter,
    );
    // A queue file is checked whole, against the source, before anything is written anywhere.
    const queue = o.queueFile
      ? await resolveQueueFile(o.queueFile.text, o.queueFile.fileName, source, inventory, {
          allowGaps: o.queueFile.allowGaps,
        })
      : undefined;
    if (queue) {
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
    target = await connectTarget(o);
    const targetInfo = await readServerInfo(target);
    const targetCapacity = await readLockCapacity(target);
    emit({
      type: 'info',
      message: `source ${describeConnection(o.source)} (PostgreSQL ${sourceInfo.version}), target ${describeConnection(o.target)} (PostgreSQL ${targetInfo.version})`,
    });
    await ensureLedger(target, o.ledgerSchema);
    await checkPlanOwner(target, o);
    const steps = new Steps(o.ledgerSchema);
    const ledger = new JobLedger(o.ledgerSchema);
    let done = await steps.done(target);

    // Schema: dump (always: the post-data items come from it), apply pre-data once, in batches.
    let tools: PgTools | undefined;
    let dump: SchemaDump | undefined;
    let applyPostData: (() => Promise<void>) | undefined;
    if (o.schema === 'apply') {
      tools = findPgTools({
        sourceMajor: sourceInfo.major,
        ...(o.pgBin ? { pgBin: o.pgBin } : {}),
        ...(o.pathEnv !== undefined ? { pathEnv: o.pathEnv } : {}),
      });
      const t = tools;
      dump = await dumpSchema({
        source: o.source,
        tools: t,
        runDir: o.runDir,
        excludeSchemas: [o.ledgerSchema],
        filterArgs: pgDumpArgs,
        noOwner: o.noOwner,
        noPrivileges: o.noPrivileges,
      });
      const d = dump;
      const batched = {
        tools: t,
        dump: d,
        target: o.target,
        steps,
        capacity: targetCapacity,
        budget: lockBudget(targetCapacity, o.jobs + o.indexJobs),
        noOwner: o.noOwner,
        noPrivileges: o.noPrivileges,
        signal: o.signal,
        onInfo: (message: string) => emit({ type: 'info', message }),
      };
      await phases.run('schema', done.has('schema'), async () => {
        // pg_dump --table dumps no schema: the tables' own must exist before them.
        for (const n of schemasOfTables) await target!.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(n)}`);
        // --indexes before: the tables' own indexes and constraints come with the schema.
        const early = o.indexes === 'before' ? d.postData.filter((i) => i.phase === 'table' && i.table) : [];
        await applyInBatches({
          ...batched,
          client: target!,
          step: 'schema',
          stepDetail: { entries: d.preData.length },
          units: orderUnits([...d.preData.map((e) => ({ entries: [e], marks: [] })), ...tableUnits(early)]),
          what: 'the schema (pre-data)',
          applicationName: 'pgconvoy schema',
        });
      });
      applyPostData = () =>
        applyInBatches({
          ...batched,
          client: target!,
          step: 'post-data',
          stepDetail: { entries: d.postData.filter((i) => i.phase === 'final').length },
          units: orderUnits(
            d.postData.filter((i) => i.phase === 'final').map((e) => ({ entries: [e], marks: [] })),
          ),
          settings: { maintenance_work_mem: o.maintenanceWorkMem },
          what: 'foreign keys, triggers and the rest of post-data',
          applicationName: 'pgconvoy post-data',
        });
      done = await steps.done(target);
    } else {
      phases.list.push({ phase: 'schema', seconds: 0, state: 'skipped' });
      emit({ type: 'phase', phase: 'schema', state: 'skipped', detail: '--schema skip' });
    }

    // Plan: one or more jobs per table, into the ledger (existing jobs are kept).
    const sourceColumns = await readColumnCatalog(source);
    const targetColumns = await readColumnCatalog(target);
    const tables = queue ? queue.tables.map((t) => t.table) : copyableTables(inventory);
    // Source partitions whose partitioned parent is a plain table on the target load into it.
    const flatParents = await flatTargetParents(
      source,
      new Set(targetColumns.keys()),
      await readPartitionedTables(target),
    );
    const loaded = tables.map((t) => flatParents.get(tableKey(t)) ?? t);
    // Before any job exists: a table the target role may not load fails every job of it alike.
    const refused = await rowSecurityLoadError(target, loaded, o.ledgerSchema);
    if (refused) throw refused;
    const planChunks: ChunkPlanner = queue
      ? (_client, table) =>
          Promise.resolve({
            chunks: queue.tables.find((t) => t.table.oid === table.oid)?.chunks ?? [],
            method: 'key-range',
          })
      : o.planChunks;
    await phases.run('plan', false, async () => {
      await planJobs(
        { ...o, planChunks },
        source,
        target!,
        ledger,
        tables,
        sourceInfo,
        sourceColumns,
        targetColumns,
        flatParents,
        emit,
      );
    });
    const jobsNow = await ledger.list(target);
    emit({ type: 'planned', jobs: jobsNow, totalBytes: jobsNow.reduce((s, j) => s + j.estimatedBytes, 0) });
    files.writeStatus(jobsNow);
    if (o.planOnly) {
      return summarize(o, started, phases, jobsNow, warnings, undefined, files, true);
    }

    // Triggers and foreign keys must not fire during the load.
    const replicationRole = targetInfo.role.canSetReplicationRole;
    if (!replicationRole) {
      const blockers = await loadBlockers(target);
      if (blockers.length > 0) {
        throw new PgconvoyError(
          `the target role "${targetInfo.role.name}" may not set session_replication_role, and ${blockers[0]} would fire during the load`,
          {
            code: 'TRIGGERS_WOULD_FIRE',
            exitCode: EXIT.target,
            hint: 'connect to the target as a superuser, or on PostgreSQL 15+ GRANT SET ON PARAMETER session_replication_role TO that role, or let pgconvoy create the schema (foreign keys and triggers then come after the data)',
            details: { blockers },
          },
        );
      }
    }

    // Copy, building each table's indexes as soon as its rows are in.
    snapshot = o.snapshot ? undefined : await exportSnapshot(o.source);
    const snapshotName = o.snapshot ?? snapshot?.name;
    if (snapshot)
      emit({
        type: 'info',
        message: `source snapshot ${snapshot.name} at WAL ${snapshot.lsn ?? '(standby)'}`,
      });
    const inventoryBytes = new Map(inventory.tables.map((t) => [tableKey(t), t.bytes]));
    const indexBuilder =
      dump && tools
        ? new IndexBuilder({
            tools,
            dump,
            target: o.target,
            steps,
            concurrency: o.indexJobs,
            done,
            noOwner: o.noOwner,
            noPrivileges: o.noPrivileges,
            maintenanceWorkMem: o.maintenanceWorkMem,
            maxAttempts: o.maxAttempts,
            signal: o.signal,
            tableBytes: (t) => inventoryBytes.get(tableKey(t)) ?? 0,
            lockBudget: lockBudget(targetCapacity, o.jobs + o.indexJobs),
            onBuilt: (tables, items, seconds) => emit({ type: 'tables-indexed', tables, items, seconds }),
          })
        : undefined;
    await phases.run('copy', false, async () => {
      // Tables already complete from an earlier run get their indexes first.
      const markReady = async (client: pg.Client) => {
        for (const table of await ledger.completeTables(client)) indexBuilder?.tableReady(table);
      };
      await markReady(target!);
      // Chunked tables are complete when their last chunk commits, whichever worker (or machine) did it.
      let copying = true;
      const poller = (async () => {
        while (copying) {
          await sleep(500);
          await markReady(target!).catch(() => undefined);
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
          onEvent: (e) => {
            if (e.type === 'job-done' && e.job.chunkCount === 1) indexBuilder?.tableReady(e.job.table);
            emit(e);
          },
        });
      } finally {
        copying = false;
        await poller;
      }
      // The target may have restarted during the copy (workers reconnect by themselves): so does this session.
      target = await reconnectIfGone(target!, o, emit);
      await markReady(target);
      files.writeStatus(await ledger.list(target));
    });
    if (o.signal?.aborted) throw interrupted();

    // Sequences and large objects are read in the copy's snapshot.
    const sourceSession = snapshot?.client ?? source;
    await phases.run('sequences', done.has('sequences'), async () => {
      const n = await syncSequences(sourceSession, target!, inventory, steps);
      emit({ type: 'info', message: `${n} sequence(s) set to the source's values` });
    });
    await phases.run(
      'large-objects',
      done.has('large-objects') || inventory.largeObjects === 0,
      async () => {
        const r = await copyLargeObjects(sourceSession, target!, steps);
        emit({ type: 'info', message: `${r.count} large object(s), ${r.bytes} bytes` });
      },
      inventory.largeObjects === 0 ? 'none on the source' : 'already done',
    );
    await snapshot?.close();
    snapshot = undefined;

    // Index builds still running when the last row landed (a big table's last chunk, say).
    await phases.run('indexes', !indexBuilder, async () => indexBuilder?.drain(), 'no schema step');
    const jobsAfter = await ledger.list(target);
    const unfinished = jobsAfter.filter((j) => j.state !== 'done');
    if (unfinished.length > 0)
      return summarize(o, started, phases, jobsAfter, warnings, snapshotName, files, false);

    // Everything that needs all the data: foreign keys, triggers, partitioned-parent indexes, …
    if (dump && tools && indexBuilder) {
      // Tables without copy jobs (partitioned parents, materialized views) get their 'table' items now.
      for (const table of indexBuilder.tables()) indexBuilder.tableReady(table);
      await indexBuilder.drain();
      done = await steps.done(target);
      await phases.run('post-data', done.has('post-data'), async () => applyPostData?.());
    }
    const views = await populatedMatviews(source, o.ledgerSchema);
    await phases.run(
      'materialized-views',
      done.has('materialized-views') || views.length === 0 || o.schema === 'skip',
      () => refreshMatviews(target!, views, steps),
      views.length === 0 ? 'none populated on the source' : 'already done',
    );
    await phases.run('analyze', done.has('analyze'), async () => {
      // Tables loaded in more than one job were not written frozen (see copy-worker.ts).
      const jobsPerTable = new Map<string, number>();
      for (const j of await ledger.list(target!)) {
        const name = qualifiedName(j.table.schema, j.table.name);
        jobsPerTable.set(name, (jobsPerTable.get(name) ?? 0) + 1);
      }
      const vacuum = new Set(o.vacuum ? [...jobsPerTable].filter(([, n]) => n > 1).map(([t]) => t) : []);
      // Only what the target has: source partitions merged into a plain table (and their
      // partitioned parents in between) have no table of their own there.
      const analyzed = analyzeTargets(inventory).filter((t) => targetColumns.has(tableKey(t)));
      await analyzeTables(o.target, analyzed, o.indexJobs, vacuum);
      await steps.markDone(target!, 'analyze');
    });
    return summarize(o, started, phases, await ledger.list(target), warnings, snapshotName, files, true);
  } finally {
    await snapshot?.close();
    await source.end().catch(() => undefined);
    await target?.end().catch(() => undefined);
  }
}

/** One unit per table: its items and its "indexes built" mark commit together. */
function tableUnits(items: readonly PostDataItem[]): SchemaUnit[] {
  const byTable = new Map<string, SchemaUnit>();
  for (const item of items) {
    const key = tableKey(item.table!);
    const unit = byTable.get(key) ?? { entries: [], marks: [indexStepName(item.table!)] };
    unit.entries.push(item);
    byTable.set(key, unit);
  }
  return [...byTable.values()];
}

/** Returns a working target session: the same one, or a new one after the server came back. */
async function reconnectIfGone(
  client: pg.Client,
  o: CloneOptions,
  emit: (e: CloneEvent) => void,
): Promise<pg.Client> {
  try {
    await client.query('SELECT 1');
    return client;
  } catch (err) {
    if (!isTransient(err)) throw err;
  }
  await client.end().catch(() => undefined);
  const fresh = await retry(() => openClient(o.target, { applicationName: 'pgconvoy clone' }), {
    retryable: isTransient,
    attempts: o.maxAttempts * 3,
    delayMs: (attempt) => backoffMs(Math.min(attempt, 8)),
  });
  emit({ type: 'info', message: 'reconnected to the target' });
  return fresh;
}

function interrupted(): PgconvoyError {
  return new PgconvoyError('interrupted', {
    code: 'INTERRUPTED',
    exitCode: EXIT.interrupted,
    hint: 'run the same command again to resume',
  });
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

async function planJobs(
  o: CloneOptions,
  source: pg.Client,
  target: pg.Client,
  ledger: JobLedger,
  tables: TableInfo[],
  sourceInfo: ServerInfo,
  sourceColumns: ColumnCatalog,
  targetColumns: ColumnCatalog,
  flatParents: ReadonlyMap<string, TableRef>,
  emit: (e: CloneEvent) => void,
): Promise<void> {
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
    loaded.map((t) => [tableKey(t), planTableColumns(t, sourceColumns, targetColumns, o.excludeColumns)]),
  );
  // Rows in a table pgconvoy has no job for (yet) are somebody else's.
  const fresh = loaded.filter((t) => !started.has(tableKey(t)));
  // A row no partition of a reshaped target takes: refused now, not after the rest is loaded.
  const misfits = await findPartitionMisfits(source, target, fresh, {
    leftOut: (t, column) => o.excludeColumns.has(excludedKey(t, column)),
    skipped: (t, why) =>
      emit({ type: 'info', message: `${displayName(t.schema, t.name)}: partitions not prechecked: ${why}` }),
  });
  if (misfits.length > 0) throw partitionMisfitError(misfits);
  const partitioned = await readPartitionedTables(target);
  const occupied = await nonEmptyTables(target, fresh, partitioned);
  const skip = new Set<string>();
  if (occupied.length > 0) {
    if (o.existingRows === 'error') throw existingRowsError(occupied);
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
  }
  const planned: (PlannedJob & { tableKey: string })[] = [];
  for (const { parent, partitions } of merged.values()) {
    const key = tableKey(parent);
    if (skip.has(key) || started.has(key)) continue;
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
        copyFormat: formats.get(key)!.format,
        tableKey: key,
      });
  }
  for (const table of direct) {
    const key = tableKey(table);
    if (skip.has(key) || started.has(key)) continue;
    const columns = formats.get(key)!;
    if (columns.reason)
      emit({
        type: 'info',
        message: `${displayName(table.schema, table.name)}: text COPY (${columns.reason})`,
      });
    const columnNotes = columnPlanNotes(columns);
    if (columnNotes)
      emit({ type: 'info', message: `${displayName(table.schema, table.name)}: ${columnNotes}` });
    const plan = await o.planChunks(source, table, sourceInfo.major);
    if (plan.note) emit({ type: 'warning', message: plan.note });
    if (plan.chunks.length > 1) {
      emit({
        type: 'info',
        message: `${displayName(table.schema, table.name)}: ${plan.chunks.length} chunks by ${plan.method}`,
      });
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

function summarize(
  o: CloneOptions,
  started: number,
  phases: Phases,
  jobs: JobRow[],
  warnings: string[],
  snapshot: string | undefined,
  files: RunFiles,
  complete: boolean,
): CloneSummary {
  files.writeStatus(jobs);
  const byTable = new Map<string, TableSummary>();
  for (const j of jobs) {
    const key = tableKey(j.table);
    const s = byTable.get(key) ?? {
      table: j.table,
      rows: 0,
      bytes: 0,
      seconds: 0,
      jobs: 0,
      state: 'done' as const,
    };
    s.rows += j.rows ?? 0;
    s.bytes += j.bytes ?? 0;
    s.seconds += j.seconds ?? 0;
    s.jobs++;
    if (j.state === 'failed') s.state = 'failed';
    else if (j.state === 'pending' && s.state !== 'failed') s.state = 'pending';
    byTable.set(key, s);
  }
  const tables = [...byTable.values()].sort((a, b) => b.bytes - a.bytes);
  const failed = jobs.filter((j) => j.state === 'failed');
  return {
    ok: complete && failed.length === 0 && jobs.every((j) => j.state === 'done' || o.planOnly),
    source: describeConnection(o.source),
    target: describeConnection(o.target),
    seconds: (Date.now() - started) / 1000,
    phases: phases.list,
    tables,
    rows: tables.reduce((s, t) => s + t.rows, 0),
    bytes: tables.reduce((s, t) => s + t.bytes, 0),
    failed,
    warnings,
    snapshot,
    runDir: o.runDir,
  };
}
