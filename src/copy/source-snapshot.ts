/**
 * One consistent view of the source for every copy worker: a coordinator session opens a
 * REPEATABLE READ transaction and exports its snapshot; each worker imports it with
 * SET TRANSACTION SNAPSHOT. The snapshot lives as long as the coordinator's transaction,
 * so the coordinator stays open (idle in transaction) until the copy ends.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly, READ_ONLY_SNAPSHOT } from '../connect/session.js';
import { quoteLiteral } from '../util/sql.js';
import type { TableRef } from '../plan/chunk.js';
import { lockAgainstWrites } from './source-write-lock.js';

export interface SnapshotHandle {
  name: string;
  /** Source WAL position when the snapshot was taken (undefined on a standby). */
  lsn: string | undefined;
  /** The coordinator session (in the snapshot): also used for sequences and large objects. */
  client: pg.Client;
  /** Its backend pid on the source (whose locks prove the snapshot is still held). */
  pid: number;
  close(): Promise<void>;
}

export interface ExportOptions {
  /**
   * Tables to keep every writer out of for as long as the snapshot lives (SHARE locks taken
   * before the snapshot; see source-write-lock.ts): for readers that cannot import it.
   */
  lockAgainstWrites?: readonly TableRef[];
  /** How long the locks may wait for writers in flight. */
  lockTimeoutMs?: number;
}

export async function exportSnapshot(
  source: ConnectionSpec,
  options: ExportOptions = {},
): Promise<SnapshotHandle> {
  const client = await openClient(source, { applicationName: 'pgconvoy snapshot' });
  await prepareSourceSession(client);
  const locked = options.lockAgainstWrites ?? [];
  // LOCK … IN SHARE MODE is refused in a READ ONLY transaction.
  await client.query(`BEGIN ISOLATION LEVEL REPEATABLE READ${locked.length ? '' : ' READ ONLY'}`);
  try {
    // Before the first query: a REPEATABLE READ snapshot is taken by the first statement after LOCK.
    if (locked.length) await lockAgainstWrites(client, locked, options.lockTimeoutMs ?? 0);
  } catch (err) {
    await closeQuietly(client);
    throw err;
  }
  const res = await client.query<{ name: string; lsn: string | null; pid: number }>(
    `SELECT pg_catalog.pg_export_snapshot() AS name, pg_catalog.pg_backend_pid() AS pid,
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_lsn()::text END AS lsn`,
  );
  const row = res.rows[0]!;
  return {
    name: row.name,
    lsn: row.lsn ?? undefined,
    client,
    pid: row.pid,
    close: async () => {
      await client.query('COMMIT').catch(() => undefined);
      await closeQuietly(client);
    },
  };
}

/**
 * Settings for every source session: no timeouts that would cut a long copy short, and
 * row_security off, as pg_dump does: a read that a row-level security policy would filter
 * then fails (see read-denied.ts) instead of silently returning fewer rows.
 */
export async function prepareSourceSession(client: pg.Client): Promise<void> {
  await client.query(
    `SELECT pg_catalog.set_config('statement_timeout', '0', false),
            pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false),
            pg_catalog.set_config('lock_timeout', '0', false),
            pg_catalog.set_config('row_security', 'off', false)`,
  );
}

/** Opens a worker's read transaction in the shared snapshot (or a fresh one when none is given). */
export async function beginInSnapshot(client: pg.Client, snapshot: string | undefined): Promise<void> {
  await client.query(READ_ONLY_SNAPSHOT);
  if (snapshot) await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
}
