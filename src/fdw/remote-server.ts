/**
 * The source as a postgres_fdw foreign server on the target, so that the TARGET server can
 * read the source's tables itself (`clone --via fdw`, `switch-first`). What it sets up, and
 * `removeRemoteServer` takes down again:
 *
 *   - the `postgres_fdw` extension, when missing. pgconvoy creates it in a schema of its own
 *     (`REMOTE_EXTENSION_SCHEMA`), which is also the record that pgconvoy created it: an
 *     extension found in any other schema belongs to someone else and is never dropped.
 *   - a foreign server (`names.server`) with the source's libpq address (host, port, dbname,
 *     sslmode, ...) as the TARGET server sees it, and remote sessions named
 *     `pgconvoy fdw` that run with `row_security = off` and no timeouts, as pgconvoy's own
 *     source sessions do (a read that row-level security would filter fails instead).
 *   - a user mapping for the target role with the source's user and password.
 *   - a private schema (`names.schema`) for the foreign tables (foreign-tables.ts).
 *
 * The password: it must be stored in the user mapping (the target server connects with it;
 * non-superusers may not connect without one). It never appears in a statement text: it is
 * sent as a bind parameter into a transaction-local setting, and a DO block builds the
 * CREATE USER MAPPING from it, re-raising any error without the statement as its context.
 * Statement logging is turned off for the session around it where the role may
 * (quiet-logging.ts): the one statement that carries the password as a parameter would
 * otherwise be logged with it under `log_statement = all`. It is never in argv, a log, a
 * message or the run directory; the mapping is dropped with the server.
 *
 * Names of the server and schema are chosen by the caller; several users of this module
 * (each with its own names) may share the one extension: it is dropped only with the last
 * foreign server that uses it.
 *
 * Checked with PostgreSQL 13, 15 and 17 as the target.
 */
import type pg from 'pg';
import { errorMessage, serverErrorFields } from '../errors.js';
import { withoutStatementLogging } from '../util/quiet-logging.js';
import { SQLSTATE } from '../sqlstate.js';
import { redact } from '../util/redact.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';
import type { RemoteSourceAddress } from './remote-address.js';
import {
  OWNED_MARK,
  REMOTE_EXTENSION_SCHEMA,
  fdwError,
  readExisting,
  type ExistingObjects,
  type RemoteServerNames,
} from './remote-objects.js';

export { remoteSourceAddress, type RemoteSourceAddress } from './remote-address.js';
export { REMOTE_EXTENSION_SCHEMA, type RemoteServerNames } from './remote-objects.js';
export { removeRemoteServer, type RemoteServerRemoval } from './remove-remote-server.js';

export interface RemoteServerSetup {
  /** pgconvoy created the extension (now or on an earlier run): `removeRemoteServer` drops it. */
  extensionCreatedByPgconvoy: boolean;
  /**
   * Server settings that stayed on and may have logged the statement that carried the
   * password as a parameter (e.g. `log_statement = all`): the caller warns about them.
   */
  loggedBy: string[];
}

/** Adds `options` to an ALTER SERVER / CREATE SERVER option list, against what `current` holds. */
function optionChanges(wanted: Record<string, string>, current: Record<string, string> | undefined): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(wanted)) {
    const verb = current === undefined ? '' : key in current ? 'SET ' : 'ADD ';
    parts.push(`${verb}${quoteIdent(key)} ${quoteLiteral(value)}`);
  }
  for (const key of Object.keys(current ?? {})) if (!(key in wanted)) parts.push(`DROP ${quoteIdent(key)}`);
  return parts.join(', ');
}

function parseOptions(options: string[] | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const option of options ?? []) {
    const eq = option.indexOf('=');
    out[option.slice(0, eq)] = option.slice(eq + 1);
  }
  return out;
}

/**
 * Creates (or brings up to date: a rerun may come with a new address or password) the
 * extension, the foreign server, the user mapping of the current role and the private
 * schema. Idempotent, and safe when several pgconvoy processes call it at once (an advisory
 * lock serializes them). Call it outside a transaction.
 */
