/**
 * Which tables get their rows compared, and how: tables and populated materialized views
 * present on both sides, over the columns both sides have, by key ranges when the source
 * inventory found an integer split column and by hash buckets otherwise; largest first.
 * Tables whose layouts differ (see layouts.ts) are read as a whole, partitions included.
 */
import type { Inventory } from '../inventory/inventory.js';
import type { Catalog, CatalogTable } from './catalog.js';
import { relKey, type Layouts } from './layouts.js';
import { columnHash, type HashedColumn } from './row-hash.js';
import { columnInScope, tableRowsInScope, type Scope } from './scope.js';
import { newTableJob, type TableJob } from './table-job.js';
import type { TableResult } from './types.js';

const key = relKey;
const hasRows = (t: CatalogTable) => t.relkind === 'r' || t.relkind === 'm';

function unpaired(t: CatalogTable, status: TableResult['status']): TableResult {
  return {
    schema: t.schema,
    name: t.name,
    status,
    method: undefined,
    rows: { source: undefined, target: undefined },
    chunks: { total: 0, differing: 0 },
    columns: [],
    seconds: 0,
    differences: [],
    truncated: false,
  };
}

export interface TablePlan {
  jobs: TableJob[];
  /** Tables whose rows cannot be compared: only on one side, or of another kind there. */
  unpaired: TableResult[];
}

export function buildTableJobs(input: {
  scope: Scope;
  source: Catalog;
  target: Catalog;
  layouts: Layouts;
  inventory: Inventory;
  maxDiffs: number;
  convert: boolean;
  /** Only count the rows of these tables' (see VerifyOptions.contents). */
  countOnly?: (t: { schema: string; name: string }) => boolean;
}): TablePlan {
  const { scope, source, target, inventory, layouts } = input;
  const targetTables = new Map(target.tables.map((t) => [key(t), t]));
  const sourceTables = new Map(source.tables.map((t) => [key(t), t]));
  const order = new Map(inventory.tables.map((t, i) => [key(t), i]));
  const inventoryTables = new Map(inventory.tables.map((t) => [key(t), t]));
  const jobs: TableJob[] = [];
  const others: TableResult[] = [];
  const compared = (t: CatalogTable) => hasRows(t) || layouts.whole.has(key(t));
  for (const s of source.tables.filter((t) => compared(t) && tableRowsInScope(scope, t))) {
    if (layouts.coveredSource.has(key(s))) continue; // read with its partitioned ancestor
    const t = targetTables.get(key(s));
    if (!t) {
      others.push(unpaired(s, 'missing on target'));
      continue;
    }
    const whole = layouts.whole.has(key(s));
    if (t.relkind !== s.relkind && !whole) {
      others.push(unpaired(s, 'differ'));
      continue;
    }
    // A materialized view that is not populated has no rows to read (the schema compare says so).
    if (s.relkind === 'm' && !(s.populated && t.populated)) continue;
    const targetColumns = new Map(t.columns.map((c) => [c.name, c]));
    const common = s.columns.filter((c) => targetColumns.has(c.name) && columnInScope(scope, s, c.name));
    const hashed = common.map((c): HashedColumn => {
      const other = targetColumns.get(c.name);
      return {
        name: c.name,
        type: c.base ?? undefined,
        hash: columnHash(c.base ?? undefined, other?.base ?? undefined),
        notNull: c.notNull && other?.notNull === true,
      };
    });
    const typeOf = new Map(common.map((c) => [c.name, c.type]));
    const inv = inventoryTables.get(key(s));
    const pk = inv?.primaryKey?.map((name) => ({ name, type: typeOf.get(name) ?? '' }));
    const split = inv?.splitColumn && typeOf.has(inv.splitColumn.name) ? inv.splitColumn : undefined;
    const estimated = inv?.estimatedRows ?? Math.ceil((inv?.bytes ?? 0) / 100);
    jobs.push(
      newTableJob(
        { schema: s.schema, name: s.name },
        {
          table: { schema: s.schema, name: s.name },
          hashed,
          key: pk && pk.every((k) => k.type !== '') ? pk : undefined,
          convert: input.convert,
          whole,
        },
        split,
        estimated,
        input.maxDiffs,
        inv,
      ),
    );
  }
  for (const t of target.tables.filter((x) => hasRows(x) && tableRowsInScope(scope, x))) {
    if (!sourceTables.has(key(t)) && !layouts.coveredTarget.has(key(t)))
      others.push(unpaired(t, 'missing on source'));
  }
  for (const job of jobs) if (input.countOnly?.(job.ref)) job.method = 'count';
  // The source inventory lists tables largest first: start the big ones first.
  const rank = (job: TableJob) => order.get(key(job.ref)) ?? order.size;
  jobs.sort((a, b) => rank(a) - rank(b));
  return { jobs, unpaired: others };
}
