/**
 * ANALYZE after cutover: the planner's statistics on the target were taken by start's copy;
 * replication has changed the tables since. Every table and partitioned table, `jobs` at once.
 * Checked on PostgreSQL 17 (the target).
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { TableRef } from '../plan/chunk.js';
import { readReplicationTables } from '../replicate/replication-tables.js';
import { runLimited } from '../util/pool.js';
import { qualifiedName } from '../util/sql.js';

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
  const sessions: pg.Client[] = [];
  try {
    for (let i = 0; i < Math.max(1, Math.min(jobs, tables.length)); i++)
      sessions.push(await openClient(target, { applicationName: `pgferry analyze ${i + 1}` }));
    const free = [...sessions];
    await runLimited(tables, sessions.length, async (t) => {
      const client = free.pop();
      if (!client) throw new Error('no free ANALYZE session');
      try {
        await client.query(`ANALYZE ${qualifiedName(t.schema, t.name)}`);
      } finally {
        free.push(client);
      }
    });
  } finally {
    await Promise.all(sessions.map((s) => s.end().catch(() => undefined)));
  }
}