export async function createRemoteServer(
  target: pg.Client,
  names: RemoteServerNames,
  address: RemoteSourceAddress,
  purpose: string,
): Promise<RemoteServerSetup> {
  const quiet = await withoutStatementLogging(target, async () => {
    await target.query('BEGIN');
    try {
      await target.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))', [
        `pgconvoy fdw ${names.server}`,
      ]);
      const existing = await readExisting(target, names);
      const created = await ensureExtension(target, existing);
      await ensureServer(target, names, address, existing, purpose);
      await ensureUserMapping(target, names.server, address);
      await ensureSchema(target, names, existing, purpose);
      await target.query('COMMIT');
      return created;
    } catch (err) {
      await target.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
  return { extensionCreatedByPgconvoy: quiet.value, loggedBy: quiet.loggedAlways };
}

async function ensureExtension(target: pg.Client, existing: ExistingObjects): Promise<boolean> {
  if (existing.extensionSchema !== null) return existing.extensionSchema === REMOTE_EXTENSION_SCHEMA;
  if (!existing.extensionAvailable)
    throw fdwError(
      'the postgres_fdw extension is not installed on the target server',
      "install PostgreSQL's contrib modules there (on Debian they come with the postgresql-NN package; on RHEL: postgresqlNN-contrib), or copy without --via fdw",
      'FDW_UNAVAILABLE',
    );
  try {
    await target.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(REMOTE_EXTENSION_SCHEMA)}`);
    await target.query(
      `COMMENT ON SCHEMA ${quoteIdent(REMOTE_EXTENSION_SCHEMA)} IS ${quoteLiteral(`${OWNED_MARK} holds the postgres_fdw extension pgconvoy created; dropped with it`)}`,
    );
    await target.query(`CREATE EXTENSION postgres_fdw SCHEMA ${quoteIdent(REMOTE_EXTENSION_SCHEMA)}`);
  } catch (err) {
    if (serverErrorFields(err)?.code === SQLSTATE.insufficientPrivilege)
      throw fdwError(
        'the target role may not create the postgres_fdw extension',
        'a superuser of the target runs CREATE EXTENSION postgres_fdw and GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO <this role>, then run again',
        'FDW_DENIED',
        err,
      );
    throw fdwError(
      'could not create the postgres_fdw extension on the target',
      'see the server message',
      'FDW_SETUP_FAILED',
      err,
    );
  }
  return true;
}

async function ensureServer(
  target: pg.Client,
  names: RemoteServerNames,
  address: RemoteSourceAddress,
  existing: ExistingObjects,
  purpose: string,
): Promise<void> {
  const server = quoteIdent(names.server);
  const current = existing.server;
  if (current && (current.wrapper !== 'postgres_fdw' || !current.comment?.startsWith(OWNED_MARK)))
    throw fdwError(
      `the target already has a foreign server "${names.server}" that pgconvoy did not create`,
      `rename or drop it, or choose another --ledger-schema (pgconvoy names its server after it)`,
      'FDW_NAME_IN_USE',
    );
  try {
    if (!current) {
      await target.query(
        `CREATE SERVER ${server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (${optionChanges(address.serverOptions, undefined)})`,
      );
    } else {
      const changes = optionChanges(address.serverOptions, parseOptions(current.options));
      if (changes) await target.query(`ALTER SERVER ${server} OPTIONS (${changes})`);
    }
    await target.query(
      `COMMENT ON SERVER ${server} IS ${quoteLiteral(`${OWNED_MARK} the source, for ${purpose}; dropped by pgconvoy`)}`,
    );
  } catch (err) {
    if (serverErrorFields(err)?.code === SQLSTATE.insufficientPrivilege)
      throw fdwError(
        'the target role may not create a foreign server for postgres_fdw',
        'a superuser of the target runs GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO <this role>, then run again',
        'FDW_DENIED',
        err,
      );
    throw fdwError(
      `could not create the foreign server "${names.server}" on the target`,
      'see the server message',
      'FDW_SETUP_FAILED',
      err,
    );
  }
}

/**
 * The mapping is replaced every time (the password may have changed). The password goes in
 * as a parameter; see the module comment.
 */
const USER_MAPPING_SQL = `
DO $pgconvoy$
DECLARE
  srv text := pg_catalog.current_setting('pgconvoy.fdw_server');
  usr text := pg_catalog.current_setting('pgconvoy.fdw_user');
  pwd text := pg_catalog.current_setting('pgconvoy.fdw_password');
BEGIN
  EXECUTE pg_catalog.format('DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER %I', srv);
  EXECUTE pg_catalog.format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (%s)', srv,
    pg_catalog.format('user %L', usr)
      || CASE WHEN pwd = '' THEN '' ELSE pg_catalog.format(', password %L', pwd) END);
EXCEPTION WHEN OTHERS THEN
  -- re-raised so that the error's context is not the statement, which holds the password
  RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM;
END
$pgconvoy$`; // 13+

async function ensureUserMapping(
  target: pg.Client,
  server: string,
  address: RemoteSourceAddress,
): Promise<void> {
  try {
    await target.query(
      `SELECT pg_catalog.set_config('pgconvoy.fdw_server', $1, true),
              pg_catalog.set_config('pgconvoy.fdw_user', $2, true),
              pg_catalog.set_config('pgconvoy.fdw_password', $3, true)`,
      [server, address.user, address.password ?? ''],
    );
    await target.query(USER_MAPPING_SQL);
    await target.query(`SELECT pg_catalog.set_config('pgconvoy.fdw_password', '', true)`);
  } catch (err) {
    throw fdwError(
      `could not create the user mapping for the foreign server "${server}" on the target`,
      'see the server message',
      serverErrorFields(err)?.code === SQLSTATE.insufficientPrivilege ? 'FDW_DENIED' : 'FDW_SETUP_FAILED',
      err,
    );
  }
}

async function ensureSchema(
  target: pg.Client,
  names: RemoteServerNames,
  existing: ExistingObjects,
  purpose: string,
): Promise<void> {
  const schema = quoteIdent(names.schema);
  if (existing.schemaComment !== undefined && !existing.schemaComment?.startsWith(OWNED_MARK))
    throw fdwError(
      `the target already has a schema "${names.schema}" that pgconvoy did not create`,
      'rename or drop it, or choose another --ledger-schema (pgconvoy names this schema after it)',
      'FDW_NAME_IN_USE',
    );
  try {
    await target.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await target.query(
      `COMMENT ON SCHEMA ${schema} IS ${quoteLiteral(`${OWNED_MARK} foreign tables of the source (server ${names.server}), for ${purpose}; dropped by pgconvoy`)}`,
    );
  } catch (err) {
    throw fdwError(
      `could not create the schema "${names.schema}" on the target`,
      'the target role needs CREATE on the target database',
      serverErrorFields(err)?.code === SQLSTATE.insufficientPrivilege ? 'FDW_DENIED' : 'FDW_SETUP_FAILED',
      err,
    );
  }
}

export type RemoteProbeResult =
  | { status: 'reached'; sourceVersion: string }
  /** The target server could not log in to the source: network, pg_hba.conf, password. */
  | { status: 'unreachable'; message: string; sqlstate: string | undefined }
  | { status: 'error'; message: string; sqlstate: string | undefined };

/**
 * Makes the TARGET server read from the source once, for real: in a transaction that is
 * rolled back, a foreign table over the source's `pg_catalog.pg_settings` and a query of
 * its `server_version`. That connects exactly as the copy will (same address, mapping,
 * password rule for non-superusers, pg_hba.conf line, TLS).
 */
export async function probeRemoteServer(
  target: pg.Client,
  names: RemoteServerNames,
  timeoutSeconds = 60,
): Promise<RemoteProbeResult> {
  const probe = `${quoteIdent(names.schema)}.${quoteIdent('pgconvoy_probe')}`;
  await target.query('BEGIN');
  try {
    await target.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.round(timeoutSeconds)) * 1000}`);
    await target.query(
      `CREATE FOREIGN TABLE ${probe} (name text, setting text) SERVER ${quoteIdent(names.server)}
       OPTIONS (schema_name 'pg_catalog', table_name 'pg_settings')`,
    );
    const res = await target.query<{ setting: string }>(
      `SELECT setting FROM ${probe} WHERE name = 'server_version'`,
    );
    return { status: 'reached', sourceVersion: res.rows[0]?.setting ?? '?' };
  } catch (err) {
    const sqlstate = serverErrorFields(err)?.code;
    const fields = serverErrorFields(err);
    const message = redact(
      [errorMessage(err), fields?.detail]
        .filter(Boolean)
        .join(': ')
        .replace(/\s*\n\s*/g, ' '),
    ).trim();
    if (sqlstate?.startsWith('08') || sqlstate === '2F003' || sqlstate === SQLSTATE.queryCanceled)
      return {
        status: 'unreachable',
        message: sqlstate === SQLSTATE.queryCanceled ? `no answer within ${timeoutSeconds} s` : message,
        sqlstate,
      };
    return { status: 'error', message, sqlstate };
  } finally {
    await target.query('ROLLBACK').catch(() => undefined);
  }
}
