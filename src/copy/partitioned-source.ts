/**
 * Loading a partitioned source table into a plain target table of the same name: the layout
 * an operator chose for the target with `--schema skip` (merge the partitions back into one
 * table). The source's partitions have no table of their own on the target, so each is read
 * as a chunk of its partitioned ancestor (plan/chunk.ts, kind 'partition'): one job per
 * partition, all loading the ancestor's table, in parallel, like the chunks of a big table.
 * Online, the publication sends their changes as the ancestor's (publish_via_partition_root).
 */
import type pg from 'pg';
import type { TableRef } from '../plan/chunk.js';
import { tableKey } from './table-columns.js';

// Every partition with each of its partitioned ancestors, the topmost last.
const ANCESTORS_SQL = `
WITH RECURSIVE up(leaf, ancestor, depth) AS (
  SELECT c.oid, c.oid, 0 FROM pg_catalog.pg_class c WHERE c.relispartition AND c.relkind = 'r'
  UNION ALL
  SELECT up.leaf, i.inhparent, up.depth + 1 FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.ancestor
)
SELECT ln.nspname AS leaf_schema, l.relname AS leaf_name, an.nspname AS schema, a.relname AS name
FROM up
JOIN pg_catalog.pg_class l ON l.oid = up.leaf
JOIN pg_catalog.pg_namespace ln ON ln.oid = l.relnamespace
JOIN pg_catalog.pg_class a ON a.oid = up.ancestor AND a.relkind = 'p'
JOIN pg_catalog.pg_namespace an ON an.oid = a.relnamespace
ORDER BY up.depth`;

/**
 * The source partitions (as tableKey()s) that the target has no table for, each with the
 * partitioned ancestor (the topmost, when several) that the target has as a plain table.
 * `targetTables` are the target's tables and partitioned tables, `targetPartitioned` the latter.
 */
export async function flatTargetParents(
  source: pg.Client,
  targetTables: ReadonlySet<string>,
  targetPartitioned: ReadonlySet<string>,
): Promise<Map<string, TableRef>> {
  const res = await source.query<{ leaf_schema: string; leaf_name: string; schema: string; name: string }>(
    ANCESTORS_SQL,
  );
  const parents = new Map<string, TableRef>();
  for (const r of res.rows) {
    const leaf = tableKey({ schema: r.leaf_schema, name: r.leaf_name });
    const parent = { schema: r.schema, name: r.name };
    const flat = targetTables.has(tableKey(parent)) && !targetPartitioned.has(tableKey(parent));
    // Later rows are higher up: the topmost flat ancestor wins.
    if (!targetTables.has(leaf) && flat) parents.set(leaf, parent);
  }
  return parents;
}
