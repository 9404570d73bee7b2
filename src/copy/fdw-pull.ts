/**
 * One job's data path under `clone --via fdw`: the TARGET server pulls the chunk's rows from
 * the source through postgres_fdw, in the job's own target transaction:
 *
 *   INSERT INTO t (cols) SELECT cols FROM <private schema>.<foreign table of t> WHERE <chunk>
 *
 * so the rows never pass through pgconvoy (the right choice when pgconvoy runs far from both
 * servers), and the rows and the job's done mark still commit together: exactly once.
 *
 * The chunk's condition is the COPY path's (plan/chunk.ts). postgres_fdw sends it to the
 * source: key ranges (the foreign table has the source column's collation, see
 * fdw/foreign-tables.ts) and ctid ranges (postgres_fdw ships ctid, the one system column
 * it does), so a chunk reads only its own part of the table there. A column whose type
 * differs on the target (int4 → int8, timestamp → timestamptz, a reshaped target) goes
 * through its text form, as text COPY does: the source type's output, the target type's input.
 *
 * postgres_fdw reads the remote table without ONLY: the caller refuses inheritance parents
 * (fdw/foreign-tables.ts `hasChildren`). Rows cannot be loaded frozen (INSERT has no FREEZE):
 * the clone vacuums every table it pulled. The job's byte count is the source's size
 * estimate: the rows are never seen by pgconvoy.
 */
import type pg from 'pg';
import { chunkCondition, type Chunk, type TableRef } from '../plan/chunk.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import { accessDeniedError } from './read-denied.js';
import { noPartitionError } from './partitioned-target.js';
import type { ColumnInfo } from './table-columns.js';

export interface PullOptions {
  /** The target table. */
  table: TableRef;
  /** Its foreign table over the source's table. */
  foreign: TableRef;
  /** Columns to move, as the COPY path would (table-columns.ts). */
  columns: string[];
  /** Both sides' column types, to read a column whose type differs through its text form. */
  sourceColumns: readonly ColumnInfo[];
  targetColumns: readonly ColumnInfo[];
  chunk: Chunk;
}

/** The INSERT … SELECT of one job (also what a DBA would run by hand). */
export function pullStatement(o: PullOptions): string {
  const sourceType = new Map(o.sourceColumns.map((c) => [c.name, c.type]));
  const targetType = new Map(o.targetColumns.map((c) => [c.name, c.type]));
  const select = o.columns.map((name) => {
    const to = targetType.get(name);
    return to === undefined || sourceType.get(name) === to
      ? quoteIdent(name)
      : `${quoteIdent(name)}::pg_catalog.text::${to}`;
  });
  const cond = chunkCondition(o.chunk);
  return `INSERT INTO ${qualifiedName(o.table.schema, o.table.name)} (${o.columns.map(quoteIdent).join(', ')})
SELECT ${select.join(', ')} FROM ${qualifiedName(o.foreign.schema, o.foreign.name)}${cond ? ` WHERE ${cond}` : ''}`;
}

/** Runs the pull in the caller's transaction; returns the rows inserted. */
export async function pullRows(target: pg.Client, o: PullOptions): Promise<{ rows: number }> {
  try {
    const res = await target.query(pullStatement(o));
    return { rows: res.rowCount ?? 0 };
  } catch (err) {
    const name = displayName(o.table.schema, o.table.name);
    // postgres_fdw raises the source's own errors with the remote statement as their context.
    const remote = /remote SQL command/.test((err as { where?: string }).where ?? '');
    throw (
      (remote ? accessDeniedError(err, 'source', name) : accessDeniedError(err, 'target', name, true)) ??
      noPartitionError(err, name) ??
      err
    );
  }
}

/**
 * A target session that pulls: should pgconvoy die, the server notices within a second
 * (PostgreSQL 14+) and stops the INSERT, instead of finishing a long chunk nobody will
 * commit while holding the job's claim.
 */
export async function preparePullSession(target: pg.Client): Promise<void> {
  await target.query(
    `SELECT pg_catalog.set_config(name, '1000', false) FROM pg_catalog.pg_settings
      WHERE name = 'client_connection_check_interval'`,
  );
}
