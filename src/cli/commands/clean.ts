/**
 * `pgconvoy clean`: removes pgconvoy's ledger schema from the target after a finished clone or
 * migration (online/clean-ledger.ts says when it refuses).
 */
import type { Command } from 'commander';
import { withClient } from '../../connect/session.js';
import { DEFAULTS } from '../../defaults.js';
import { cleanLedger } from '../../online/clean-ledger.js';
import { quoteIdent } from '../../util/sql.js';
import { loadConfig } from '../common-options.js';
import { connectionFor, type ConnectionFlags, TARGET_OPTION } from '../connections.js';
import { out, outJson } from '../output.js';

interface CleanFlags extends ConnectionFlags {
  ledgerSchema: string;
  json?: boolean;
}

export function registerClean(program: Command): void {
  program
    .command('clean')
    .description("remove pgconvoy's ledger schema from the target once the clone or migration is finished")
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option(
      '--ledger-schema <name>',
      "schema on the target that keeps pgconvoy's ledger",
      DEFAULTS.ledgerSchema,
    )
    .option('--json', 'machine-readable result')
    .addHelpText(
      'after',
      `
The ledger makes a clone resumable and lets status, cutover and rollback steer an online
migration. clean drops it (DROP SCHEMA ... CASCADE) only when the clone's jobs are all done,
or the online migration is done or rolled back and teardown has removed its replication
objects from the target; otherwise it refuses (exit 7) and says what to run first.
Running it again is harmless.

Examples:
  pgconvoy clean --target postgresql://app@new-db/shop`,
    )
    .action(async (flags: CleanFlags) => {
      const target = connectionFor('target', flags, loadConfig(flags.config));
      if (!target) return;
      return withClient(
        target,
        async (client) => {
          const result = await cleanLedger(client, flags.ledgerSchema);
          if (flags.json) return outJson(result);
          out(
            result.removed
              ? `removed the ledger schema ${quoteIdent(result.schema)}: this clone can no longer be resumed`
              : `no ledger schema ${quoteIdent(result.schema)} on the target: nothing to remove`,
          );
        },
        { applicationName: 'pgconvoy clean' },
      );
    });
}
