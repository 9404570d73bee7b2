/**
 * A read refused because the role may not see every row: with row_security = off (set on
 * every session that reads or loads table data, see source-snapshot.ts, target-session.ts
 * and verify/session.ts) PostgreSQL raises 42501 "query would be affected by row-level
 * security policy for table …" where it would otherwise return fewer rows, and 42501
 * "permission denied for table …" on a table without SELECT. Both are turned into one
 * error that names the table and the fix. Neither is transient: retrying cannot help.
 */
import type { Side } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { rowSecurityHint, selectHint } from '../inventory/read-access.js';
import { SQLSTATE } from '../sqlstate.js';

export function isRowSecurityError(err: unknown): boolean {
  // The message is the only thing that tells the two 42501 errors apart (lc_messages may
  // translate it; then the error is reported as a privilege error, still with the table).
  return (
    serverErrorFields(err)?.code === SQLSTATE.insufficientPrivilege &&
    /row.level security/i.test(errorMessage(err))
  );
}

/**
 * A PgconvoyError for a read (or, `loading`, a COPY FROM) of `table` refused on `side`, or
 * undefined for any other error (a load refused for want of INSERT keeps its own message).
 */
export function accessDeniedError(
  err: unknown,
  side: Side,
  table: string,
  loading = false,
): PgconvoyError | undefined {
  if (err instanceof PgconvoyError || serverErrorFields(err)?.code !== SQLSTATE.insufficientPrivilege)
    return undefined;
  const server = errorMessage(err).split('\n')[0] ?? '';
  const exitCode = side === 'source' ? EXIT.source : EXIT.target;
  if (isRowSecurityError(err)) {
    const what = loading
      ? `row-level security on the ${side} refuses loading ${table}`
      : `row-level security on the ${side} would hide rows of ${table} from pgconvoy`;
    return new PgconvoyError(`${what} (${server})`, {
      code: 'ROW_SECURITY_FILTERS',
      hint: rowSecurityHint(side),
      exitCode,
      cause: err,
    });
  }
  if (loading) return undefined;
  return new PgconvoyError(`the ${side} role may not read ${table} (${server})`, {
    code: 'TABLE_NOT_READABLE',
    hint: selectHint(side),
    exitCode,
    cause: err,
  });
}

/** A refused read or load stops the whole run: every other job of that table would fail the same way. */
export function isAccessDenied(err: unknown): err is PgconvoyError {
  return (
    err instanceof PgconvoyError && (err.code === 'ROW_SECURITY_FILTERS' || err.code === 'TABLE_NOT_READABLE')
  );
}
