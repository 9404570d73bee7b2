/**
 * `pgconvoy clone`: parse options, run the library's clone, show progress and the summary.
 */
import { SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { Option, type Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { runClone } from '../../clone/run-clone.js';
import { planDryRun, type DryRunPlan } from '../../clone/dry-run.js';
import { formatReport, verifyDatabases } from '../../verify/index.js';
import { formatBytes } from '../../util/format.js';
import { textTable } from '../../util/text-table.js';
import { isTTY, out, outJson } from '../output.js';
import { unlessInterrupted } from '../interrupted.js';
import { commandLine, PARENT_COMMAND_ENV } from '../many-databases.js';
import { CloneProgress, printCloneSummary } from '../clone-progress.js';
import { positiveInt } from '../parse-options.js';
import { openDashboard } from '../http-option.js';
import { addFilterOptions, FILTER_HELP } from '../filter-options.js';
import { COPY_METHODS } from '../../clone/via-fdw.js';
import {
  buildCloneOptions,
  EXCLUDE_COLUMN_OPTION,
  LOCK_WAIT_TIMEOUT_OPTION,
  NO_TABLESPACES_OPTION,
  ROLE_PASSWORDS_OPTION,
  ROLES_OPTION,
  SCHEMA_MODES,
  TABLESPACE_MAP_OPTION,
  type CloneFlags,
} from './clone-options.js';

/**
 * The command line to show for "run the same command again" (passwords are redacted on
 * output): ours, or the one that started us per database.
 */
function resumeCommand(): string {
  return process.env[PARENT_COMMAND_ENV] ?? commandLine(process.argv.slice(2));
}

export function registerClone(program: Command): void {
  addFilterOptions(program.command('clone'), [...SCHEMA_MODES])
    .description(
      'copy a whole database to the target: schema, data with parallel workers, indexes, sequences, ANALYZE',
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('-j, --jobs <n>', `copy workers (default ${DEFAULTS.jobs})`, positiveInt)
    .option(
      '--index-jobs <n>',
      `index builds at once, while the copy goes on (default ${DEFAULTS.indexJobs})`,
      positiveInt,
    )
    .addOption(
      new Option('--indexes <when>', 'build indexes before or after (default) the data')
        .choices(['before', 'after'])
        .default('after'),
    )
    .option(
      '--create-database',
      "create the target database when it does not exist, as pg_dump --create would: the source's encoding, locale, owner, comment, settings and privileges",
    )
    .addOption(
      new Option(
        '--existing-rows <policy>',
        'target tables that already hold rows pgconvoy did not copy: error, truncate them, or skip them',
      )
        .choices(['error', 'truncate', 'skip'])
        .default('error'),
    )
    .option('--pg-bin <dir>', "directory of pg_dump/pg_restore/psql (a major >= the source's)")
    .option(
      '--split-tables-larger-than <size>',
      `cut tables bigger than this into chunks copied in parallel (default ${formatBytes(DEFAULTS.splitTablesLargerThan)})`,
    )
    .option('--chunk-size <size>', `about this much per chunk (default ${formatBytes(DEFAULTS.chunkSize)})`)
    .option(...EXCLUDE_COLUMN_OPTION)
    .option(
      '--queue-file <file>',
      'copy only the tables a Flexy queue file lists, cut as it says (schema.table[|column|I|low,high] or [|column|V|value])',
    )
    .option(
      '--allow-gaps',
      'accept queue-file ranges that leave some rows uncovered (they are listed, then left out)',
    )
    .option('--no-owner', 'do not set object owners on the target (roles need not exist there)')
    .option('--no-privileges', 'do not copy GRANT/REVOKE')
    .option(...ROLES_OPTION)
    .option(...ROLE_PASSWORDS_OPTION)
    .option(...NO_TABLESPACES_OPTION)
    .option(...TABLESPACE_MAP_OPTION)
    .option('--retries <n>', 'retries of a job after a transient failure', positiveInt, DEFAULTS.jobRetries)
    .option(...LOCK_WAIT_TIMEOUT_OPTION)
    .option(
      '--maintenance-work-mem <size>',
      'maintenance_work_mem for index builds',
      DEFAULTS.maintenanceWorkMem,
    )
    .option(
      '--ledger-schema <name>',
      "schema on the target that keeps pgconvoy's ledger",
      DEFAULTS.ledgerSchema,
    )
    .option(
      '--run-dir <dir>',
      `where schema files, the job status file and logs go (default ${DEFAULTS.runDir}/<target>)`,
    )
    .option(
      '--plan-only',
      'write the plan into the ledger and stop (then run `pgconvoy worker` on any machines)',
    )
    .option(
      '--verify',
      'at the end, prove the target equals the source (pgconvoy verify): exit 6 when it does not',
    )
    .option('--no-vacuum', 'ANALYZE chunked tables only, without VACUUM (they are not loaded frozen)')
    .addOption(
      new Option(
        '--via <method>',
        'copy: rows stream through pgconvoy (COPY); fdw: the target pulls them from the source itself through postgres_fdw (source tables locked against writes while it copies)',
      ).choices([...COPY_METHODS]),
    )
    .option(
      '--source-from-target <conninfo>',
      'with --via fdw: how the TARGET server reaches the source, when that differs from --source (the password of --source is used when it has none)',
    )
    .option('--dry-run', 'print the plan (phases, jobs in order, sizes) and touch nothing')
    .option('--json', 'machine-readable summary on stdout')
    .option('-q, --quiet', 'only warnings, errors and the summary')
    .addHelpText('after', CLONE_HELP)
    .action(cloneAction);
}

const CLONE_HELP = `
Run the same command again to resume: done jobs and steps are skipped (the ledger lives in
the target database, schema "${DEFAULTS.ledgerSchema}"), unfinished ones are redone, no row twice.

--schema apply (default) creates the schema with pg_dump; --schema skip finds the tables on the
target already, in any layout: partitioned (rows that fit no partition stop the clone before
any row is loaded), a partitioned source table as one plain table, other column order, extra
columns with defaults. Any other --schema value is a schema pattern, as pg_dump's.

--via fdw has the target server read the rows itself (INSERT … SELECT from postgres_fdw
foreign tables; same jobs and chunks, each job's rows and done mark in one transaction), so
they never pass through pgconvoy: for a pgconvoy far from both servers. The target must reach
the source (checked first, with a real query) and have postgres_fdw; a target role that is not
a superuser needs USAGE on it and the source's password. The source tables are locked against
writes (SHARE) until the copy ends: that keeps the many remote reads one point in time. The
foreign server, its user mapping (it holds the password) and the foreign tables are dropped
at the end.
${FILTER_HELP}

Examples:
  pgconvoy clone --source postgresql://app@old/shop --target postgresql://app@new/shop --create-database
  pgconvoy clone --source ... --target ... --create-database --roles --tablespace-map fast_ssd=pg_default
  pgconvoy clone --source ... --target ... -n sales -T 'sales.*_archive' --exclude-table-data public.audit_log
  pgconvoy clone --source ... --target ... --filter tables.filter
  pgconvoy clone --source ... --target ... --jobs 8 --index-jobs 4
  pgconvoy clone --source ... --target ... --via fdw --source-from-target 'host=old.internal dbname=shop user=app'
  pgconvoy clone --source ... --target ... --dry-run`;

async function cloneAction(flags: CloneFlags): Promise<void> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const options = buildCloneOptions(flags, controller.signal);
  if (flags.dryRun) {
    printDryRun(await planDryRun(options), options.jobs, Boolean(flags.json));
    return;
  }
  const progress = new CloneProgress(isTTY() && !flags.json, Boolean(flags.quiet));
  const dashboard = await openDashboard(flags, 'clone', options.target, options.source, options.ledgerSchema);
  options.onEvent = (e) => {
    progress.handle(e);
    dashboard.live?.clone(e);
  };
  let summary;
  try {
    const work = unlessInterrupted(
      controller.signal,
      `run the same command again to resume: ${resumeCommand()}`,
      () => runClone(options),
    );
    summary = await dashboard.settle(work);
  } finally {
    progress.finish();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  // Verification reads the source as it is now: on a source still being written it reports those writes.
  const verification =
    flags.verify && summary.ok
      ? await verifyDatabases({
          source: options.source,
          target: options.target,
          jobs: options.jobs,
          maxDiffs: DEFAULTS.verifyMaxDiffs,
          ledgerSchema: options.ledgerSchema,
          // What was copied: the same filters, without the columns left behind.
          filter: options.filter,
          excludeColumns: options.excludeColumns,
        })
      : undefined;
  if (flags.json) {
    outJson({
      ...summary,
      resumeCommand: summary.ok ? undefined : resumeCommand(),
      ...(verification ? { verification } : {}),
    });
  } else {
    printCloneSummary(summary, resumeCommand());
    if (verification) {
      out('');
      out(`verify: ${verification.ok ? 'the target equals the source' : 'DIFFERENCES FOUND'}`);
      for (const line of formatReport(verification)) out(`  ${line}`);
    }
  }
  if (!summary.ok) process.exitCode = EXIT.failed;
  else if (verification && !verification.ok) process.exitCode = EXIT.mismatch;
}

/** `--dry-run`: the plan, its notes and the problems that would stop it. */
function printDryRun(plan: DryRunPlan, jobs: number, json: boolean): void {
  // A plan that would stop at a table is not a plan: say so in the exit code too.
  if (plan.problems.length > 0) process.exitCode = EXIT.blocked;
  if (json) return outJson({ ok: plan.problems.length === 0, dryRun: plan });
  out(`dry run: ${plan.source} → ${plan.target} (nothing will be touched)`);
  if (plan.pgDump) out(`  schema from ${plan.pgDump}`);
  out(`  phases: ${plan.phases.join(' → ')}`);
  out(`  ${plan.jobs.length} job(s), ~${formatBytes(plan.totalBytes)}, ${jobs} workers:`);
  out(
    textTable(
      ['#', 'TABLE', 'CHUNK', 'EST. SIZE', 'FORMAT'],
      plan.jobs.map((j) => [String(j.order), j.table, j.chunk, formatBytes(j.estimatedBytes), j.format]),
      '  ',
    ),
  );
  for (const n of plan.notes) out(`  note: ${n}`);
  if (plan.rowSecurity.length > 0) {
    out('  row-level security on the source:');
    for (const line of plan.rowSecurity) out(`    - ${line}`);
  }
  for (const p of plan.problems) {
    out(`  problem: ${p.detail}`);
    for (const item of p.items) out(`    - ${item}`);
    out(`    hint: ${p.hint}`);
  }
}
