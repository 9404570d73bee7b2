/**
 * `pgconvoy cutover`: freeze writes on the source, let the target catch up, finish what
 * replication does not carry, verify, and end forward replication. Calls cutover/run-cutover.ts.
 */
import { Option, type Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { runCutover, type CutoverResult } from '../../cutover/run-cutover.js';
import { formatBytes, formatCount, formatDuration, parseSize } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { err, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { openDashboard, type HttpFlags } from '../http-option.js';
import { positiveInt } from '../parse-options.js';
import { defaultRunDir, logged, RUN_DIR_OPTION } from '../command-log.js';

interface CutoverFlags extends ConnectionFlags, HttpFlags {
  maxLag: string;
  sequenceMargin: string;
  timeout: number;
  freezeCheck: number;
  keepConnect: string[];
  jobs?: number;
  verify: 'full' | 'counts' | false;
  refreshMatviews: boolean;
  targetFromSource?: string;
  ledgerSchema: string;
  runDir?: string;
  json?: boolean;
}

function wholeNumber(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) {
    throw new PgconvoyError(`${flag} "${text}" is not a whole number`, {
      code: 'BAD_ARGUMENT',
      exitCode: EXIT.usage,
      hint: `give 0 or more, e.g. ${flag} 100`,
    });
  }
  return n;
}

function printResult(r: CutoverResult): void {
  for (const s of r.steps) out(`  ${s.step}: ${formatDuration(s.ms)}`);
  out('');
  out(
    `cutover done${r.resumed ? ' (resumed)' : ''}: the target has every row the source committed up to ${r.freezeLsn}`,
  );
  out(`  writes were blocked for ${formatDuration(r.writesBlockedMs)}`);
  out(
    `  source database "${r.database}" frozen: read-only for every new session; CONNECT revoked from ${r.revokedConnect.length ? r.revokedConnect.map((x) => (x === 'PUBLIC' ? x : `"${x}"`)).join(', ') : 'nobody in this run'} (kept: ${r.kept.map((k) => `"${k.name}" (${k.reason})`).join(', ') || 'none'}); ${r.sessionsEnded} session(s) ended`,
  );
  out(`  sequences set: ${r.sequences.length}; large objects copied: ${r.largeObjects.count}`);
  if (r.matviews)
    out(
      `  materialized views refreshed on the target: ${r.matviews.count}${r.matviews.concurrently ? ` (${r.matviews.concurrently} concurrently)` : ''}`,
    );
  for (const t of r.copiedTables)
    out(
      `  copied ${displayName(t.table.schema, t.table.name)}: ${formatCount(t.rows)} rows, ${formatBytes(t.bytes)}`,
    );
  if (r.verify) {
    const counted = r.verify.tables.filter((t) => t.method === 'count').length;
    out(
      `  verified: ${r.verify.counts.tablesMatching} of ${r.verify.counts.tables} tables equal${counted ? ` (${counted} by exact row count only)` : ''}`,
    );
  } else out('  not verified (--no-verify)');
  out(
    r.backReplication
      ? `  back-replication to the source is running${r.backReplication.originNone ? ' (origin = none)' : ''}: pgconvoy rollback returns to the source without losing writes`
      : '  no back-replication (start-back was not run): a rollback would lose writes made on the target',
  );
  for (const n of r.notes) out(`  note: ${n}`);
  out('');
  out(`point the application at the target: ${r.targetConninfo}`);
  out(
    'the source database stays frozen (pgconvoy rollback opens it again); when you are sure, run pgconvoy teardown to remove what is left',
  );
}

export function registerCutover(program: Command): void {
  program
    .command('cutover')
    .description(
      'switch to the target: freeze writes on the source, catch up, sync sequences, verify, end replication',
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option(
      '--max-lag <bytes>',
      'refuse when the target is further behind than this (e.g. 64MB)',
      DEFAULTS.cutoverMaxLag,
    )
    .option('--sequence-margin <n>', 'set each sequence this many increments past the source value', '0')
    .option(
      '--timeout <seconds>',
      'for catching up and for freezing writes, each',
      positiveInt,
      DEFAULTS.onlineTimeoutSeconds,
    )
    .option(
      '--freeze-check <ms>',
      'how long the source must stay quiet to count as frozen',
      positiveInt,
      DEFAULTS.freezeCheckMs,
    )
    .option(
      '--keep-connect <role>',
      'a role that keeps CONNECT on the source database, read-only (repeat for more)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('-j, --jobs <n>', `verify and ANALYZE workers (default ${DEFAULTS.jobs})`, positiveInt)
    .addOption(
      new Option(
        '--verify <what>',
        'while writes are blocked: full (checksum every row) or counts (exact row counts; the tables copied at cutover are checksummed)',
      )
        .choices(['full', 'counts'])
        .default('full'),
    )
    .option('--no-verify', 'skip verification (faster, and unproven)')
    .option('--no-refresh-matviews', "leave the target's materialized views as start filled them")
    .option('--target-from-source <conninfo>', 'how the SOURCE server reaches the target (back-replication)')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option(...RUN_DIR_OPTION)
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Refuses (exit 7) when the lag is above --max-lag, or the source's and the target's schemas
differ (DDL is not replicated: it lists each difference and the statement that aligns the
target; pgconvoy sync-schema applies the additive ones), or new tables are still copying.
Then freezes the source DATABASE (nothing else on that server): every new session there is
read-only (superusers too), CONNECT is revoked from PUBLIC and every role but pgconvoy's own,
the replication role and --keep-connect roles (what it was is recorded in the target's
ledger first), the sessions connected to it are ended, and pgconvoy proves that no row is
written any more. Then waits until the target has applied everything, sets every sequence,
copies the tables without a primary key, verifies (exit 6 on a difference), runs ANALYZE,
checks again that nothing was written on the source, drops forward replication, and starts
back-replication when pgconvoy start-back prepared it. Prints how long writes were blocked.
Needs the source database's owner or a superuser (and pg_signal_backend to end other roles'
sessions). After a failure, run cutover again: it freezes and proves again, then resumes;
or pgconvoy rollback to open the source database again.

Examples:
  pgconvoy cutover --source postgresql://app@old/shop --target postgresql://app@new/shop
  pgconvoy cutover --source ... --target ... --max-lag 16MB --sequence-margin 1000 --keep-connect monitoring`,
    )
    .action(async (flags: CutoverFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const maxLag = parseSize(flags.maxLag);
      if (maxLag === undefined) {
        throw new PgconvoyError(`--max-lag "${flags.maxLag}" is not a size`, {
          code: 'BAD_SIZE',
          exitCode: EXIT.usage,
          hint: 'write it like 16MB, 1GB or a number of bytes',
        });
      }
      const dashboard = await openDashboard(flags, 'cutover', target, source, flags.ledgerSchema);
      const result = await logged('cutover', flags.runDir ?? defaultRunDir(target), (log) =>
        dashboard.settle(
          runCutover({
            source,
            target,
            ledgerSchema: flags.ledgerSchema,
            maxLagBytes: maxLag,
            sequenceMargin: wholeNumber(flags.sequenceMargin, '--sequence-margin'),
            timeoutMs: flags.timeout * 1000,
            freezeCheckMs: flags.freezeCheck,
            keepConnect: flags.keepConnect,
            jobs: flags.jobs ?? DEFAULTS.jobs,
            refreshMatviews: flags.refreshMatviews,
            verify: flags.verify === false ? 'none' : flags.verify,
            targetFromSource: flags.targetFromSource,
            onEvent: (e) => {
              log(JSON.stringify(e));
              dashboard.live?.cutover(e);
              if (flags.json) return;
              if (e.type === 'step') {
                if (e.state === 'start') out(`${e.step} …`);
              } else if (e.type === 'warning') err(`warning: ${e.message}`);
              else out(`  ${e.message}`);
            },
          }),
        ),
      );
      if (flags.json) outJson({ ok: true, ...result });
      else printResult(result);
    });
}
