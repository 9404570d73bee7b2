/**
 * Opening a session the way every pgconvoy session is opened: named in pg_stat_activity
 * (`application_name`), with an empty search_path (every name we send is qualified),
 * with TLS as `sslmode` says, and with failures turned into one-line errors that name
 * the server (never its password) and say what to check.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError, serverErrorFields, tagSide, type ErrorCode } from '../errors.js';
import { describeConnection, type ConnectionSpec } from './resolve.js';
import { SQLSTATE } from '../sqlstate.js';

export interface OpenOptions {
  /** Shown in pg_stat_activity, e.g. "pgconvoy copy 3". */
  applicationName?: string;
  /** Leave search_path alone (only for sessions that run pg_dump's own SQL). */
  keepSearchPath?: boolean;
  /** A logical replication session (walsender), for CREATE_REPLICATION_SLOT and friends. */
  replication?: 'database';
  /** Send queries without waiting for the answers of earlier ones (the relay's apply session). */
  pipeline?: boolean;
}

/** node-postgres takes `replication` and `pipeline`; its type definitions do not say so. */
type ClientConfigWithReplication = pg.ClientConfig & { replication?: 'database'; pipeline?: boolean };

function sslOptions(spec: ConnectionSpec): ConnectionOptions {
  const read = (file: string | undefined) => (file ? readFileSync(file) : undefined);
  const ca = read(spec.sslrootcert);
  const cert = read(spec.sslcert);
  const key = read(spec.sslkey);
  const base: ConnectionOptions = {
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
  };
  switch (spec.sslmode) {
    case 'verify-full':
      return { ...base, rejectUnauthorized: true };
    case 'verify-ca':
      // the chain is checked, the host name is not: libpq's verify-ca
      return { ...base, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    default:
      // require (and prefer/allow when TLS is used): encrypted, not authenticated, as in libpq;
      // libpq's require with a root certificate file behaves as verify-ca.
      return ca
        ? { ...base, rejectUnauthorized: true, checkServerIdentity: () => undefined }
        : { ...base, rejectUnauthorized: false };
  }
}

function clientConfig(
  spec: ConnectionSpec,
  useTls: boolean,
  options: OpenOptions,
): ClientConfigWithReplication {
  return {
    host: spec.host,
    port: spec.port,
    user: spec.user,
    database: spec.database,
    ...(spec.password !== undefined ? { password: spec.password } : {}),
    application_name: options.applicationName ?? DEFAULTS.applicationName,
    connectionTimeoutMillis: (spec.connectTimeoutSeconds ?? DEFAULTS.connectTimeoutSeconds) * 1000,
    // libpq's keepalives and keepalives_idle when the connection string gives them (Node sets
    // no interval or count: the operating system's apply to pgconvoy's own sessions).
    keepAlive: spec.conninfo.keepalives !== '0',
    keepAliveInitialDelayMillis:
      (/^\d+$/.test(spec.conninfo.keepalives_idle ?? '')
        ? Number(spec.conninfo.keepalives_idle)
        : DEFAULTS.keepalivesIdleSeconds) * 1000,
    ...(spec.options ? { options: spec.options } : {}),
    ssl: useTls ? sslOptions(spec) : false,
    ...(options.replication ? { replication: options.replication } : {}),
    ...(options.pipeline ? { pipeline: true } : {}),
  };
}

/** Servers that answered "no TLS" under sslmode=prefer: do not ask them again. */
const noTlsServers = new Set<string>();

export async function openClient(spec: ConnectionSpec, options: OpenOptions = {}): Promise<pg.Client> {
  const key = `${spec.host}:${spec.port}`;
  const wantTls =
    spec.sslmode === 'require' || spec.sslmode === 'verify-ca' || spec.sslmode === 'verify-full'
      ? true
      : spec.sslmode === 'prefer' && !noTlsServers.has(key);
  try {
    return await connectOnce(spec, wantTls, options);
  } catch (err) {
    const plainRetry =
      (spec.sslmode === 'prefer' && wantTls && /does not support SSL/i.test(String(err))) ||
      (spec.sslmode === 'allow' && !wantTls && /SSL|encryption/i.test(String(err)));
    if (!plainRetry) throw connectionError(err, spec);
    if (spec.sslmode === 'prefer') noTlsServers.add(key);
    try {
      return await connectOnce(spec, spec.sslmode === 'allow', options);
    } catch (again) {
      throw connectionError(again, spec);
    }
  }
}

async function connectOnce(spec: ConnectionSpec, useTls: boolean, options: OpenOptions): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(spec, useTls, options));
  // A server that goes away emits 'error' on an idle client; the next query reports it.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  tagQueryErrors(client, spec.side);
  // A cutover makes the source database read-only for every new session
  // (cutover/write-freeze.ts); pgconvoy's own sessions must still write there (rollback,
  // back-replication, teardown), so they turn the default off for themselves.
  if (!options.replication)
    await client.query(
      `SELECT ${options.keepSearchPath ? '' : "pg_catalog.set_config('search_path', '', false), "}pg_catalog.set_config('default_transaction_read_only', 'off', false)`,
    );
  return client;
}

