/**
 * Making sense of pg_restore's stderr when it stops (--exit-on-error, --verbose):
 *
 *   pg_restore: creating TABLE "public.MixedCase"
 *   pg_restore: error: could not execute query: ERROR:  relation "MixedCase" already exists
 *   Command was: CREATE TABLE public."MixedCase" (
 *   ...
 *
 * Checked against pg_restore 15 and 17 (C locale: run-tool.ts sets LC_ALL=C).
 */

export interface RestoreFailure {
  /** The TOC item pg_restore was working on: `TABLE "public.MixedCase"`. */
  item: string | undefined;
  /** The server's message: `ERROR:  relation "MixedCase" already exists`. */
  serverMessage: string | undefined;
  /** The failing statement, whitespace runs folded, cut at 1000 characters. */
  statement: string | undefined;
  /** A role the statement named that the target does not have. */
  missingRole: string | undefined;
  /** pg_restore could not connect at all. */
  connection: boolean;
}

const MAX_STATEMENT = 1000;

export function parseRestoreFailure(stderr: string): RestoreFailure {
  const lines = stderr.split('\n');
  let item: string | undefined;
  let serverMessage: string | undefined;
  let statementLines: string[] | undefined;
  let connection = false;
  for (const line of lines) {
    const creating = /^pg_restore: (?:creating|processing item \d+) (.*)$/.exec(line);
    if (creating && serverMessage === undefined) {
      item = creating[1];
      continue;
    }
    const failed = /^pg_restore: error: could not execute query: (.*)$/.exec(line);
    if (failed && serverMessage === undefined) {
      serverMessage = failed[1];
      continue;
    }
    if (/^pg_restore: error: connection to server/.test(line) && serverMessage === undefined) {
      connection = true;
      serverMessage = line.replace(/^pg_restore: error: /, '');
      continue;
    }
    if (line.startsWith('Command was: ') && statementLines === undefined) {
      statementLines = [line.slice('Command was: '.length)];
      continue;
    }
    if (statementLines !== undefined && !line.startsWith('pg_restore: ')) statementLines.push(line);
    else if (statementLines !== undefined) break;
  }
  if (serverMessage === undefined) {
    const anyError = lines.find((l) => /^pg_restore: error: /.test(l));
    serverMessage = anyError?.replace(/^pg_restore: error: /, '');
  }
  // DETAIL/HINT lines of the server follow the message before "Command was:".
  let statement = statementLines?.join('\n').replace(/\s+/g, ' ').trim();
  if (statement !== undefined && statement.length > MAX_STATEMENT)
    statement = statement.slice(0, MAX_STATEMENT) + ' …';
  const role = /role "((?:[^"]|"")*)" does not exist/.exec(serverMessage ?? '');
  return {
    item,
    serverMessage: serverMessage?.replace(/ {2,}/g, ' '),
    statement: statement || undefined,
    missingRole: role?.[1]?.replace(/""/g, '"'),
    connection,
  };
}
