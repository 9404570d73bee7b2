/**
 * The log an online command (start, start-back, cutover, rollback, teardown) leaves in the run
 * directory, as clone does: the command line, each step and event with its time, the result
 * or the error with its code and hint. Passwords are blanked (util/redact.ts); the file is
 * private. A DBA reads it after the fact to see what was done and how long each step took.
 */
import path from 'node:path';
import { DEFAULTS } from '../defaults.js';
import { PgconvoyError, errorMessage } from '../errors.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { RunLog } from '../util/run-log.js';
import { commandLine } from './many-databases.js';

/** The run directory when --run-dir is not given: one per target database, under .pgconvoy/. */
export function defaultRunDir(target: ConnectionSpec): string {
  const part = (s: string) => s.replace(/[^\w.-]/g, '_');
  return path.join(DEFAULTS.runDir, `${part(target.host)}_${target.port}_${part(target.database)}`);
}

export const RUN_DIR_OPTION = [
  '--run-dir <dir>',
  `where this command's log goes, in logs/ (default ${DEFAULTS.runDir}/<target>)`,
] as const;

/**
 * Runs `work`, logging its start, what it reports through `log`, and how it ended.
 *
 * @example
 *   await logged('cutover', runDir, (log) => runCutover({ ..., onEvent: (e) => log(JSON.stringify(e)) }));
 */
export async function logged<T>(
  command: string,
  runDir: string,
  work: (log: (line: string) => void) => Promise<T>,
): Promise<T> {
  const file = new RunLog(runDir, command);
  const started = Date.now();
  file.line(`${commandLine(process.argv.slice(2))} (pid ${process.pid})`);
  try {
    const result = await work((line) => file.line(line));
    file.line(`done in ${Date.now() - started} ms: ${JSON.stringify(result)}`);
    return result;
  } catch (err) {
    const fields =
      err instanceof PgconvoyError ? ` [${err.code}]${err.hint ? ` hint: ${err.hint}` : ''}` : '';
    file.line(`failed after ${Date.now() - started} ms: ${errorMessage(err)}${fields}`);
    throw err;
  }
}
