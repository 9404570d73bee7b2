/**
 * ANALYZE on the target, several tables at once (one session each), so the planner has
 * statistics before the application arrives. Used at the end of clone (every table) and of
 * cutover (only the stale ones, see analyzeStale).
 * Tables in `vacuum` are VACUUMed first: chunked loads cannot use COPY FREEZE, and until a
 * vacuum sets the visibility map, index-only scans read the heap. The VACUUMs run before any
 * ANALYZE, because a running ANALYZE's snapshot keeps a concurrent VACUUM from marking the
 * freshly loaded pages all-visible (VACUUMs ignore each other).
 *
 * Small tables (known `bytes` up to SMALL_ANALYZE_BYTES) are analyzed many to a statement:
 * `ANALYZE a, b, c` takes one round trip for all and still one transaction per table.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly, withClient } from '../connect/session.js';
import { tableKey, type TableRef } from '../plan/chunk.js';
import { readReplicationTables } from '../replicate/replication-tables.js';
import { runLimited } from '../util/pool.js';
import { qualifiedName } from '../util/sql.js';

/** Tables up to this size are analyzed together, ANALYZE_BATCH to a statement. */
const SMALL_ANALYZE_BYTES = 8 * 1024 ** 2;
const ANALYZE_BATCH = 100;

export async function analyzeTables(
  target: ConnectionSpec,
  tables: readonly (TableRef & { bytes?: number })[],
  jobs: number,
  vacuum: ReadonlySet<string> = new Set(),
): Promise<void> {
  const sessions: pg.Client[] = [];
  try {
    for (let i = 0; i < Math.max(1, Math.min(jobs, tables.length)); i++) {
      sessions.push(await openClient(target, { applicationName: `pgconvoy analyze ${i + 1}` }));
    }
    const free = [...sessions];
    const run = (command: string, list: readonly string[]) =>
      runLimited(list, sessions.length, async (name) => {
        const client = free.pop();
        if (!client) throw new Error('no free ANALYZE session');
        try {
          await client.query(`${command} ${name}`);
        } finally {
          free.push(client);
        }
      });
    const names = tables.map((t) => qualifiedName(t.schema, t.name));
    await run(
      'VACUUM',
      names.filter((n) => vacuum.has(n)),
    );
    const small = (t: TableRef & { bytes?: number }) =>
      t.bytes !== undefined && t.bytes <= SMALL_ANALYZE_BYTES;
    const groups: string[] = tables.filter((t) => !small(t)).map((t) => qualifiedName(t.schema, t.name));
    const smallNames = tables.filter(small).map((t) => qualifiedName(t.schema, t.name));
    for (let i = 0; i < smallNames.length; i += ANALYZE_BATCH)
      groups.push(smallNames.slice(i, i + ANALYZE_BATCH).join(', '));
    await run('ANALYZE', groups);
  } finally {
    await Promise.all(sessions.map(closeQuietly));
  }
}

/*
 * ANALYZE at cutover, while writes are blocked, so only what needs it. Start's copy analyzed
 * every table, and autovacuum analyzes the target's tables as replication changes them; what
 * is left are tables whose statistics are missing or stale by autovacuum's own default rule
 * (more than 50 + 10 % of their rows changed since the last analyze), the tables copied at
 * cutover, and the partitioned parents of stale partitions (autovacuum never analyzes those).
 * Checked on PostgreSQL 17 (the target); the statistics columns exist from 9.4.
 */
const STALE_SQL = `
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind = 'r'
  AND (s.relid IS NULL
       OR (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)
       OR s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0))`;

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
  const { chosen, all } = await withClient(
    target,
    async (lister) => {
      const tables = await readReplicationTables(lister, ledgerSchema);
      const stale = new Set((await lister.query<TableRef>(STALE_SQL)).rows.map(tableKey));
      for (const t of copied) stale.add(tableKey(t));
      const plain = tables.filter((t) => t.kind === 'table' && stale.has(tableKey(t)));
      const parents = plain.some((t) => t.partition) ? tables.filter((t) => t.kind === 'partitioned') : [];
      return {
        chosen: [...plain, ...parents].map((t) => ({ schema: t.schema, name: t.name })),
        all: tables.length,
      };
    },
    { applicationName: 'pgconvoy analyze' },
  );
  await analyzeTables(target, chosen, jobs);
  return { analyzed: chosen.length, skipped: all - chosen.length };
}
