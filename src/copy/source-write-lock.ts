/**
 * One point in time for readers that cannot import the copy's snapshot.
 *
 * `clone --via fdw` has the TARGET server read the source through postgres_fdw, which opens
 * its own remote transactions: one per job, each with a snapshot of its own (postgres_fdw has
 * no way to import an exported one). Left alone, a source that is written to during the copy
 * would give chunks of one table read at different moments: rows moved between chunks by an
 * UPDATE copied twice or not at all, and sequences read earlier than the rows.
 *
 * So the coordinator session takes `LOCK TABLE … IN SHARE MODE` on every table to copy,
 * before its REPEATABLE READ snapshot is taken (LOCK is not a query: the snapshot comes with
 * the next statement), and keeps it until the copy ends. SHARE conflicts with every writer
 * (INSERT, UPDATE, DELETE, MERGE, TRUNCATE, DDL) and with no reader, so every remote
 * transaction sees exactly the rows of the exported snapshot, which sequences and large
 * objects are read in too. The price, said up front in --help and the README: writes to
 * those tables wait until the copy ends. A job checks after its pull that the lock is still
 * held (`writeLockHeld`): if the coordinator's transaction was lost (a source restart), the
 * run says so, as the COPY path does when its snapshot is lost.
 *
 * Checked with PostgreSQL 13, 15 and 17 as the source.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import { SQLSTATE } from '../sqlstate.js';
import { qualifiedName } from '../util/sql.js';

/** Lock modes writers and DDL take, which SHARE conflicts with. */
const WRITER_MODES = [
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];

/** Locks `tables` IN SHARE MODE in the session's open transaction, waiting at most `timeoutMs` (0: forever). */
export async function lockAgainstWrites(
  client: pg.Client,
  tables: readonly TableRef[],
  timeoutMs: number,
): Promise<void> {
  const standby = await client.query<{ r: boolean }>('SELECT pg_catalog.pg_is_in_recovery() AS r');
  if (standby.rows[0]?.r)
    throw new PgconvoyError('the source is a standby: its tables cannot be locked against writes', {
      code: 'SOURCE_NOT_LOCKABLE',
      exitCode: EXIT.source,
      hint: 'clone --via fdw reads the source in many transactions and keeps writers out with table locks, which only the primary can take: point --source at the primary, or clone without --via fdw (COPY reads one snapshot)',
    });
  await client.query('SELECT pg_catalog.set_config($1, $2, true)', ['lock_timeout', String(timeoutMs)]);
  try {
    // ONLY: the copy reads each partition and child by itself, and each is in the list.
    await client.query(
      `LOCK TABLE ${tables.map((t) => `ONLY ${qualifiedName(t.schema, t.name)}`).join(', ')} IN SHARE MODE`,
    );
  } catch (err) {
    const code = serverErrorFields(err)?.code;
    if (code === SQLSTATE.lockNotAvailable) {
      throw new PgconvoyError(
        `waited ${timeoutMs / 1000} s to lock the source tables against writes, in vain: ${await writers(client, tables)}`,
        {
          code: 'LOCK_TIMEOUT',
          exitCode: EXIT.source,
          hint: 'clone --via fdw keeps writers out of the source tables while it copies (the copy is then one point in time): stop the application writing to the source, or let that transaction finish, then run the same command again; or clone without --via fdw',
          cause: err,
        },
      );
    }
    if (code === SQLSTATE.insufficientPrivilege) {
      throw new PgconvoyError(
        `the source role may not lock the tables to copy against writes: ${errorMessage(err)}`,
        {
          code: 'SOURCE_NOT_LOCKABLE',
          exitCode: EXIT.source,
          hint: 'LOCK … IN SHARE MODE needs UPDATE, DELETE or TRUNCATE on each table (or ownership): grant one of them to the source role, connect as the owner, or clone without --via fdw',
          cause: err,
        },
      );
    }
    throw err;
  }
}

/** Who holds a writer's lock on one of `tables`, for the timeout message. */
async function writers(client: pg.Client, tables: readonly TableRef[]): Promise<string> {
  // The failed LOCK aborted the transaction; the caller closes this session afterwards.
  await client.query('ROLLBACK').catch(() => undefined);
  const res = await client
    .query<{ pid: number; app: string; state: string; rel: string; mode: string }>(
      `SELECT DISTINCT l.pid, coalesce(a.application_name, '') AS app, coalesce(a.state, '') AS state,
              format('%I.%I', n.nspname, c.relname) AS rel, l.mode
         FROM pg_catalog.pg_locks l
         JOIN pg_catalog.pg_class c ON c.oid = l.relation
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.granted AND l.mode = ANY ($1::text[]) AND l.pid <> pg_catalog.pg_backend_pid()
          AND (n.nspname, c.relname) IN (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])))
        ORDER BY 1 LIMIT 5`,
      [WRITER_MODES, tables.map((t) => t.schema), tables.map((t) => t.name)],
    )
    .catch(() => ({ rows: [] }));
  if (res.rows.length === 0) return 'a session holds a conflicting lock (see pg_locks on the source)';
  return res.rows
    .map(
      (r) =>
        `pid ${r.pid}${r.app ? ` (${r.app})` : ''} holds ${r.mode} on ${r.rel}${r.state ? `, ${r.state}` : ''}`,
    )
    .join('; ');
}

/** Whether session `pid` (the coordinator) still holds its SHARE lock on `table`. */
export async function writeLockHeld(client: pg.Client, pid: number, table: TableRef): Promise<boolean> {
  const res = await client.query<{ held: boolean }>(
    `SELECT EXISTS (
       SELECT FROM pg_catalog.pg_locks l
         JOIN pg_catalog.pg_class c ON c.oid = l.relation
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE l.pid = $1 AND l.locktype = 'relation' AND l.mode = 'ShareLock' AND l.granted
          AND n.nspname = $2 AND c.relname = $3) AS held`,
    [pid, table.schema, table.name],
  );
  return res.rows[0]?.held ?? false;
}
