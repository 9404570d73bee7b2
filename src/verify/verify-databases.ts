/**
 * `verifyDatabases`: proves that the target holds what the source holds — every table's
 * rows (exact counts and in-server checksums, chunk by chunk, many chunks and both sides in
 * parallel) and the schema around them — and names what differs.
 *
 * @example
 *   const report = await verifyDatabases({ source, target, jobs: 4, maxDiffs: 20, ledgerSchema: 'pgconvoy' });
 *   if (!report.ok) process.exitCode = EXIT.mismatch;
 *
 * Every session is read-only and holds table locks only for one chunk's work. The source is
 * read in one snapshot (exported here, or the caller's `sourceSnapshot`), reported with the
 * source's WAL position, so a source that is still being written is compared at one point.
 */
import { describeConnection } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { readInventory, type Inventory } from '../inventory/inventory.js';
import { displayName } from '../util/sql.js';
import { readCatalog, type Catalog } from './catalog.js';
import { compareCatalogs } from './schema-diff.js';
import { buildTableJobs } from './plan-tables.js';
import { checkScope } from './scope.js';
import { findLayouts } from './layouts.js';
import { runTasks } from './run-tasks.js';
import { openCoordinator, type Coordinator } from './session.js';
import { tableResult } from './table-job.js';
import {
  VERIFY_DEFAULTS,
  type SideInfo,
  type TableResult,
  type VerifyOptions,
  type VerifyReport,
} from './types.js';
import { WorkerPair } from './worker-pair.js';

async function openCoordinators(options: VerifyOptions): Promise<[Coordinator, Coordinator]> {
  const [s, t] = await Promise.allSettled([
    openCoordinator(options.source, options.sourceSnapshot),
    openCoordinator(options.target, undefined),
  ]);
  if (s.status === 'rejected' || t.status === 'rejected') {
    if (s.status === 'fulfilled') await s.value.close();
    if (t.status === 'fulfilled') await t.value.close();
    throw s.status === 'rejected' ? s.reason : (t as PromiseRejectedResult).reason;
  }
  return [s.value, t.value];
}

async function openPairs(
  options: VerifyOptions,
  source: Coordinator,
  target: Coordinator,
): Promise<WorkerPair[]> {
  const jobs = Math.max(1, Math.floor(options.jobs));
  const settled = await Promise.allSettled(
    Array.from({ length: jobs }, (_, i) =>
      WorkerPair.open(
        String(i + 1),
        { spec: options.source, snapshot: source.snapshot },
        { spec: options.target, snapshot: target.snapshot },
      ),
    ),
  );
  const pairs = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(pairs.map((p) => p.close()));
    throw failed.reason;
  }
  return pairs;
}

export async function verifyDatabases(options: VerifyOptions): Promise<VerifyReport> {
  if (!Number.isInteger(options.maxDiffs) || options.maxDiffs < 0) {
    throw new PgconvoyError(`max-diffs ${options.maxDiffs} is not a whole number`, {
      code: 'BAD_ARGUMENT',
      hint: 'give 0 or more',
      exitCode: EXIT.usage,
    });
  }
  const started = Date.now();
  const emit = options.onProgress ?? (() => undefined);
  const scope = { filter: options.filter, excludeColumns: options.excludeColumns };
  const [srcCoord, tgtCoord] = await openCoordinators(options);
  emit({ type: 'snapshot', side: 'source', snapshot: srcCoord.snapshot, lsn: srcCoord.lsn });
  emit({ type: 'snapshot', side: 'target', snapshot: tgtCoord.snapshot, lsn: tgtCoord.lsn });
  let pairs: WorkerPair[] = [];
  try {
    pairs = await openPairs(options, srcCoord, tgtCoord);
    const first = pairs[0];
    if (!first) throw new Error('no verify worker');
    const [catalogs, inventory] = await first.task('the catalogs', async () => {
      const cats = await Promise.all([
        readCatalog(first.source.client, options.ledgerSchema),
        readCatalog(first.target.client, options.ledgerSchema),
      ]);
      const inv: Inventory = await readInventory(first.source.client, options.ledgerSchema);
      return [cats, inv] as [[Catalog, Catalog], Inventory];
    });
    checkScope(
      scope,
      [...catalogs[0].schemas, ...catalogs[1].schemas],
      [...catalogs[0].tables, ...catalogs[1].tables],
    );
    const layouts = findLayouts(catalogs[0], catalogs[1]);
    const schema = compareCatalogs(catalogs[0], catalogs[1], scope, layouts);
    emit({ type: 'schema-done', differences: schema.filter((d) => d.severity === 'difference').length });

    const plan = buildTableJobs({
      scope,
      source: catalogs[0],
      target: catalogs[1],
      layouts,
      inventory,
      maxDiffs: options.maxDiffs,
      convert: srcCoord.encoding !== tgtCoord.encoding,
      countOnly: (t) =>
        options.contents === 'counts' &&
        !(options.checksumTables ?? []).some((c) => c.schema === t.schema && c.name === t.name),
    });
    emit({ type: 'planned', tables: plan.jobs.length });
    await runTasks(pairs, plan.jobs, {
      chunkRows: options.chunkRows ?? VERIFY_DEFAULTS.chunkRows,
      emit,
    });

    // A materialized view's rows are derived data, refreshed on the source's own schedule (a
    // view last refreshed before the copy legitimately differs from the target's fresh one):
    // its definition and populated state are compared as schema, its rows only noted.
    const matviews = new Set(
      catalogs[0].tables.filter((t) => t.relkind === 'm').map((t) => displayName(t.schema, t.name)),
    );
    const isMatview = (t: TableResult) => matviews.has(displayName(t.schema, t.name));
    for (const t of plan.jobs.map(tableResult).filter((r) => isMatview(r) && r.status !== 'match'))
      schema.push({
        kind: 'materialized view',
        object: displayName(t.schema, t.name),
        problem: 'different',
        source: `${t.rows.source ?? '?'} rows`,
        target: `${t.rows.target ?? '?'} rows (derived data: REFRESH MATERIALIZED VIEW where it matters)`,
        severity: 'note',
      });
    const tables = [
      ...plan.jobs.map(tableResult).filter((r) => !isMatview(r) || r.status === 'match'),
      ...plan.unpaired,
    ].sort((a, b) => displayName(a.schema, a.name).localeCompare(displayName(b.schema, b.name)));
    const failing = schema.filter((d) => d.severity === 'difference');
    const differing = tables.filter((t) => t.status !== 'match');
    const side = (c: Coordinator, spec: VerifyOptions['source']): SideInfo => ({
      connection: describeConnection(spec),
      version: c.version,
      major: c.major,
      snapshot: c.snapshot,
      lsn: c.lsn,
    });
    return {
      ok: differing.length === 0 && failing.length === 0,
      source: side(srcCoord, options.source),
      target: side(tgtCoord, options.target),
      tables,
      schema,
      counts: {
        tables: tables.length,
        tablesMatching: tables.length - differing.length,
        tablesDiffering: differing.length,
        rowDifferences: tables.reduce((n, t) => n + t.differences.length, 0),
        schemaDifferences: failing.length,
        notes: schema.length - failing.length,
      },
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await Promise.all(pairs.map((p) => p.close()));
    await Promise.all([srcCoord.close(), tgtCoord.close()]);
  }
}
