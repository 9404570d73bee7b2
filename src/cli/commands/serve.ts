/**
 * `pgconvoy serve`: the dashboard and /metrics from the target's ledgers alone, for one
 * database or many; runs anywhere, before, during and after the work, and after a crash.
 * Read-only on both servers. Stops on SIGINT/SIGTERM.
 */
import type { Command } from 'commander';
import { withDatabase } from '../../connect/resolve.js';
import { DEFAULTS } from '../../defaults.js';
import { addHttpOption, startHttp, type HttpFlags } from '../http-option.js';
import { connectionFor, type ConnectionFlags, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { databasesOf } from '../many-databases.js';
import { err } from '../output.js';

/** serve's address when --http is not given. */
export const SERVE_DEFAULT_HTTP = '127.0.0.1:8432';

interface ServeFlags extends ConnectionFlags, HttpFlags {
  ledgerSchema: string;
  database?: string[];
  allDatabases?: boolean;
}

export function registerServe(program: Command): void {
  const command = program
    .command('serve')
    .description(
      'serve the live dashboard and Prometheus metrics of migrations, from the target ledgers alone',
    )
    .option(...TARGET_OPTION)
    .option(
      '--source <conninfo>',
      'source server (optional): adds replication lag and the WAL the slot keeps to an online migration',
    )
    .option('--config <file>', 'read connections and options from a config file')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option(
      '--database <name>',
      'watch this database on both servers (repeatable: one page lists them all)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      '--all-databases',
      "watch every database (of the source when given, else of the target) but templates and 'postgres'",
    );
  addHttpOption(command).addHelpText(
    'after',
    `
--http defaults to ${SERVE_DEFAULT_HTTP}. Nothing is changed anywhere: sessions are read-only.

Examples:
  pgconvoy serve --target postgresql://app@new/shop
  pgconvoy serve --target postgresql://app@new --source postgresql://app@old --all-databases
  pgconvoy serve --target ... --http 0.0.0.0:8432      (a token is generated and printed)`,
  );
  command.action(async (flags: ServeFlags) => {
    const config = loadConfig(flags.config);
    const target = connectionFor('target', flags, config)!;
    const source = connectionFor('source', flags, config, false);
    const named = flags.database ?? [];
    const listed = flags.allDatabases ? await databasesOf(source ?? target) : [];
    const databases = [...new Set([...named, ...listed])];
    const targets = databases.length > 0 ? databases.map((d) => withDatabase(target, d)) : [target];
    const dashboard = await startHttp(
      { ...flags, http: flags.http ?? SERVE_DEFAULT_HTTP },
      'serve',
      targets,
      (t) => (source ? (databases.length > 0 ? withDatabase(source, t.database) : source) : undefined),
      flags.ledgerSchema,
      true,
    );
    err(`serving ${targets.length} database(s); Ctrl-C stops`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await dashboard?.close();
  });
}
