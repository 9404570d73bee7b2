/**
 * `pgconvoy precheck`: can an online migration (logical replication) from --source to
 * --target work? A pass / warn / fail table with a hint per row; exit 7 when anything fails.
 */
import { Option, type Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { runPrecheck, type PrecheckReport } from '../../replicate/precheck.js';
import { textTable } from '../../util/text-table.js';
import { out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';

interface PrecheckFlags extends ConnectionFlags {
  json?: boolean;
  ledgerSchema: string;
  longTransactions: string;
  sourceFromTarget?: string;
  reachability: boolean;
  via: 'subscription' | 'relay';
}

const LABEL = { pass: 'pass', warn: 'WARN', fail: 'FAIL', info: 'info' } as const;

function printReport(report: PrecheckReport): void {
  out(`source  ${report.source.connection}  PostgreSQL ${report.source.version}`);
  out(`target  ${report.target.connection}  PostgreSQL ${report.target.version}`);
  out(`names   publication, slot and subscription "${report.names.slot}"`);
  out('');
  const rows: string[][] = [];
  for (const r of report.rows) {
    rows.push([LABEL[r.status], r.side, r.check, r.detail]);
    for (const item of r.items ?? []) rows.push(['', '', '', `  - ${item}`]);
    if (r.hint && r.status !== 'pass') rows.push(['', '', '', `  hint: ${r.hint}`]);
  }
  out(textTable(['STATUS', 'SIDE', 'CHECK', 'DETAIL'], rows));
  out('');
  const { pass, warn, fail, info } = report.counts;
  out(
    `${fail} failed, ${warn} warning(s), ${pass} passed, ${info} info: ` +
      (report.ok
        ? 'online migration can start (read the warnings first)'
        : 'online migration is blocked until the failures are fixed'),
  );
}

export function registerPrecheck(program: Command): void {
  program
    .command('precheck')
    .description('check that an online migration (logical replication) from source to target can work')
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option(
      '--source-from-target <conninfo>',
      'how the TARGET server reaches the source, when that differs from --source (the password of --source is used when it has none)',
    )
    .option(
      '--long-transactions <seconds>',
      'report source transactions open longer than this',
      String(DEFAULTS.longTransactionSeconds),
    )
    .addOption(
      new Option(
        '--via <how>',
        'check for start --via: subscription (the target subscribes) or relay (pgconvoy applies the changes: REPLICATION on the source and write rights on the target only)',
      )
        .choices(['subscription', 'relay'])
        .default('subscription'),
    )
    .option('--no-reachability', 'do not test the connection from the target server to the source')
    .option(
      '--ledger-schema <name>',
      "schema of pgconvoy's ledger (left out of the checks)",
      DEFAULTS.ledgerSchema,
    )
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Checks the source's wal_level, slots, senders and workers, the role's rights, tables without a
primary key (copied at cutover), long and prepared transactions, sequences, large objects,
unlogged tables, leftover pgconvoy slots; the target's workers, its right to create
subscriptions, whether the TARGET SERVER can connect to the source (a test subscription
inside a transaction that is rolled back), the source's extensions on the target, and, for
a target laid out in advance (start --schema skip), source rows that no partition of the
target's table takes.

Exit 7 when any check fails, 0 otherwise (warnings do not block).

Examples:
  pgconvoy precheck --source postgresql://app@db1/shop --target postgresql://app@db2/shop
  pgconvoy precheck --source 'host=db1 dbname=shop' --target 'host=db2 dbname=shop' --json
  pgconvoy precheck --source postgresql://app@localhost:6432/shop --target postgresql://app@db2/shop \\
                   --source-from-target 'host=db1.internal port=5432 dbname=shop user=app'`,
    )
    .action(async (flags: PrecheckFlags) => {
      const seconds = Number(flags.longTransactions);
      if (!Number.isFinite(seconds) || seconds < 0) {
        throw new PgconvoyError(
          `--long-transactions "${flags.longTransactions}" is not a number of seconds`,
          {
            code: 'BAD_ARGUMENT',
            hint: 'give a number of seconds, e.g. --long-transactions 300',
            exitCode: EXIT.usage,
          },
        );
      }
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const report = await runPrecheck(source, target, {
        ledgerSchema: flags.ledgerSchema,
        longTransactionSeconds: seconds,
        ...(flags.sourceFromTarget !== undefined ? { sourceFromTarget: flags.sourceFromTarget } : {}),
        testReachability: flags.reachability,
        via: flags.via,
      });
      if (flags.json) outJson(report);
      else printReport(report);
      process.exitCode = report.ok ? EXIT.ok : EXIT.blocked;
    });
}
