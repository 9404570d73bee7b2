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