/**
 * Marks every error a query on this session fails with as the `side`'s, so an error no step
 * wrapped still reports which server said it (and exits with that side's code).
 */
function tagQueryErrors(client: pg.Client, side: ConnectionSpec['side']): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  const tagged = (...args: unknown[]): unknown => {
    const result = query(...args);
    // Promise form only: callback and streaming (COPY) queries report their errors their own way.
    if (result instanceof Promise) {
      return result.catch((err: unknown) => {
        tagSide(err, side);
        throw err;
      });
    }
    return result;
  };
  client.query = tagged as typeof client.query;
}

/** One line: which server, what went wrong, what to check. Never the password. */
export function connectionError(err: unknown, spec: ConnectionSpec): PgconvoyError {
  const where = `${spec.side} ${describeConnection(spec)}`;
  const exitCode = spec.side === 'source' ? EXIT.source : EXIT.target;
  const sysCode = (err as NodeJS.ErrnoException | undefined)?.code;
  const fields = serverErrorFields(err);
  const make = (what: string, hint: string, code: ErrorCode) =>
    new PgconvoyError(`cannot connect to the ${where}: ${what}`, { code, hint, exitCode, cause: err });
  const flag = `--${spec.side}`;
  switch (fields?.code ?? sysCode) {
    case 'ECONNREFUSED':
      return make(
        'connection refused',
        `is the server running and listening on ${spec.host} port ${spec.port}? check ${flag} (or PGHOST/PGPORT)`,
        'CONNECTION_REFUSED',
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return make(
        `host name "${spec.host}" could not be resolved`,
        `check the host name in ${flag} (or PGHOST)`,
        'HOST_NOT_FOUND',
      );
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return make(
        'the server did not answer',
        `check the network path and firewall to ${spec.host}:${spec.port}`,
        'CONNECTION_TIMEOUT',
      );
    case 'ENOENT':
      return make(
        `no server socket in ${spec.host}`,
        `give a host name in ${flag}, or start the local server`,
        'NO_SOCKET',
      );
    case SQLSTATE.invalidPassword:
      return make(
        `password authentication failed for user "${spec.user}"`,
        spec.passwordSource === 'none'
          ? `no password was given: put it in ${flag}, PGPASSWORD, or a password file (PGPASSFILE / ~/.pgpass, mode 0600)`
          : `check the password (it came from ${spec.passwordSource === 'passfile' ? 'the password file' : spec.passwordSource === 'PGPASSWORD' ? 'PGPASSWORD' : flag})`,
        'AUTH_FAILED',
      );
    case SQLSTATE.invalidAuthorizationSpecification:
      return make(
        fields?.detail ? `${firstLine(err)}` : 'the server rejected the login',
        `the server's pg_hba.conf has no entry for this user, database and address; ask its administrator, or check sslmode`,
        'AUTH_REJECTED',
      );
    case SQLSTATE.invalidCatalogName:
      return make(
        `database "${spec.database}" does not exist`,
        spec.side === 'target'
          ? 'create it, or pass --create-database'
          : `check the database name in ${flag}`,
        'NO_DATABASE',
      );
    case SQLSTATE.tooManyConnections:
      return make(
        'too many connections',
        'lower --jobs, or raise max_connections on that server',
        'TOO_MANY_CONNECTIONS',
      );
    case SQLSTATE.cannotConnectNow:
      return make(
        'the server is starting up or shutting down',
        'wait until it accepts connections, then run again',
        'SERVER_NOT_READY',
      );
    default:
      if (/timeout/i.test(String(err))) {
        return make(
          'the server did not answer in time',
          `check the network path to ${spec.host}:${spec.port}, or raise connect_timeout`,
          'CONNECTION_TIMEOUT',
        );
      }
      if (/does not support SSL/i.test(String(err))) {
        return make(
          'the server does not support TLS, and sslmode requires it',
          'enable ssl on the server, or use sslmode=prefer',
          'NO_TLS',
        );
      }
      if (/certificate|self[- ]signed|SSL|TLS/i.test(String(err))) {
        return make(
          firstLine(err),
          'check sslmode and sslrootcert (verify-full also checks the host name)',
          'TLS_FAILED',
        );
      }
      return make(firstLine(err), 'check the connection parameters', 'CONNECTION_FAILED');
  }
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0] ?? 'unknown error';
}
