/**
 * Many databases at once (pgbelt's way of moving a whole server): `--database a --database b`
 * or `--all-databases` on clone, verify, precheck, start, status, start-back, cutover,
 * rollback and teardown. --source and --target then name the servers; each database is
 * handled by its own pgconvoy process, the same command with that database on both sides:
 * one database failing never stops the others, and each keeps its own ledger, run files,
 * slots and names, as if run alone.
 *
 * The children get their connection strings through the environment (PGCONVOY_SOURCE and
 * PGCONVOY_TARGET, which take precedence over a config file), never in argv, so no password
 * shows in `ps`. Their lines are prefixed with `[database]`: as they come for the long
 * commands (clone, start, cutover, rollback), as one block per database for the others; with
 * --json, their JSON documents are gathered into one. The exit code is 0 when every database
 * succeeded, else that of the first database (in the order given) that did not. SIGINT and
 * SIGTERM are passed on to every child, once; databases not yet started are not started.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { formatConninfoWithPassword, parseConninfo } from '../connect/conninfo.js';
import { withClient } from '../connect/session.js';
import { withDatabase as onDatabase, type ConnectionSpec } from '../connect/resolve.js';
import { DEFAULTS, EXIT, type ExitCode } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { runLimited } from '../util/pool.js';
import { registerSecret } from '../util/redact.js';
import { err, out, outJson } from './output.js';
import { connectionFor, givenConninfo, type ConnectionFlags } from './connections.js';
import { loadConfig } from './common-options.js';
import type { PgconvoyConfig } from './config-file.js';
import { positiveInt } from './parse-options.js';
import { startHttp, type HttpFlags } from './http-option.js';

/** Set for each database's process: the command line that started them all (to resume it). */
export const PARENT_COMMAND_ENV = 'PGCONVOY_PARENT_COMMAND';

/** `pgconvoy ARGS` as a shell would take it back. */
export function commandLine(args: string[]): string {
  return ['pgconvoy', ...args]
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))
    .join(' ');
}

/** Options every command that can run per database gets. */
export function addDatabaseOptions(command: Command): Command {
  return command
    .option(
      '--database <name>',
      'run for this database on both servers (repeatable: several at once, each in its own process)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--all-databases', "run for every database of the source but templates and 'postgres'")
    .option(
      '--databases-at-once <n>',
      'with --database/--all-databases: how many run at once (default: all)',
      positiveInt,
    );
}

interface ManyFlags extends ConnectionFlags, HttpFlags {
  ledgerSchema?: string;
  database?: string[];
  allDatabases?: boolean;
  databasesAtOnce?: number;
  json?: boolean;
}

/** Thrown by the preAction hook once the databases have run: the command's own action must not. */
export class RanPerDatabase extends Error {
  constructor(readonly exitCode: ExitCode) {
    super('ran per database');
  }
}

/** Options this module consumes; they are not passed on to the children. */
// --http: one dashboard in this process for every database (the children would share the port).
const OWN_OPTIONS = new Set([
  '--database',
  '--all-databases',
  '--databases-at-once',
  '--source',
  '--target',
  '--http',
  '--http-token',
]);
const TAKES_VALUE = new Set([
  '--database',
  '--databases-at-once',
  '--source',
  '--target',
  '--http',
  '--http-token',
]);

/** The command line for one database's child: ours without the options this module handles. */
export function childArgs(args: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const name = arg.startsWith('--') ? (arg.split('=')[0] ?? arg) : arg;
    if (OWN_OPTIONS.has(name)) {
      if (TAKES_VALUE.has(name) && !arg.includes('=')) i++;
      continue;
    }
    kept.push(arg);
  }
  return kept;
}

const ALL_DATABASES_SQL = `
SELECT d.datname AS name
FROM pg_catalog.pg_database d
WHERE d.datallowconn AND NOT d.datistemplate AND d.datname <> 'postgres'
ORDER BY 1`;

async function listDatabases(flags: ManyFlags, config: PgconvoyConfig | undefined): Promise<string[]> {
  const source = connectionFor('source', flags, config);
  return source ? databasesOf(source) : [];
}

