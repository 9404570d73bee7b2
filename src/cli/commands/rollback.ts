/**
 * `pgconvoy rollback`: return to the source after a cutover (or give the logins back after a
 * cutover that stopped midway). Calls cutover/run-rollback.ts.
 */
import type { Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { runRollback } from '../../cutover/run-rollback.js';
import { formatCount, formatDuration } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { err, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { defaultRunDir, logged, RUN_DIR_OPTION } from '../command-log.js';
import { positiveInt } from '../parse-options.js';

interface RollbackFlags extends ConnectionFlags {
  runDir?: string;
  sequenceMargin: string;
  timeout: number;
  force?: boolean;
  ledgerSchema: string;
  json?: boolean;
}

export function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description(
      'go back to the source: stop back-replication, sync sequences back, open the source database again',
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option(
      '--sequence-margin <n>',
      'set each source sequence this many increments past the target value',
      '0',
    )
    .option(
      '--timeout <seconds>',
      'how long back-replication may take to catch up',
      positiveInt,
      DEFAULTS.onlineTimeoutSeconds,
    )
    .option('--force', 'roll back a cutover that had no back-replication (writes on the target are lost)')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option(...RUN_DIR_OPTION)
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Stop the application's writes to the target first. After a finished cutover: waits until the
source has applied every write made on the target (back-replication, see start-back), removes
back-replication, sets the source's sequences from the target, copies the tables without a
primary key back, and opens the source database again exactly as it was before the freeze
(who may CONNECT, its read-only default; read from the target's ledger). After a cutover that
stopped midway: only opens the source database again.

Examples:
  pgconvoy rollback --source postgresql://app@old/shop --target postgresql://app@new/shop
  pgconvoy rollback --source ... --target ... --sequence-margin 1000`,
    )
    .action(async (flags: RollbackFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const margin = Number(flags.sequenceMargin);
      if (!/^\d+$/.test(flags.sequenceMargin.trim()) || !Number.isSafeInteger(margin)) {
        throw new PgconvoyError(`--sequence-margin "${flags.sequenceMargin}" is not a whole number`, {
          code: 'BAD_ARGUMENT',
          exitCode: EXIT.usage,
          hint: 'give 0 or more',
        });
      }
      const result = await logged('rollback', flags.runDir ?? defaultRunDir(target), (log) =>
        runRollback({
          source,
          target,
          ledgerSchema: flags.ledgerSchema,
          sequenceMargin: margin,
          timeoutMs: flags.timeout * 1000,
          force: Boolean(flags.force),
          onEvent: (e) => {
            log(JSON.stringify(e));
            if (flags.json) return;
            if (e.type === 'warning') err(`warning: ${e.message}`);
            else out(`  ${e.message}`);
          },
        }),
      );
      if (flags.json) return outJson({ ok: true, ...result });
      for (const r of result.removed) out(`removed ${r}`);
      if (result.sequences.length) out(`sequences set on the source: ${result.sequences.length}`);
      if (result.largeObjects.count) out(`large objects copied back: ${result.largeObjects.count}`);
      for (const t of result.copiedTables)
        out(`copied back ${displayName(t.table.schema, t.table.name)}: ${formatCount(t.rows)} rows`);
      out(
        `source database open again: writable by new sessions; CONNECT given back to ${result.reopened.length ? result.reopened.map((r) => (r === 'PUBLIC' ? r : `"${r}"`)).join(', ') : 'nobody (none had lost it)'}`,
      );
      out(`phase ${result.from} → ${result.phase} in ${formatDuration(result.seconds * 1000)}`);
      if (result.phase === 'rolled-back') out('point the application back at the source');
    });
}
