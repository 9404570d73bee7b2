/**
 * Loading into a target table that is partitioned (relkind p) while the source's table of the
 * same name is not, or is partitioned otherwise: the layout an operator chose for the target
 * with `--schema skip` (partition a big flat table on the way).
 *
 * Such a table is loaded as a whole: the target routes each row to its partition. `TRUNCATE
 * ONLY` and `COPY … FREEZE` are refused on a partitioned table, so a job that owns the table
 * truncates it with its partitions and loads without FREEZE; checks for existing rows read
 * it with its partitions. A row that fits no partition fails its job with the table, the key
 * and what to do (see noPartitionError); it is not retried: it would fail the same way.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, serverErrorFields } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import { qualifiedName } from '../util/sql.js';
import { tableKey } from './table-columns.js';
import { SQLSTATE } from '../sqlstate.js';

/** The partitioned tables of one server, as tableKey()s. */
export async function readPartitionedTables(client: pg.Client): Promise<Set<string>> {
  const res = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
     FROM pg_catalog.pg_class c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'p'`,
  );
  return new Set(res.rows.map((r) => tableKey(r)));
}

/**
 * How a load names a target table where it must mean "this table's own rows": `ONLY t` for
 * a plain table (its inheritance children are loaded by jobs of their own), the whole
 * partition tree for a partitioned one (it has no rows of its own).
 */
export function targetRelation(table: TableRef, partitioned: ReadonlySet<string>): string {
  const name = qualifiedName(table.schema, table.name);
  return partitioned.has(tableKey(table)) ? name : `ONLY ${name}`;
}

/**
 * The target's "no partition of relation … found for row" (SQLSTATE 23514 without a
 * constraint name: a CHECK constraint's 23514 names its constraint) as the error a user can
 * act on, naming the table and the key; undefined for any other error.
 */
export function noPartitionError(err: unknown, table: string): PgconvoyError | undefined {
  const fields = serverErrorFields(err);
  if (fields?.code !== SQLSTATE.checkViolation || fields.constraint) return undefined;
  // Loading a partition directly: "violates partition constraint" has another remedy.
  if (/partition constraint/.test(err instanceof Error ? err.message : '')) return undefined;
  const key = fields.detail?.replace(/^Partition key of the failing row contains /, '').replace(/\.$/, '');
  return new PgconvoyError(
    `no partition of ${table} on the target accepts a row of the source${key ? `: partition key ${key}` : ''}`,
    {
      code: 'NO_PARTITION_FOR_ROW',
      exitCode: EXIT.target,
      hint: `add a partition for that key on the target, or a default one (CREATE TABLE … PARTITION OF ${table} DEFAULT), then run the same command again: the jobs already done are kept`,
      cause: err,
      details: { table, ...(key ? { key } : {}) },
    },
  );
}
