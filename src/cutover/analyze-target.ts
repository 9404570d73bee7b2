/**
 * ANALYZE at cutover, while writes are blocked, so only what needs it. Start's copy analyzed
 * every table, and autovacuum analyzes the target's tables as replication changes them; what
 * is left are tables whose statistics are missing or stale by autovacuum's own default rule
 * (more than 50 + 10 % of their rows changed since the last analyze), the tables copied at
 * cutover, and the partitioned parents of stale partitions (autovacuum never analyzes those).
 * Checked on PostgreSQL 17 (the target); the statistics columns exist from 9.4.
 */
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { TableRef } from '../plan/chunk.js';
import { readReplicationTables } from '../replicate/replication-tables.js';
import { analyzeTables } from '../clone/analyze-tables.js';

const STALE_SQL = `
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind = 'r'
  AND (s.relid IS NULL
       OR (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)
       OR s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0))`;

const key = (t: TableRef) => `${t.schema}\0${t.name}`;

/**
 * ANALYZEs the target's stale tables and `copied`, `jobs` at a time; returns how many
 * tables it analyzed and how many it left to autovacuum.
 */
export async function analyzeStale(
  target: ConnectionSpec,
  ledgerSchema: string,
  copied: readonly TableRef[],
  jobs: number,
): Promise<{ analyzed: number; skipped: number }> {
  const lister = await openClient(target, { applicationName: 'pgconvoy analyze' });
  let chosen: TableRef[];
  let all: number;
  try {
    const tables = await readReplicationTables(lister, ledgerSchema);
    const stale = new Set((await lister.query<TableRef>(STALE_SQL)).rows.map(key));
    for (const t of copied) stale.add(key(t));
    const plain = tables.filter((t) => t.kind === 'table' && stale.has(key(t)));
    const parents = plain.some((t) => t.partition) ? tables.filter((t) => t.kind === 'partitioned') : [];
    chosen = [...plain, ...parents].map((t) => ({ schema: t.schema, name: t.name }));
    all = tables.length;
  } finally {
    await lister.end().catch(() => undefined);
  }
  await analyzeTables(target, chosen, jobs);
  return { analyzed: chosen.length, skipped: all - chosen.length };
}
