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
import { parseConninfo, type Conninfo } from '../connect/conninfo.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { withoutStatementLogging } from '../util/quiet-logging.js';
import { subscriptionConninfo } from '../replicate/subscription.js';
import { SQLSTATE } from '../sqlstate.js';
import { redact, registerSecret } from '../util/redact.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';

/** The schema pgconvoy creates the postgres_fdw extension in (and so knows it created it). */
export const REMOTE_EXTENSION_SCHEMA = 'pgconvoy_postgres_fdw';

/** Comments on the server and the schema: what they are, and that pgconvoy drops them. */
const OWNED_MARK = 'pgconvoy:';

export interface RemoteServerNames {
  /** The foreign server on the target that points at the source, e.g. `pgconvoy_source`. */
  server: string;
  /** pgconvoy's private schema for the foreign tables, e.g. `pgconvoy_source_tables`. */
  schema: string;
}

/** Where the TARGET server finds the source: libpq options for the server, login for the mapping. */
export interface RemoteSourceAddress {
  serverOptions: Record<string, string>;
  user: string;
  password: string | undefined;
}

/** libpq keywords the foreign server takes from the address (the rest are pgconvoy-local). */
const SERVER_KEYWORDS = [
  'host',
  'hostaddr',
  'port',
  'dbname',
  'sslmode',
  'sslrootcert',
  'connect_timeout',
  'keepalives',
  'keepalives_idle',
  'target_session_attrs',
  'gssencmode',
  'channel_binding',
] as const;

/**
 * Settings of every remote session: no timeout cuts a long read short, and row-level
 * security makes a read fail rather than return fewer rows (prepareSourceSession's settings).
 */
const REMOTE_SESSION_OPTIONS =
  '-c row_security=off -c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0';

/**
 * The address of the source as the target server sees it: `override` (the
 * `--source-from-target` conninfo) when given, else the source's own host, port, database,
 * user and sslmode; the password of `source` when the override has none (as the online
 * subscription does: replicate/subscription.ts).
 */
export function remoteSourceAddress(source: ConnectionSpec, override?: string): RemoteSourceAddress {
  const info: Conninfo = parseConninfo(subscriptionConninfo(source, override));
  registerSecret(info.password);
  const serverOptions: Record<string, string> = {};
  for (const key of SERVER_KEYWORDS) {
    const value = info[key];
    if (value !== undefined && value !== '') serverOptions[key] = value;
  }
  serverOptions.application_name = 'pgconvoy fdw';
  serverOptions.options = [info.options, REMOTE_SESSION_OPTIONS].filter(Boolean).join(' ');
  return { serverOptions, user: info.user ?? source.user, password: info.password };
}

export interface RemoteServerSetup {
  /** pgconvoy created the extension (now or on an earlier run): `removeRemoteServer` drops it. */
  extensionCreatedByPgconvoy: boolean;
  /**
   * Server settings that stayed on and may have logged the statement that carried the
   * password as a parameter (e.g. `log_statement = all`): the caller warns about them.
   */
  loggedBy: string[];
}

