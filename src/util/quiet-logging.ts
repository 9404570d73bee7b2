/**
 * CREATE SUBSCRIPTION carries the source's password in its text, and a server logs
 * statement texts in several ways: every DDL statement under log_statement = 'ddl' or 'all',
 * slow ones under log_min_duration_statement, failed ones under log_min_error_statement
 * (which is 'error' by default: a subscription that cannot connect would leave the password
 * in the log). So pgconvoy turns these off for its own session around the statement, and
 * says so when the role may not (they need superuser, or a GRANT SET on 15+).
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';

/** Settings that make a server log statement texts, and their quiet values. */
const QUIET: [name: string, quiet: string][] = [
  ['log_statement', 'none'],
  ['log_min_duration_statement', '-1'],
  ['log_min_error_statement', 'panic'],
];

/** Whether a setting's value makes the server log the statement: always, or when it fails. */
function logs(name: string, value: string): 'always' | 'on failure' | undefined {
  if (name === 'log_statement') return value === 'ddl' || value === 'all' ? 'always' : undefined;
  if (name === 'log_min_duration_statement') return value !== '-1' ? 'always' : undefined;
  return ['log', 'fatal', 'panic'].includes(value) ? undefined : 'on failure';
}

export interface QuietResult<T> {
  value: T;
  /** Settings that stayed on and log the statement, e.g. `log_statement = ddl`. */
  loggedAlways: string[];
  /** Settings that stayed on and log it if it fails (`log_min_error_statement = error`). */
  loggedOnFailure: string[];
}

/**
 * Runs `statement` with statement logging off in this session (restored afterwards), and
 * says which settings could not be turned off. Call it outside a transaction: a refused
 * SET would abort it.
 */
export async function withoutStatementLogging<T>(
  client: pg.Client,
  statement: () => Promise<T>,
): Promise<QuietResult<T>> {
  const changed: string[] = [];
  const loggedAlways: string[] = [];
  const loggedOnFailure: string[] = [];
  for (const [name, quiet] of QUIET) {
    try {
      await client.query('SELECT pg_catalog.set_config($1, $2, false)', [name, quiet]);
      changed.push(name);
    } catch {
      const res = await client.query<{ v: string }>('SELECT pg_catalog.current_setting($1) AS v', [name]);
      const value = res.rows[0]?.v ?? '';
      const when = logs(name, value);
      if (when === 'always') loggedAlways.push(`${name} = ${value}`);
      if (when === 'on failure') loggedOnFailure.push(`${name} = ${value}`);
    }
  }
  try {
    return { value: await statement(), loggedAlways, loggedOnFailure };
  } finally {
    for (const name of changed) {
      // RESET in a failed transaction would fail too; the session is discarded then anyway.
      await client.query(`RESET ${name}`).catch(() => undefined);
    }
  }
}

/** The warning for settings that stayed on. */
export function exposedPasswordWarning(server: string, exposedBy: string[]): string {
  return (
    `the ${server} server may have logged the subscription's connection string, password included ` +
    `(${exposedBy.join(', ')}; turning it off for pgconvoy's session needs superuser): ` +
    `remove it from the server log, or give the ${server} server a password file instead`
  );
}
