/**
 * Cutover refreshes the target's populated materialized views once the target has caught
 * up: `start` filled them at the slot's snapshot, and replication carries the tables under
 * them, not their derived rows. CONCURRENTLY where a unique index allows it (readers are not
 * blocked); in creation order, so a view built on another comes after it.
 */
import type pg from 'pg';
import { qualifiedName } from '../util/sql.js';

export interface RefreshedViews {
  count: number;
  concurrently: number;
}

export async function refreshTargetMatviews(
  target: pg.Client,
  ledgerSchema: string,
): Promise<RefreshedViews> {
  const res = await target.query<{ schema: string; name: string; unique: boolean }>(
    `SELECT n.nspname AS schema, c.relname AS name,
            EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                    WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                      AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname <> $1
     ORDER BY c.oid`,
    [ledgerSchema],
  );
  for (const v of res.rows)
    await target.query(
      `REFRESH MATERIALIZED VIEW ${v.unique ? 'CONCURRENTLY ' : ''}${qualifiedName(v.schema, v.name)}`,
    );
  return { count: res.rows.length, concurrently: res.rows.filter((v) => v.unique).length };
}
