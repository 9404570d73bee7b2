/**
 * `clone --dry-run`: the plan, and nothing touched. Reads the source's catalogs (and the
 * target's, when reachable) only.
 */
import { openClient } from '../connect/open-client.js';
import { describeConnection } from '../connect/resolve.js';
import { closeQuietly, withClient } from '../connect/session.js';
import { copyableTables, readInventory } from '../inventory/inventory.js';
import { filterInventory } from '../inventory/table-filter.js';
import { readServerInfo } from '../inventory/server-info.js';
import { chunkLabel } from '../plan/chunk.js';
import { findPgTools } from '../schema/pg-tools.js';
import { copyStatements } from '../copy/copy-stream.js';
import { displayName } from '../util/sql.js';
import {
  columnPlanNotes,
  planTableColumns,
  readColumnCatalog,
  type ColumnCatalog,
} from '../copy/table-columns.js';
import type { CloneOptions, PhaseName } from './run-clone.js';
import { resolveQueueFile } from '../plan/queue-plan.js';
import {
  accessProblems,
  readAccess,
  rowSecurityLines,
  type AccessProblem,
} from '../inventory/read-access.js';

export interface DryRunPlan {
  source: string;
  target: string;
  pgDump: string | undefined;
  phases: PhaseName[];
  jobs: {
    order: number;
    table: string;
    chunk: string;
    estimatedBytes: number;
    format: string;
    copyOut: string;
  }[];
  totalBytes: number;
  notes: string[];
  /** Tables with row-level security on the source, each with whether the source role bypasses it. */
  rowSecurity: string[];
  /** What would stop the copy (a table the source role cannot read whole, a target table it cannot load). */
  problems: (AccessProblem & { side: 'source' | 'target' })[];
}

export async function planDryRun(o: CloneOptions): Promise<DryRunPlan> {
  const source = await openClient(o.source, { applicationName: 'pgconvoy clone --dry-run' });
  const notes: string[] = [];
  const problems: DryRunPlan['problems'] = [];
  try {
    const info = await readServerInfo(source);
    const { inventory } = filterInventory(await readInventory(source, o.ledgerSchema), o.filter);
    const sourceAccess = await readAccess(source, o.ledgerSchema);
    problems.push(
      ...accessProblems(sourceAccess, 'source', 'read').map((p) => ({ ...p, side: 'source' as const })),
    );
    let pgDump: string | undefined;
    if (o.schema === 'apply') {
      const tools = findPgTools({
        sourceMajor: info.major,
        ...(o.pgBin ? { pgBin: o.pgBin } : {}),
        ...(o.pathEnv !== undefined ? { pathEnv: o.pathEnv } : {}),
      });
      pgDump = `${tools.pgDump} (${tools.version})`;
    }
    const sourceColumns = await readColumnCatalog(source);
    let targetColumns: ColumnCatalog = sourceColumns;
    try {
      const { fromTarget, targetAccess } = await withClient(
        o.target,
        async (target) => ({
          fromTarget: await readColumnCatalog(target),
          targetAccess: await readAccess(target, o.ledgerSchema),
        }),
        { applicationName: 'pgconvoy clone --dry-run' },
      );
      problems.push(
        ...accessProblems(targetAccess, 'target', 'load').map((p) => ({ ...p, side: 'target' as const })),
      );
      if (fromTarget.size > 0) targetColumns = fromTarget;
      else notes.push('the target has no tables yet: COPY formats assume it will get the source schema');
    } catch (err) {
      notes.push(
        `target not read (${err instanceof Error ? err.message : String(err)}): COPY formats assume the source schema`,
      );
    }
    const queue = o.queueFile
      ? await resolveQueueFile(o.queueFile.text, o.queueFile.fileName, source, inventory, {
          allowGaps: o.queueFile.allowGaps,
        })
      : undefined;
    for (const gap of queue?.gaps ?? []) notes.push(`--allow-gaps: ${gap}`);
    const jobs: DryRunPlan['jobs'] = [];
    for (const table of queue ? queue.tables.map((t) => t.table) : copyableTables(inventory)) {
      const cols = targetColumns.has(JSON.stringify([table.schema, table.name]))
        ? planTableColumns(table, sourceColumns, targetColumns, o.excludeColumns)
        : planTableColumns(table, sourceColumns, sourceColumns, o.excludeColumns);
      const columnNotes = columnPlanNotes(cols);
      if (columnNotes) notes.push(`${displayName(table.schema, table.name)}: ${columnNotes}`);
      const listed = queue?.tables.find((t) => t.table.oid === table.oid);
      const plan = listed
        ? { chunks: listed.chunks, method: 'key-range' as const }
        : await o.planChunks(source, table, info.major);
      if (plan.note) notes.push(plan.note);
      const chunks = plan.chunks;
      for (const chunk of chunks) {
        jobs.push({
          order: 0,
          table: `${table.schema}.${table.name}`,
          chunk: chunkLabel(chunk),
          estimatedBytes: Math.round(table.bytes / chunks.length),
          format: cols.format,
          copyOut: copyStatements({ table, columns: cols.columns, chunk, format: cols.format, freeze: false })
            .out,
        });
      }
    }
    jobs.sort((a, b) => b.estimatedBytes - a.estimatedBytes);
    jobs.forEach((j, i) => (j.order = i + 1));
    const phases: PhaseName[] = [
      'connect',
      ...(o.schema === 'apply' ? (['schema'] as const) : []),
      'plan',
      'copy',
      ...(o.schema === 'apply' ? (['indexes'] as const) : []),
      ...(o.schema === 'apply' ? (['post-data'] as const) : []),
      'sequences',
      'large-objects',
      'materialized-views',
      'analyze',
    ];
    return {
      source: describeConnection(o.source),
      target: describeConnection(o.target),
      pgDump,
      phases,
      jobs,
      totalBytes: jobs.reduce((s, j) => s + j.estimatedBytes, 0),
      notes,
      rowSecurity: rowSecurityLines(sourceAccess),
      problems,
    };
  } finally {
    await closeQuietly(source);
  }
}
