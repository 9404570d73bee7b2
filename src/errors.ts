/**
 * pgconvoy's error type: a message that names the thing in quotes, a stable code, a hint
 * that says what to do next, the exit code the command line should use, and the original
 * error (a node-postgres DatabaseError keeps code/detail/hint/table/constraint) as `cause`.
 */
import { EXIT, type ExitCode } from './defaults.js';

/**
 * Every error code pgconvoy reports (in --json output and to library callers): a closed set,
 * so a typo or a new code is seen by the compiler and documented here.
 */
export const ERROR_CODES = [
  'AUTH_FAILED',
  'AUTH_REJECTED',
  'BACK_REPLICATION_GONE',
  'BACK_REPLICATION_RUNNING',
  'BACK_SUBSCRIPTION_DENIED',
  'BACK_SUBSCRIPTION_FAILED',
  'BAD_ARGUMENT',
  'BAD_COLUMN_NAME',
  'BAD_CONFIG',
  'BAD_CONNINFO',
  'BAD_FILTER_FILE',
  'BAD_HTTP_ADDRESS',
  'BAD_PATTERN',
  'BAD_QUEUE_FILE',
  'BAD_SERVICE_FILE',
  'BAD_SIZE',
  'BAD_TABLE_NAME',
  'BENCH_CLONE_FAILED',
  'BENCH_NOT_BUILT',
  'BENCH_NO_METHODS',
  'CATCHUP_TIMEOUT',
  'CLEAN_REFUSED',
  'CONNECTION_FAILED',
  'CONNECTION_REFUSED',
  'CONNECTION_TIMEOUT',
  'COPY_INCOMPLETE',
  'DATABASE_CREATE_FAILED',
  'DATABASE_LOCALE',
  'DEMO_MISMATCH',
  'EXTENSION_MISSING',
  'FDW_DENIED',
  'FDW_INHERITED_TABLE',
  'FDW_NAME_IN_USE',
  'FDW_SETUP_FAILED',
  'FDW_UNAVAILABLE',
  'FOREIGN_KEY_VIOLATIONS',
  'FORWARD_MISSING',
  'FREEZE_FAILED',
  'HOST_NOT_FOUND',
  'HTTP_LISTEN',
  'IDENTITY_MISMATCH',
  'INTERNAL',
  'INTERRUPTED',
  'LAG_TOO_HIGH',
  'LEDGER_DAMAGED',
  'LEDGER_INVALID',
  'LEDGER_OTHER_SOURCE',
  'LOCK_TIMEOUT',
  'MOVE_BATCH_FAILED',
  'MOVE_RUNNING',
  'NOTHING_TO_ROLL_BACK',
  'NO_BACK_REPLICATION',
  'NO_CONNECTION',
  'NO_DATABASE',
  'NO_DATABASES',
  'NO_FREE_SLOT',
  'NO_ONLINE_MIGRATION',
  'NO_PARTITION_FOR_ROW',
  'PARTITION_ROOT_UNSUPPORTED',
  'NO_PG_DUMP',
  'NO_PLAN',
  'NO_PSQL',
  'NO_SLOT',
  'NO_SOCKET',
  'NO_SOURCE_TABLE',
  'NO_SWITCH_FIRST',
  'NO_TARGET_TABLE',
  'NO_TLS',
  'ONLINE_COPY',
  'ONLINE_BUSY',
  'ONLINE_PHASE',
  'PASSWORD_IN_ARGV',
  'PATTERN_MATCHES_NOTHING',
  'PHASE_CHANGED',
  'PRECHECK_BLOCKED',
  'PUBLICATION_CONFLICT',
  'PUBLICATION_DENIED',
  'PUBLICATION_FAILED',
  'RELAY_DIVERGED',
  'RELAY_NOT_RUNNING',
  'RELAY_PROTOCOL',
  'RELAY_RUNNING',
  'RELAY_SCHEMA_CHANGED',
  'RELAY_WRONG_MODE',
  'REPLICATION_BROKEN',
  'ROLES_CREATE_FAILED',
  'ROLES_MISSING',
  'ROLE_PASSWORDS_DENIED',
  'ROW_SECURITY_FILTERS',
  'SANDBOX_NO_BINARIES',
  'SCHEMA_APPLY_FAILED',
  'SCHEMA_CHANGED',
  'SCHEMA_DRIFT',
  'SCHEMA_DUMP_FAILED',
  'SCHEMA_ITEM_UNKNOWN',
  'SEQUENCE_MISSING',
  'SERVER_ERROR',
  'SERVER_NOT_READY',
  'SLOT_BUSY',
  'SLOT_EXISTS',
  'SLOT_FAILED',
  'SLOT_LOST',
  'SLOT_TIMEOUT',
  'SNAPSHOT_LOST',
  'SOURCE_LOCK_TABLE_TOO_SMALL',
  'SOURCE_NOT_LOCKABLE',
  'SOURCE_UNREACHABLE_FROM_TARGET',
  'START_INTERRUPTED',
  'SUBSCRIPTION_CONFLICT',
  'SUBSCRIPTION_DENIED',
  'SUBSCRIPTION_FAILED',
  'SUBSCRIPTION_NOT_RUNNING',
  'SUBSCRIPTION_TABLE_MISSING',
  'SWITCH_FIRST_NOT_MOVED',
  'SWITCH_FIRST_PHASE',
  'SYNC_SCHEMA_FAILED',
  'TABLES_SYNCING',
  'TABLE_NOT_READABLE',
  'TABLESPACE_MISSING',
  'TARGET_COLUMN_GENERATED',
  'TARGET_COLUMN_MISSING',
  'TARGET_COLUMN_REQUIRED',
  'TARGET_HAS_CLONE',
  'TARGET_NOT_EMPTY',
  'TARGET_UNREACHABLE_FROM_SOURCE',
  'TEARDOWN_FAILED',
  'TEARDOWN_REFUSED',
  'TLS_FAILED',
  'TOO_MANY_CONNECTIONS',
  'TRIGGERS_WOULD_FIRE',
  'UNKNOWN_SERVICE',
  'VERIFY_BAD_SNAPSHOT',
  'VERIFY_LOCK_TIMEOUT',
  'VERIFY_MISMATCH',
  'VERIFY_QUERY_FAILED',
  'WRITES_AFTER_FREEZE',
  'WRITES_NOT_FROZEN',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface PgconvoyErrorOptions {
  code: ErrorCode;
  hint?: string;
  exitCode?: ExitCode;
  cause?: unknown;
  /** Extra structured facts for --json output. */
  details?: Record<string, unknown>;
}

export class PgconvoyError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(message: string, options: PgconvoyErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgconvoyError';
    this.code = options.code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? EXIT.failed;
    this.details = options.details;
  }
}

