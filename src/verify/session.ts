/**
 * Verify's sessions. Two rules make checksums comparable and verification harmless:
 *
 * - Every setting that changes how a value prints is pinned, so that the same row prints
 *   the same text on any server and major (time zone, date and interval styles, all float
 *   digits, hex bytea, C money and numeric locale, and search_path empty).
 * - Everything is read-only: every transaction is READ ONLY, and locks are held only for
 *   one task (one short transaction per chunk, each importing the side's exported snapshot),
 *   with a small lock_timeout so verify never queues behind DDL and blocks others.
 * - Nothing is compared that a row-level security policy filtered: row_security is off on
 *   both sides, so such a read fails (naming the table and the fix) instead of returning,
 *   and agreeing on, fewer rows.
 *
 * A coordinator session per side exports the snapshot and stays idle in its transaction
 * (holding no table locks) until verification ends.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly, READ_ONLY_SNAPSHOT } from '../connect/session.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage } from '../errors.js';
import { quoteLiteral } from '../util/sql.js';
import { accessDeniedError } from '../copy/read-denied.js';
import { VERIFY_DEFAULTS } from './types.js';
import { SQLSTATE, sqlstateOf } from '../sqlstate.js';

// Checked on 13, 15, 17. set_config() takes parameters, SET does not.
const PIN_SETTINGS = `
SELECT pg_catalog.set_config('TimeZone', 'UTC', false),
       pg_catalog.set_config('DateStyle', 'ISO, YMD', false),
       pg_catalog.set_config('IntervalStyle', 'postgres', false),
       pg_catalog.set_config('extra_float_digits', '3', false),
       pg_catalog.set_config('bytea_output', 'hex', false),
       pg_catalog.set_config('search_path', '', false),
       pg_catalog.set_config('default_transaction_read_only', 'on', false),
       pg_catalog.set_config('lock_timeout', $1, false),
       pg_catalog.set_config('statement_timeout', '0', false),
       pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false),
       pg_catalog.set_config('row_security', 'off', false)`;

/** Not every server lets every role set these; the C locale prints numbers plainly. */
const OPTIONAL_SETTINGS: [string, string][] = [
  ['lc_monetary', 'C'],
  ['lc_numeric', 'C'],
  // JIT compiles each chunk's aggregate: ~100 ms per query buys nothing on a one-pass scan.
  ['jit', 'off'],
  // --jobs sets how many chunks each server works on at once; parallel workers under each
  // would only crowd the same cores (and a production server's other users).
  ['max_parallel_workers_per_gather', '0'],
];

export function sideExit(spec: ConnectionSpec): typeof EXIT.source | typeof EXIT.target {
  return spec.side === 'source' ? EXIT.source : EXIT.target;
}

/** A failed verify query, naming the side and what was being read. */
export function verifyQueryError(spec: ConnectionSpec, what: string, err: unknown): PgconvoyError {
  if (err instanceof PgconvoyError) return err;
  const denied = accessDeniedError(err, spec.side, what);
  if (denied) return denied;
  const lock = sqlstateOf(err) === SQLSTATE.lockNotAvailable;
  return new PgconvoyError(`verify could not read ${what} on the ${spec.side}: ${errorMessage(err)}`, {
    code: lock ? 'VERIFY_LOCK_TIMEOUT' : 'VERIFY_QUERY_FAILED',
    hint: lock
      ? 'another session holds a lock on it (DDL in progress?); run verify again when it is done'
      : `check that the ${spec.side} is reachable and the role may read every table`,
    exitCode: sideExit(spec),
    cause: err,
  });
}

/** Opens a session with every output-affecting setting pinned. */
export async function openVerifySession(spec: ConnectionSpec, label: string): Promise<pg.Client> {
  const client = await openClient(spec, { applicationName: `pgconvoy verify ${label}` });
  try {
    await client.query(PIN_SETTINGS, [VERIFY_DEFAULTS.lockTimeout]);
    for (const [name, value] of OPTIONAL_SETTINGS) {
      await client.query('SELECT pg_catalog.set_config($1, $2, false)', [name, value]).catch(() => undefined);
    }
    return client;
  } catch (err) {
    await closeQuietly(client);
    throw verifyQueryError(spec, 'its session settings', err);
  }
}

export interface Coordinator {
  snapshot: string;
  lsn: string | undefined;
  version: string;
  major: number;
  encoding: string;
  close(): Promise<void>;
}

// Checked on 13, 15, 17; on a standby the replay position stands for the WAL position.
const EXPORT_SQL = `
SELECT pg_catalog.pg_export_snapshot() AS snapshot,
       (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
             ELSE pg_catalog.pg_current_wal_lsn() END)::text AS lsn,
       pg_catalog.current_setting('server_version') AS version,
       pg_catalog.current_setting('server_version_num')::int AS num,
       pg_catalog.current_setting('server_encoding') AS encoding`;

const INFO_SQL = `
SELECT pg_catalog.current_setting('server_version') AS version,
       pg_catalog.current_setting('server_version_num')::int AS num,
       pg_catalog.current_setting('server_encoding') AS encoding`;

/**
 * Exports a snapshot for this side (or, when `given` is set, only checks that it can be
 * imported and reads the server facts).
 */
export async function openCoordinator(spec: ConnectionSpec, given: string | undefined): Promise<Coordinator> {
  const client = await openVerifySession(spec, 'snapshot');
  const close = async () => {
    await client.query('COMMIT').catch(() => undefined);
    await closeQuietly(client);
  };
  try {
    if (given !== undefined) {
      await beginTask(client, given);
      const info = await client.query<{ version: string; num: number; encoding: string }>(INFO_SQL);
      await client.query('COMMIT');
      const row = info.rows[0];
      if (!row) throw new Error('no server information');
      await closeQuietly(client);
      return {
        snapshot: given,
        lsn: undefined,
        version: row.version,
        major: Math.floor(row.num / 10000),
        encoding: row.encoding,
        close: () => Promise.resolve(),
      };
    }
    await client.query(READ_ONLY_SNAPSHOT);
    const res = await client.query<{
      snapshot: string;
      lsn: string | null;
      version: string;
      num: number;
      encoding: string;
    }>(EXPORT_SQL);
    const row = res.rows[0];
    if (!row) throw new Error('pg_export_snapshot returned nothing');
    return {
      snapshot: row.snapshot,
      lsn: row.lsn ?? undefined,
      version: row.version,
      major: Math.floor(row.num / 10000),
      encoding: row.encoding,
      close,
    };
  } catch (err) {
    await close();
    if (given !== undefined) {
      throw new PgconvoyError(`cannot read in the ${spec.side} snapshot "${given}": ${errorMessage(err)}`, {
        code: 'VERIFY_BAD_SNAPSHOT',
        hint: 'the transaction that exported it must still be open; export it again with pg_export_snapshot()',
        exitCode: sideExit(spec),
        cause: err,
      });
    }
    throw verifyQueryError(spec, 'a snapshot', err);
  }
}

/** Starts one task's transaction in the side's snapshot: one round trip. */
export async function beginTask(client: pg.Client, snapshot: string): Promise<void> {
  await client.query(
    `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`,
  );
}

export async function endTask(client: pg.Client): Promise<void> {
  await client.query('COMMIT');
}
