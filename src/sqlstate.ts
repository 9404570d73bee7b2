/**
 * Server error codes (SQLSTATE) pgconvoy acts on, by name, and the one place that decides
 * which failures are worth retrying. Codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
 *
 * Transient (retried with backoff and jitter): connection failures (class 08, and socket
 * errors), serialization failure, deadlock, lock not available, admin/crash shutdown,
 * cannot connect now, too many connections, configuration limit exceeded. Everything else
 * (permission denied, syntax, missing objects, bad data, ...) fails fast with its hint.
 */
import { PgconvoyError, serverErrorFields } from './errors.js';

export const SQLSTATE = {
  featureNotSupported: '0A000',
  invalidParameterValue: '22023',
  foreignKeyViolation: '23503',
  checkViolation: '23514',
  invalidAuthorizationSpecification: '28000',
  invalidPassword: '28P01',
  /** postgres_fdw: a non-superuser's server connection must use a password. */
  prohibitedSqlStatementAttempted: '2F003',
  invalidCatalogName: '3D000',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  syntaxError: '42601',
  insufficientPrivilege: '42501',
  undefinedTable: '42P01',
  undefinedObject: '42704',
  outOfMemory: '53200',
  tooManyConnections: '53300',
  configurationLimitExceeded: '53400',
  objectInUse: '55006',
  lockNotAvailable: '55P03',
  queryCanceled: '57014',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
} as const;

export type NamedSqlstate = (typeof SQLSTATE)[keyof typeof SQLSTATE];

/** Class 08: the connection itself failed (08000, 08003, 08006, 08001, 08004, 08P01, ...). */
const CONNECTION_EXCEPTION_CLASS = '08';

/** The server went away or is not there yet: the same work on a new session may succeed. */
const LOST_SERVER: ReadonlySet<string> = new Set([
  SQLSTATE.adminShutdown,
  SQLSTATE.crashShutdown,
  SQLSTATE.cannotConnectNow,
]);

/** Worth another attempt: the server is busy or lost, or a concurrent transaction got in the way. */
const TRANSIENT: ReadonlySet<string> = new Set([
  ...LOST_SERVER,
  SQLSTATE.serializationFailure,
  SQLSTATE.deadlockDetected,
  SQLSTATE.lockNotAvailable,
  SQLSTATE.tooManyConnections,
  SQLSTATE.configurationLimitExceeded,
]);

const TRANSIENT_SOCKET: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTCONN',
]);

/** node-postgres' and libpq's (psql's) words for a session that went away; they carry no SQLSTATE. */
const LOST_CONNECTION_TEXT =
  /Connection terminated|connection (is )?(closed|lost)|terminating connection|Client has encountered a connection error|not queryable|server closed the connection|connection to server .* failed|could not connect|the database system is (starting up|shutting down)|SSL SYSCALL|Connection refused/i;

/**
 * The SQLSTATE of a failure: a server error's own code, or the one psql printed (kept by
 * apply-sql.ts in `details.sqlstate`), or of the error's cause.
 */
export function sqlstateOf(err: unknown): string | undefined {
  const code = serverErrorFields(err)?.code;
  if (code) return code;
  if (err instanceof PgconvoyError) {
    const fromPsql = err.details?.sqlstate;
    if (typeof fromPsql === 'string') return fromPsql;
  }
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  return cause && cause !== err ? sqlstateOf(cause) : undefined;
}

export function isConnectionException(code: string | undefined): boolean {
  return code !== undefined && code.startsWith(CONNECTION_EXCEPTION_CLASS);
}

/** Whether retrying the same work (after reconnecting) may succeed. */
export function isTransient(err: unknown): boolean {
  const fields = serverErrorFields(err);
  if (fields?.code) return isConnectionException(fields.code) || TRANSIENT.has(fields.code);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && TRANSIENT_SOCKET.has(code)) return true;
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (cause && cause !== err && isTransient(cause)) return true;
  return LOST_CONNECTION_TEXT.test(String(err instanceof Error ? err.message : err));
}

/**
 * Whether a failure only means the session was lost (server restart, network), not that the
 * work was wrong: for work that is simply run again, such as psql scripts (whose output is
 * all we have, in `details.psqlOutput`).
 */
export function isLostConnection(err: unknown): boolean {
  const code = sqlstateOf(err);
  if (code !== undefined && (isConnectionException(code) || LOST_SERVER.has(code))) return true;
  const psqlOutput = err instanceof PgconvoyError ? err.details?.psqlOutput : undefined;
  const output =
    typeof psqlOutput === 'string' ? psqlOutput : err instanceof Error ? err.message : String(err);
  return LOST_CONNECTION_TEXT.test(output);
}
