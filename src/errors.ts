/**
 * pgconvoy's error type: a message that names the thing in quotes, a stable code, a hint
 * that says what to do next, the exit code the command line should use, and the original
 * error (a node-postgres DatabaseError keeps code/detail/hint/table/constraint) as `cause`.
 */
import { EXIT, type ExitCode } from './defaults.js';

export interface PgconvoyErrorOptions {
  code: string;
  hint?: string;
  exitCode?: ExitCode;
  cause?: unknown;
  /** Extra structured facts for --json output. */
  details?: Record<string, unknown>;
}

export class PgconvoyError extends Error {
  readonly code: string;
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
