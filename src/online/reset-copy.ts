/**
 * Starting over after a `start` that stopped during its initial copy. The rows copied so far
 * came from the old slot's snapshot, and that snapshot died with the process: they cannot be
 * completed, nor replayed onto, by a new slot. So the copy is undone: every table with a done
 * job is emptied (a job's rows commit together with its done mark, so no other table holds
 * copied rows), the jobs are forgotten, and the steps that depend on the data
 * (sequences, large objects, materialized views, ANALYZE) are marked undone. The schema,
 * indexes and constraints stay: they do not depend on which snapshot the rows came from.
 * One transaction: either all of it happens or none.
 *
 * Checked on PostgreSQL 13, 15 and 17 (the target).
 */
import type pg from 'pg';
import { inTransaction } from '../connect/session.js';
import type { TableRef } from '../plan/chunk.js';
import { readPartitionedTables, targetRelation } from '../copy/partitioned-target.js';
import { qualifiedName } from '../util/sql.js';

const DATA_STEPS = ['sequences', 'large-objects', 'materialized-views', 'analyze'];

export async function resetInterruptedCopy(target: pg.Client, ledgerSchema: string): Promise<TableRef[]> {
  const jobs = qualifiedName(ledgerSchema, 'jobs');
  const steps = qualifiedName(ledgerSchema, 'steps');
  return inTransaction(target, async () => {
    const res = await target.query<{ schema: string; name: string }>(
      `SELECT DISTINCT j.table_schema AS schema, j.table_name AS name
       FROM ${jobs} j
       WHERE j.state = 'done'
         AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', j.table_schema, j.table_name)) IS NOT NULL
       ORDER BY 1, 2`,
    );
    const tables = res.rows;
    if (tables.length > 0) {
      const partitioned = await readPartitionedTables(target);
      await target.query(`TRUNCATE ${tables.map((t) => targetRelation(t, partitioned)).join(', ')}`);
    }
    const lo = await target.query(`SELECT 1 FROM ${steps} WHERE name = 'large-objects' AND state = 'done'`);
    if ((lo.rowCount ?? 0) > 0) {
      await target.query('SELECT pg_catalog.lo_unlink(m.oid) FROM pg_catalog.pg_largeobject_metadata m');
    }
    await target.query(`DELETE FROM ${jobs}`);
    await target.query(`DELETE FROM ${steps} WHERE name = ANY($1::text[])`, [DATA_STEPS]);
    return tables;
  });
}
