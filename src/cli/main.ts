#!/usr/bin/env node
/**
 * pgconvoy's command line: parses arguments and calls the library. Exit codes are in
 * defaults.ts; errors are printed by output.ts.
 */
import { Command, CommanderError } from 'commander';
import { EXIT } from '../defaults.js';
import { reportError } from './output.js';
import { ledgerSchemaFromConfig } from './common-options.js';
import { addDatabaseOptions, interceptPerDatabase, RanPerDatabase } from './many-databases.js';
import { registerInspect } from './commands/inspect.js';
import { registerClone } from './commands/clone.js';
import { registerDemo } from './commands/demo.js';
import { registerWorker } from './commands/worker.js';
import { registerStatus } from './commands/status.js';
import { registerPrecheck } from './commands/precheck.js';
import { registerTeardown } from './commands/teardown.js';
import { registerStart } from './commands/start.js';
import { registerReplicate } from './commands/replicate.js';
import { registerCutover } from './commands/cutover.js';
import { registerStartBack } from './commands/start-back.js';
import { registerRollback } from './commands/rollback.js';
import { registerVerify } from './commands/verify.js';
import { registerServe } from './commands/serve.js';
import { addHttpOption, HTTP_COMMANDS } from './http-option.js';
import { registerSyncSchema } from './commands/sync-schema.js';
import { registerClean } from './commands/clean.js';
import { registerSwitchFirst } from './commands/switch-first.js';

const program = new Command();
program
  .name('pgconvoy')
  .description('Move a PostgreSQL database to another PostgreSQL server: fast, verified, resumable.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  // The config file's ledger-schema, where --ledger-schema is not given.
  .hook('preAction', (_program, command) => ledgerSchemaFromConfig(command))
  .addHelpText(
    'after',
    `
Connections are libpq URIs or key=value strings (--source, --target), or a --config file;
the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE,
PGPASSFILE, PGSERVICE) fills in what they leave out. Passwords are never printed.

Exit codes: 0 ok, 1 failed (resumable), 2 usage, 3 config or client tools, 4 source, 5 target,
            6 verification mismatch, 7 precheck blocked, 130 interrupted.`,
  );

registerInspect(program);
registerClone(program);
registerDemo(program);
registerWorker(program);
registerStatus(program);
registerPrecheck(program);
registerTeardown(program);
registerStart(program);
registerReplicate(program);
registerCutover(program);
registerStartBack(program);
registerRollback(program);
registerVerify(program);
registerServe(program);
registerSyncSchema(program);
registerClean(program);
registerSwitchFirst(program);

// --http: a live dashboard and /metrics while the command runs (http-option.ts).
for (const command of program.commands.filter((c) => HTTP_COMMANDS.includes(c.name())))
  addHttpOption(command);

// --database / --all-databases: one child process per database (many-databases.ts).
const PER_DATABASE = [
  'clone',
  'verify',
  'precheck',
  'start',
  'status',
  'start-back',
  'cutover',
  'rollback',
  'teardown',
  'sync-schema',
];
for (const command of program.commands.filter((c) => PER_DATABASE.includes(c.name())))
  addDatabaseOptions(command);
interceptPerDatabase(program, () => process.argv.slice(2));

const json = process.argv.includes('--json');
try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof RanPerDatabase) {
    process.exitCode = error.exitCode;
  } else if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    process.exitCode = reportError(error, json);
  }
}
