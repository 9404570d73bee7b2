/**
 * All terminal output goes through here: redacted, plain lines when not on a TTY,
 * JSON when asked, errors as "pgconvoy: error: ..." plus a hint line.
 */
import { EXIT, type ExitCode } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields, wrapServerError } from '../errors.js';
import { redact } from '../util/redact.js';
import { lockShortageHint } from '../inventory/lock-capacity.js';
import { SQLSTATE } from '../sqlstate.js';

export function out(text: string): void {
  process.stdout.write(redact(text) + '\n');
}

export function err(text: string): void {
  process.stderr.write(redact(text) + '\n');
}

export function outJson(value: unknown): void {
  process.stdout.write(redact(JSON.stringify(value, null, 2)) + '\n');
}

export const isTTY = (): boolean => Boolean(process.stdout.isTTY) && process.env.CI === undefined;

/** Report a failure and give the exit code for it. */
export function reportError(error: unknown, json: boolean): ExitCode {
  error = wrapServerError(error) ?? error;
  if (error instanceof PgconvoyError) {
    if (json) {
      outJson({
        ok: false,
        error: { code: error.code, message: error.message, hint: error.hint, ...(error.details ?? {}) },
      });
    }
    err(`pgconvoy: error: ${error.message}`);
    const server = serverErrorFields(error.cause);
    if (server?.detail) err(`  detail: ${server.detail}`);
    const statement = error.details?.statement;
    if (typeof statement === 'string' && statement) {
      err(`  statement: ${statement.length > 500 ? statement.slice(0, 500) + ' …' : statement}`);
    }
    if (error.hint) err(`  hint: ${error.hint}`);
    return error.exitCode;
  }
  // The lock table full, wherever it happens: the server's own hint does not say by how much or that it takes a restart.
  if (serverErrorFields(error)?.code === SQLSTATE.outOfMemory) {
    const hint = lockShortageHint();
    if (json) outJson({ ok: false, error: { code: 'OUT_OF_LOCKS', message: errorMessage(error), hint } });
    err(`pgconvoy: error: ${errorMessage(error)}`);
    err(`  hint: ${hint}`);
    return EXIT.failed;
  }
  if (json) outJson({ ok: false, error: { code: 'INTERNAL', message: errorMessage(error) } });
  err(`pgconvoy: error: ${errorMessage(error)}`);
  if (process.env.PGCONVOY_DEBUG && error instanceof Error && error.stack) err(error.stack);
  else
    err(
      '  hint: this looks like a bug in pgconvoy; run again with PGCONVOY_DEBUG=1 for a stack trace and report it',
    );
  return EXIT.failed;
}
