/**
 * `pgconvoy start-back`: before cutover, prepare back-replication (target → source) so that a
 * rollback after cutover keeps the writes made on the target. Calls cutover/run-start-back.ts.
 */
import type { Command } from 'commander';
import { DEFAULTS } from '../../defaults.js';
import { runStartBack } from '../../cutover/run-start-back.js';
import { err, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { defaultRunDir, logged, RUN_DIR_OPTION } from '../command-log.js';

interface StartBackFlags extends ConnectionFlags {
  runDir?: string;
  targetFromSource?: string;
  ledgerSchema: string;
  json?: boolean;
}

export function registerStartBack(program: Command): void {
  program
    .command('start-back')
    .description(
      'prepare back-replication (target → source), started at cutover, for a rollback without data loss',
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option(
      '--target-from-source <conninfo>',
      'how the SOURCE server reaches the target, when that differs from --target (the password of --target is used when it has none)',
    )
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option(...RUN_DIR_OPTION)
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Run it while the migration is replicating, before cutover. It creates the publication on the
target and tests that the SOURCE server can subscribe to it (a test subscription, rolled
back). The slot on the target and the subscription on the source are created by cutover,
after forward replication is dropped: then nothing from before cutover is sent back, and
every write on the target after it is. On a 16+ source the subscription uses origin = none.

Examples:
  pgconvoy start-back --source postgresql://app@old/shop --target postgresql://app@new/shop
  pgconvoy start-back --source ... --target ... --target-from-source 'host=new.internal dbname=shop user=app'`,
    )
    .action(async (flags: StartBackFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const result = await logged('start-back', flags.runDir ?? defaultRunDir(target), () =>
        runStartBack({
          source,
          target,
          ledgerSchema: flags.ledgerSchema,
          targetFromSource: flags.targetFromSource,
        }),
      );
      if (flags.json) return outJson({ ok: true, ...result });
      out(
        `back-replication prepared${result.again ? ' (again)' : ''}: publication "${result.publication}" on the target (${result.tables} table(s)); the source can subscribe to it`,
      );
      out(
        "  cutover will start it; pgconvoy rollback after cutover brings the target's writes back to the source",
      );
      for (const w of result.warnings) err(`warning: ${w}`);
    });
}