/** The fields node-postgres puts on a server error. */
export interface PgServerErrorFields {
  code?: string;
  detail?: string;
  hint?: string;
  position?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  routine?: string;
}

export function serverErrorFields(err: unknown): PgServerErrorFields | undefined {
  if (
    err &&
    typeof err === 'object' &&
    'code' in err &&
    typeof err.code === 'string' &&
    /^[0-9A-Z]{5}$/.test(err.code)
  ) {
    return err as PgServerErrorFields;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Which server a failure came from, for errors that reach the top without a PgconvoyError around them. */
export type ServerSide = 'source' | 'target';

const SIDE = Symbol('pgconvoy.side');

/** Marks `err` as coming from the `side` server (connect/ does this for every session it opens). */
export function tagSide(err: unknown, side: ServerSide): void {
  if (err && typeof err === 'object' && !(SIDE in err)) {
    Object.defineProperty(err, SIDE, { value: side, enumerable: false });
  }
}

export function sideOf(err: unknown): ServerSide | undefined {
  if (err && typeof err === 'object' && SIDE in err) return (err as { [SIDE]: ServerSide })[SIDE];
  return undefined;
}

/**
 * A server error that no step wrapped: reported as what it is (the server's SQLSTATE,
 * message, detail and hint, and which side said it), not as a bug in pgconvoy.
 */
export function wrapServerError(err: unknown): PgconvoyError | undefined {
  const fields = serverErrorFields(err);
  if (!fields?.code) return undefined;
  const side = sideOf(err);
  const where = side ? `the ${side} server` : 'a server';
  return new PgconvoyError(`${where} reported an error: ${errorMessage(err)} (SQLSTATE ${fields.code})`, {
    code: 'SERVER_ERROR',
    hint:
      fields.hint ??
      `this is the server's own error; fix its cause on ${side ? `the ${side}` : 'that server'} and run the same command again`,
    exitCode: side === 'source' ? EXIT.source : side === 'target' ? EXIT.target : EXIT.failed,
    cause: err,
    details: {
      sqlstate: fields.code,
      ...(side ? { side } : {}),
      ...(fields.detail ? { detail: fields.detail } : {}),
      ...(fields.hint ? { serverHint: fields.hint } : {}),
    },
  });
}
