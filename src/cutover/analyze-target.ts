/**
 * ANALYZE after cutover: the planner's statistics on the target were taken by start's copy;
 * replication has changed the tables since. Every table and partitioned table, `jobs` at once.
 * Checked on PostgreSQL 17 (the target).
 */
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { TableRef } from '../plan/chunk.js';
import { readReplicationTables } from '../replicate/replication-tables.js';
import { analyzeTables } from '../clone/analyze-tables.js';

/** ANALYZE every table and partitioned table on the target, `jobs` at a time. */
export async function analyzeAll(target: ConnectionSpec, ledgerSchema: string, jobs: number): Promise<void> {
  const lister = await openClient(target, { applicationName: 'pgferry analyze' });
  let tables: TableRef[];
  try {
    tables = (await readReplicationTables(lister, ledgerSchema)).map((t) => ({
      schema: t.schema,
      name: t.name,
    }));
  } finally {
    await lister.end().catch(() => undefined);
  }
  await analyzeTables(target, tables, jobs);
}
