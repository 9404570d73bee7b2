/**
 * `pgconvoy start`: begin an online migration (initial copy from a slot's snapshot, then a
 * subscription that replays the source's changes). Parses options and calls online/start.ts.
 */
import { SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { Option, type Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { startOnline, type StartResult } from '../../online/start.js';
import { formatBytes, formatCount, formatDuration } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { isTTY, out, outJson } from '../output.js';
import { CloneProgress, printCloneSummary } from '../clone-progress.js';
import { unlessInterrupted } from '../interrupted.js';
import { positiveInt } from '../parse-options.js';
import { logged } from '../command-log.js';
import {
  buildCloneOptions,
  EXCLUDE_COLUMN_OPTION,
  LOCK_WAIT_TIMEOUT_OPTION,
  NO_TABLESPACES_OPTION,
  ROLE_PASSWORDS_OPTION,
  ROLES_OPTION,
  SCHEMA_MODES,
  TABLESPACE_MAP_OPTION,
} from './clone-options.js';
import { addFilterOptions, FILTER_HELP } from '../filter-options.js';

import { PgconvoyError } from '../../errors.js';
import { printRelayResult, relayInForeground } from './replicate.js';
import { openDashboard, type HttpFlags } from '../http-option.js';

type CloneFlags = Parameters<typeof buildCloneOptions>[0];

interface StartFlags extends HttpFlags {
  source?: string;
  target?: string;
  config?: string;
  jobs?: number;
  indexJobs?: number;
  ledgerSchema: string;
  runDir?: string;
  createDatabase?: boolean;
  pgBin?: string;
  owner: boolean;
  privileges: boolean;
  roles?: boolean;
  rolePasswords?: boolean;
  tablespaces?: boolean;
  tablespaceMap?: string[];
  retries: number;
  maintenanceWorkMem: string;
  splitTablesLargerThan?: string;
  chunkSize?: string;
  schema?: string[];
  excludeColumn?: string[];
  fallback?: 'offline';
  sourceFromTarget?: string;
  slotTimeout: number;
  via: 'subscription' | 'relay';
  lockWaitTimeout?: number;
  json?: boolean;
  quiet?: boolean;
}

function printResult(r: StartResult): void {
  if (r.mode === 'already-replicating') {
    out(
      `already replicating into this target (since ${r.state?.replicatingAt?.toISOString() ?? '?'}): nothing to start`,
    );
    out('  next: pgconvoy status --source … --target … to see the lag; pgconvoy cutover when ready');
    return;
  }
  if (r.clone) printCloneSummary(r.clone, 'pgconvoy start …');
  if (r.mode === 'offline') {
    out('');
    out('copied OFFLINE (--fallback offline): logical replication is not possible with this source, so the');
    out(
      'target holds the source as of the copy; writes made to the source since then are not on the target.',
    );
    return;
  }
  out('');
  const relay = r.state?.via === 'relay';
  out(
    relay
      ? `online migration started: publication and slot "${r.names.slot}", applied by pgconvoy's relay (--via relay)`
      : `online migration started: publication, slot and subscription "${r.names.slot}"`,
  );
  out(
    `  initial copy: ${formatDuration((r.copySeconds ?? 0) * 1000)} (${formatCount(r.clone?.rows)} rows, ${formatBytes(r.clone?.bytes ?? 0)}), from the snapshot at ${r.startLsn ?? '?'}`,
  );
  out(`  replicated: ${r.published.length} table(s)`);
  if (r.copiedAtCutover.length > 0) {
    out(`  copied again at cutover (not replicated): ${r.copiedAtCutover.length} table(s)`);
    for (const s of r.copiedAtCutover) out(`    - ${displayName(s.table.schema, s.table.name)}: ${s.reason}`);
  }
  out(
    relay
      ? '  the relay runs now, in the foreground (Ctrl-C stops it; pgconvoy replicate starts it again); in another shell: pgconvoy status, pgconvoy cutover'
      : '  next: pgconvoy status (lag), pgconvoy start-back (a way back after cutover), pgconvoy cutover',
  );
}

export function registerStart(program: Command): void {
  addFilterOptions(program.command('start'), [...SCHEMA_MODES])
    .description(
      'start an online migration: schema and parallel initial copy from a replication slot snapshot, then continuous replication',
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('-j, --jobs <n>', `copy workers (default ${DEFAULTS.jobs})`, positiveInt)
    .option('--index-jobs <n>', `index builds at once (default ${DEFAULTS.indexJobs})`, positiveInt)
    .addOption(
      new Option(
        '--fallback <mode>',
        'when logical replication is impossible: offline = copy offline instead',
      ).choices(['offline']),
    )
    .addOption(
      new Option(
        '--via <how>',
        'how changes reach the target: subscription (the target subscribes to the source) or relay (pgconvoy applies them; the target needs no path to the source)',
      )
        .choices(['subscription', 'relay'])
        .default('subscription'),
    )
    .option(
      '--source-from-target <conninfo>',
      'how the TARGET server reaches the source, when that differs from --source (the password of --source is used when it has none)',
    )
    .option(
      '--create-database',
      "create the target database when it does not exist, as the source's (encoding, locale, owner, settings, privileges)",
    )
    .option('--pg-bin <dir>', "directory of pg_dump/pg_restore/psql (a major >= the source's)")
    .option('--split-tables-larger-than <size>', 'cut tables bigger than this into chunks copied in parallel')
    .option('--chunk-size <size>', 'about this much per chunk')
    .option(...EXCLUDE_COLUMN_OPTION)
    .option(...LOCK_WAIT_TIMEOUT_OPTION)
    .option('--no-owner', 'do not set object owners on the target')
    .option('--no-privileges', 'do not copy GRANT/REVOKE')
    .option(...ROLES_OPTION)
    .option(...ROLE_PASSWORDS_OPTION)
    .option(...NO_TABLESPACES_OPTION)
    .option(...TABLESPACE_MAP_OPTION)
    .option(
      '--retries <n>',
      'retries of a copy job after a transient failure',
      positiveInt,
      DEFAULTS.jobRetries,
    )
    .option(
      '--maintenance-work-mem <size>',
      'maintenance_work_mem for index builds',
      DEFAULTS.maintenanceWorkMem,
    )
    .option(
      '--slot-timeout <seconds>',
      'how long creating the slot may wait for open transactions',
      positiveInt,
      DEFAULTS.slotCreateTimeoutMs / 1000,
    )
    .option(
      '--ledger-schema <name>',
      "schema on the target that keeps pgconvoy's ledger",
      DEFAULTS.ledgerSchema,
    )
    .option(
      '--run-dir <dir>',
      `where schema files and logs (logs/start-*.log, the copy's logs/run-*.log) go (default ${DEFAULTS.runDir}/<target>)`,
    )
    .option('--json', 'machine-readable summary on stdout')
    .option('-q, --quiet', 'only warnings, errors and the summary')
    .addHelpText('after', START_HELP)
    .action(startAction);
}

const START_HELP = `
Runs pgconvoy precheck first; when it blocks, start stops (exit 7) and says why, or with
--fallback offline runs the offline clone instead. Otherwise: a publication on the source for
the tables with a primary key (or replica identity); a replication slot created with an
exported snapshot; the initial copy by pgconvoy's parallel engine inside that snapshot (schema,
data, indexes per table, foreign keys); then a subscription on the target that starts exactly
at the slot (create_slot = false, copy_data = false). With --via relay there is no
subscription: pgconvoy itself streams the slot and applies the changes (the relay; see
pgconvoy replicate --help), in the foreground, right after the copy; the target then needs no
path to the source and no right to create subscriptions, only REPLICATION on the source. Tables without a primary key are copied
now and again at cutover. Running start again while replicating says so and exits 0. If a
start stops during its copy, run pgconvoy teardown, then start again.

--schema apply (default) creates the schema with pg_dump; --schema skip finds the tables on the
target already (another layout is fine: partitioned, a partitioned source table as one plain
table, other column order, extra columns with defaults; rows that fit no partition of the
target stop start before anything is created). Any other --schema value is a schema pattern. The publication holds only the
tables the filters include (and whose rows are copied).
${FILTER_HELP}

Examples:
  pgconvoy start --source postgresql://app@old/shop --target postgresql://app@new/shop --create-database
  pgconvoy start --source ... --target ... --jobs 8 --source-from-target 'host=old.internal dbname=shop user=app'
  pgconvoy start --source ... --target ... --fallback offline
  pgconvoy start --source ... --target ... --via relay      # the target cannot reach the source`;

async function startAction(flags: StartFlags): Promise<void> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const cloneFlags: CloneFlags = {
    ...flags,
    // --via here says how changes are applied; the copy from the slot's snapshot is COPY.
    via: 'copy',
    existingRows: 'error',
    indexes: 'after',
  };
  const clone = buildCloneOptions(cloneFlags, controller.signal);
  const progress = new CloneProgress(isTTY() && !flags.json, Boolean(flags.quiet));
  const dashboard = await openDashboard(flags, 'start', clone.target, clone.source, clone.ledgerSchema);
  let result: StartResult;
  try {
    result = await logged('start', clone.runDir, (log) => {
      clone.onEvent = (e) => {
        if (e.type !== 'bytes') log(JSON.stringify(e));
        progress.handle(e);
        dashboard.live?.clone(e);
      };
      const work = unlessInterrupted(
        controller.signal,
        'run pgconvoy teardown, then pgconvoy start again',
        () =>
          startOnline({
            clone,
            sourceFromTarget: flags.sourceFromTarget,
            fallback: flags.fallback ?? 'none',
            slotTimeoutMs: flags.slotTimeout * 1000,
            via: flags.via,
          }),
      );
      return dashboard.watch(work);
    });
  } catch (error) {
    await dashboard.close();
    throw error;
  } finally {
    progress.finish();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  // With --via relay the dashboard stays on while the relay runs (its lag and apply rate).
  const relay = flags.via === 'relay' && result.mode !== 'offline';
  if (!relay) await dashboard.close();
  if (flags.json && !relay)
    outJson({ ok: result.mode === 'offline' ? Boolean(result.clone?.ok) : true, ...result });
  else if (!flags.json) printResult(result);
  if (result.mode === 'offline' && !result.clone?.ok) process.exitCode = EXIT.failed;
  if (relay) {
    const via = result.state?.via;
    const relayed = await dashboard.settle(
      via === 'relay'
        ? relayInForeground(clone.source, clone.target, clone.ledgerSchema, flags, dashboard.live)
        : Promise.reject(
            new PgconvoyError('this online migration replicates through a subscription, not a relay', {
              code: 'RELAY_WRONG_MODE',
              exitCode: EXIT.usage,
              hint: 'it was started without --via relay; pgconvoy status shows its lag',
            }),
          ),
    );
    if (flags.json) outJson({ ok: true, ...result, relay: relayed });
    else printRelayResult(relayed, false);
  }
}