function fdwError(
  message: string,
  hint: string,
  code: 'FDW_UNAVAILABLE' | 'FDW_DENIED' | 'FDW_NAME_IN_USE' | 'FDW_SETUP_FAILED',
  cause?: unknown,
): PgconvoyError {
  const fields = serverErrorFields(cause);
  const server = cause === undefined ? '' : `: ${redact(errorMessage(cause))}`;
  return new PgconvoyError(`${message}${server}${fields?.code ? ` (SQLSTATE ${fields.code})` : ''}`, {
    code,
    hint,
    exitCode: EXIT.target,
    ...(cause !== undefined ? { cause } : {}),
    ...(fields?.detail ? { details: { detail: redact(fields.detail) } } : {}),
  });
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

interface ExistingObjects {
  extensionSchema: string | null;
  extensionAvailable: boolean;
  server: { wrapper: string; options: string[] | null; comment: string | null } | null;
  schemaComment: string | null | undefined;
}

async function readExisting(target: pg.Client, names: RemoteServerNames): Promise<ExistingObjects> {
  const res = await target.query<{
    extension_schema: string | null;
    extension_available: boolean;
    server_wrapper: string | null;
    server_options: string[] | null;
    server_comment: string | null;
    schema_exists: boolean;
    schema_comment: string | null;
  }>(
    `SELECT (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'postgres_fdw') AS extension_schema,
            EXISTS (SELECT FROM pg_catalog.pg_available_extensions
                     WHERE name = 'postgres_fdw') AS extension_available,
            w.fdwname AS server_wrapper, s.srvoptions AS server_options,
            pg_catalog.obj_description(s.oid, 'pg_foreign_server') AS server_comment,
            n.oid IS NOT NULL AS schema_exists,
            pg_catalog.obj_description(n.oid, 'pg_namespace') AS schema_comment
       FROM (SELECT) AS one
       LEFT JOIN pg_catalog.pg_foreign_server s ON s.srvname = $1
       LEFT JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $2`, // 13+
    [names.server, names.schema],
  );
  const row = res.rows[0]!;
  return {
    extensionSchema: row.extension_schema,
    extensionAvailable: row.extension_available,
    server: row.server_wrapper
      ? { wrapper: row.server_wrapper, options: row.server_options, comment: row.server_comment }
      : null,
    schemaComment: row.schema_exists ? row.schema_comment : undefined,
  };
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

/** What `removeRemoteServer` did with the extension. */
export interface RemoteServerRemoval {
  extension: 'dropped' | 'not ours' | 'absent' | 'still used';
  /** Foreign servers that still use the extension (so it was kept). */
  otherServers: string[];
}

/**
 * Drops the private schema with its foreign tables, the user mapping, the server, and the
 * extension if pgconvoy created it and no other foreign server uses it. Idempotent: what is
 * already gone is skipped. Refuses to drop a server or schema pgconvoy did not create.
 */
export async function removeRemoteServer(
  target: pg.Client,
  names: RemoteServerNames,
): Promise<RemoteServerRemoval> {
  await target.query('BEGIN');
  try {
    await target.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))', [
      `pgconvoy fdw ${names.server}`,
    ]);
    const existing = await readExisting(target, names);
    if (existing.schemaComment !== undefined) {
      if (!existing.schemaComment?.startsWith(OWNED_MARK))
        throw fdwError(
          `the schema "${names.schema}" on the target was not created by pgconvoy; it is left alone`,
          'drop it yourself if it is not wanted',
          'FDW_NAME_IN_USE',
        );
      await target.query(`DROP SCHEMA ${quoteIdent(names.schema)} CASCADE`);
    }
    if (existing.server) {
      if (!existing.server.comment?.startsWith(OWNED_MARK))
        throw fdwError(
          `the foreign server "${names.server}" on the target was not created by pgconvoy; it is left alone`,
          'drop it yourself if it is not wanted',
          'FDW_NAME_IN_USE',
        );
      // CASCADE: the user mappings of every role (another role may have run pgconvoy too).
      await target.query(`DROP SERVER ${quoteIdent(names.server)} CASCADE`);
    }
    const removal = await dropOwnExtension(target, existing.extensionSchema);
    await target.query('COMMIT');
    return removal;
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    if (err instanceof PgconvoyError) throw err;
    throw fdwError(
      `could not remove the foreign server "${names.server}" from the target`,
      'see the server message',
      'FDW_SETUP_FAILED',
      err,
    );
  }
}

async function dropOwnExtension(
  target: pg.Client,
  extensionSchema: string | null,
): Promise<RemoteServerRemoval> {
  if (extensionSchema === null) return { extension: 'absent', otherServers: [] };
  if (extensionSchema !== REMOTE_EXTENSION_SCHEMA) return { extension: 'not ours', otherServers: [] };
  const others = await target.query<{ srvname: string }>(
    `SELECT s.srvname FROM pg_catalog.pg_foreign_server s
       JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
      WHERE w.fdwname = 'postgres_fdw' ORDER BY 1`,
  );
  if (others.rows.length > 0)
    return { extension: 'still used', otherServers: others.rows.map((r) => r.srvname) };
  await target.query('DROP EXTENSION postgres_fdw');
  await target.query(`DROP SCHEMA ${quoteIdent(REMOTE_EXTENSION_SCHEMA)}`);
  return { extension: 'dropped', otherServers: [] };
}
