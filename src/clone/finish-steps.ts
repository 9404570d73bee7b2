/**
 * What comes after a clone's rows that only clone does: materialized views refreshed, and
 * which tables to ANALYZE (sequences, large objects and ANALYZE itself are in finish/, shared
 * with cutover). Each step commits together with its ledger mark. Checked on 13, 15, 17.
 */
import type pg from 'pg';
import type { Steps } from '../ledger/steps.js';
import type { Inventory, TableInfo } from '../inventory/inventory.js';
import { qualifiedName } from '../util/sql.js';
import { inTransaction } from '../connect/session.js';

/** Materialized views that hold data on the source, in creation order (dependencies first). */
export async function populatedMatviews(
  source: pg.Client,
  ledgerSchema: string,
): Promise<{ schema: string; name: string }[]> {
  const res = await source.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname <> $1
     ORDER BY c.oid`,
    [ledgerSchema],
  );
  return res.rows;
}

export async function refreshMatviews(
  target: pg.Client,
  views: { schema: string; name: string }[],
  steps: Steps,
): Promise<void> {
  await inTransaction(target, async () => {
    for (const v of views) await target.query(`REFRESH MATERIALIZED VIEW ${qualifiedName(v.schema, v.name)}`);
    await steps.markDone(target, 'materialized-views', { count: views.length });
  });
}

/** Tables to ANALYZE: every copied table and partitioned parent. */
export function analyzeTargets(inventory: Inventory): TableInfo[] {
  return inventory.tables.filter(
    (t) => t.kind === 'table' || t.kind === 'partitioned' || t.kind === 'materialized-view',
  );
}