/** What --all-databases means on this server: every database but templates and 'postgres'. */
export async function databasesOf(server: ConnectionSpec): Promise<string[]> {
  return withClient(
    server,
    async (client) => {
      return (await client.query<{ name: string }>(ALL_DATABASES_SQL)).rows.map((r) => r.name);
    },
    { applicationName: 'pgconvoy list databases' },
  );
}

/** The side's connection string with `database` in it, password kept (for the child's environment). */
function conninfoFor(
  flags: ManyFlags,
  config: PgconvoyConfig | undefined,
  side: 'source' | 'target',
  database: string,
): string | undefined {
  const given = givenConninfo(side, flags, config);
  if (given === undefined && side === 'source') return undefined;
  const info = given ? parseConninfo(given) : {};
  registerSecret(info.password);
  return formatConninfoWithPassword({ ...info, dbname: database });
}

/**
 * clone's --run-dir (flag or config file) would be shared by every database's process: each
 * gets a folder of its own under it. (Without one, each run dir is named after its target.)
 */
export function argsForDatabase(
  command: string,
  args: string[],
  database: string,
  configRunDir: unknown,
): string[] {
  args = args.map((arg, i) => {
    if (OTHER_ADDRESS.has(args[i - 1] ?? '')) return withDatabase(arg, database);
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : '';
    return OTHER_ADDRESS.has(name) ? `${name}=${withDatabase(arg.slice(eq + 1), database)}` : arg;
  });
  if (command !== 'clone') return args;
  const at = args.findIndex((a) => a === '--run-dir' || a.startsWith('--run-dir='));
  const folder = database.replace(/[^\w.-]/g, '_');
  if (at < 0) {
    return typeof configRunDir === 'string' ? [...args, '--run-dir', path.join(configRunDir, folder)] : args;
  }
  const arg = args[at] ?? '';
  const copy = [...args];
  if (arg.includes('=')) copy[at] = `--run-dir=${path.join(arg.slice('--run-dir='.length), folder)}`;
  else copy[at + 1] = path.join(args[at + 1] ?? '.', folder);
  return copy;
}

/** How one server reaches the other (start, start-back, cutover): the database differs per child. */
const OTHER_ADDRESS = new Set(['--source-from-target', '--target-from-source']);

function withDatabase(conninfo: string, database: string): string {
  const info = parseConninfo(conninfo);
  if (info.password !== undefined) {
    throw new PgconvoyError(
      'with --database, --source-from-target and --target-from-source must not hold a password',
      {
        code: 'PASSWORD_IN_ARGV',
        hint: "leave it out: the password of --source (or --target) is used; the address is passed to each database's process on its command line",
        exitCode: EXIT.usage,
      },
    );
  }
  return formatConninfoWithPassword({ ...info, dbname: database });
}

interface ChildResult {
  database: string;
  exitCode: number;
  json: unknown;
}

/** Commands whose progress is worth seeing as it happens; the others print a block per database. */
const LONG_RUNNING = new Set(['clone', 'start', 'cutover', 'rollback']);

/** Children still running, to pass a signal on to. */
const running = new Set<ReturnType<typeof spawn>>();

function runChild(
  command: string,
  args: string[],
  database: string,
  env: NodeJS.ProcessEnv,
  json: boolean,
): Promise<ChildResult> {
  // A process group of its own: a Ctrl-C at the terminal reaches only us, and we pass it on
  // once (a second SIGINT would make a child stop at once instead of cleanly).
  const child = spawn(process.execPath, [process.argv[1] ?? '', command, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  running.add(child);
  let stdout = '';
  const prefix = `[${database}] `;
  const held: (() => void)[] = [];
  // status --watch never ends: its lines must flow too.
  const stream = LONG_RUNNING.has(command) || args.some((a) => a === '--watch' || a.startsWith('--watch='));
  const show = (print: () => void) => (stream ? print() : held.push(print));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (json) stdout += line + '\n';
    else show(() => out(prefix + line));
  });
  createInterface({ input: child.stderr }).on('line', (line) => show(() => err(prefix + line)));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      running.delete(child);
      for (const print of held) print();
      let parsed: unknown = undefined;
      if (json) {
        try {
          parsed = JSON.parse(stdout);
        } catch {
          parsed = { ok: false, output: stdout.trim() };
        }
      }
      resolve({
        database,
        exitCode: code ?? (signal === 'SIGINT' ? EXIT.interrupted : EXIT.failed),
        json: parsed,
      });
    });
  });
}

/** Runs `command` once per database; returns the exit code for the whole run. */
export async function runPerDatabase(
  command: string,
  rawArgs: string[],
  flags: ManyFlags,
): Promise<ExitCode> {
  const config = loadConfig(flags.config);
  const named = flags.database ?? [];
  const listed = flags.allDatabases ? await listDatabases(flags, config) : [];
  const databases = [...new Set([...named, ...listed])];
  if (databases.length === 0) {
    throw new PgconvoyError('no database to run for', {
      code: 'NO_DATABASES',
      hint: "--all-databases found none on the source (templates and 'postgres' are left out); name them with --database",
      exitCode: EXIT.usage,
    });
  }
  const args = childArgs(rawArgs);
  const parentCommand = commandLine(process.argv.slice(2));
  const json = Boolean(flags.json);
  // Each child stops cleanly on the signal and leaves its database resumable; we wait for
  // them, and start no other database.
  let stopping: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = signal;
    err(`pgconvoy: interrupted (${signal}); waiting for every database to stop …`);
    for (const child of running) child.kill(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const results: ChildResult[] = [];
  const dashboard = await dashboardFor(command, flags, config, databases);
  try {
    await runLimited(databases, flags.databasesAtOnce ?? databases.length, async (database) => {
      if (stopping) {
        results.push({
          database,
          exitCode: EXIT.interrupted,
          json: { ok: false, error: 'not started: interrupted' },
        });
        return;
      }
      const env: NodeJS.ProcessEnv = { ...process.env };
      const source = conninfoFor(flags, config, 'source', database);
      const target = conninfoFor(flags, config, 'target', database);
      if (source !== undefined) env.PGCONVOY_SOURCE = source;
      if (target !== undefined) env.PGCONVOY_TARGET = target;
      env[PARENT_COMMAND_ENV] = parentCommand;
      const own = argsForDatabase(command, args, database, config?.options['clone.run-dir']);
      results.push(await runChild(command, own, database, env, json));
    });
  } finally {
    await dashboard?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  results.sort((a, b) => databases.indexOf(a.database) - databases.indexOf(b.database));
  const failed = results.filter((r) => r.exitCode !== 0);
  if (json) {
    outJson({
      ok: failed.length === 0,
      databases: results.map((r) => ({ database: r.database, exitCode: r.exitCode, result: r.json })),
    });
  } else {
    out(
      `${command}: ${results.length - failed.length} of ${results.length} database(s) ok` +
        (failed.length
          ? `; not ok: ${failed.map((r) => `${r.database} (exit ${r.exitCode})`).join(', ')}`
          : ''),
    );
  }
  return (failed[0]?.exitCode ?? EXIT.ok) as ExitCode;
}

/** --http with many databases: the ledgers of all of them, served by this process. */
function dashboardFor(
  command: string,
  flags: ManyFlags,
  config: PgconvoyConfig | undefined,
  databases: string[],
): Promise<{ close(): Promise<void> } | undefined> {
  if (flags.http === undefined) return Promise.resolve(undefined);
  const target = connectionFor('target', flags, config)!;
  const source = connectionFor('source', flags, config, false);
  return startHttp(
    flags,
    command,
    databases.map((d) => onDatabase(target, d)),
    (t) => (source ? onDatabase(source, t.database) : undefined),
    flags.ledgerSchema ?? DEFAULTS.ledgerSchema,
    true,
  );
}

/** Registers the hook that turns --database/--all-databases into one child per database. */
export function interceptPerDatabase(program: Command, rawArgs: () => string[]): void {
  program.hook('preAction', async (_program, action) => {
    const flags = action.opts<ManyFlags>();
    if (!flags.database?.length && !flags.allDatabases) return;
    const args = rawArgs();
    const at = args.indexOf(action.name());
    throw new RanPerDatabase(await runPerDatabase(action.name(), args.slice(at + 1), flags));
  });
}
