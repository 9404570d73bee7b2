/**
 * `pgconvoy clone`: parse options, run the library's clone, show progress and the summary.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { chunkedTables, defaultWorkerPrefix, runClone, type CloneOptions } from '../../clone/run-clone.js';
import { planDryRun } from '../../clone/dry-run.js';
import { formatReport, verifyDatabases } from '../../verify/index.js';
import { formatBytes, parseSize } from '../../util/format.js';
import { textTable } from '../../util/text-table.js';
import { isTTY, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { unlessInterrupted } from '../interrupted.js';
import { commandLine, PARENT_COMMAND_ENV } from '../many-databases.js';
import { CloneProgress, printCloneSummary } from '../clone-progress.js';
import { milliseconds, positiveInt } from '../parse-options.js';
import { defaultRunDir } from '../command-log.js';
import { parseExcludedColumn } from '../../copy/table-columns.js';
import { parseTablespaceMap } from '../../schema/tablespaces.js';
import type { FilterFlags } from '../../inventory/table-filter.js';
import { addFilterOptions, FILTER_HELP, filterOf, splitSchemaFlag } from '../filter-options.js';
import { COPY_METHODS, type CopyMethod } from '../../clone/via-fdw.js';

/** `--schema apply|skip`: create the schema with pg_dump, or find the tables there already. */
export const SCHEMA_MODES = ['apply', 'skip'] as const;

/** `--exclude-column`, the same for clone, start and worker. */
export const EXCLUDE_COLUMN_OPTION = [
  '--exclude-column <schema.table.column>',
  'leave a source column behind (the target lacks it, or should keep its own default); repeatable',
  (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
] as const;
import { openDashboard, type HttpFlags } from '../http-option.js';

/** `--roles`, `--role-passwords`, `--no-tablespaces`, `--tablespace-map`: the same for clone and start. */
export const ROLES_OPTION = [
  '--roles',
  'create the roles the database refers to (owners, grantees, policies) on the target first; existing ones are left as they are',
] as const;
export const ROLE_PASSWORDS_OPTION = [
  '--role-passwords',
  'with --roles: copy their passwords too (read from pg_authid: the source role must be a superuser; never printed)',
] as const;
export const NO_TABLESPACES_OPTION = [
  '--no-tablespaces',
  "put every table and index in the target database's default tablespace",
] as const;
export const TABLESPACE_MAP_OPTION = [
  '--tablespace-map <old=new>',
  "the source's tablespace OLD is NEW on the target; repeatable",
  (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
] as const;

interface CloneFlags extends ConnectionFlags, HttpFlags, FilterFlags {
  jobs?: number;
  indexJobs?: number;
  ledgerSchema: string;
  runDir?: string;
  /** apply/skip (the schema mode) or schema patterns: see cli/filter-options.ts. */
  schema?: string[];
  indexes?: 'before' | 'after';
  createDatabase?: boolean;
  existingRows: 'error' | 'truncate' | 'skip';
  pgBin?: string;
  owner: boolean;
  privileges: boolean;
  roles?: boolean;
  rolePasswords?: boolean;
  tablespaces?: boolean;
  tablespaceMap?: string[];
  retries: number;
  maintenanceWorkMem: string;
  planOnly?: boolean;
  verify?: boolean;
  queueFile?: string;
  allowGaps?: boolean;
  splitTablesLargerThan?: string;
  chunkSize?: string;
  excludeColumn?: string[];
  vacuum?: boolean;
  via?: CopyMethod;
  sourceFromTarget?: string;
  lockWaitTimeout?: number;
  dryRun?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/**
 * The command line to show for "run the same command again" (passwords are redacted on
 * output): ours, or the one that started us per database.
 */
function resumeCommand(): string {
  return process.env[PARENT_COMMAND_ENV] ?? commandLine(process.argv.slice(2));
}

function readQueueFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new PgconvoyError(`cannot read the queue file "${file}"`, {
      code: 'BAD_QUEUE_FILE',
      exitCode: EXIT.config,
      hint: 'check the path given to --queue-file',
      cause: err,
    });
  }
}

function sizeOption(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const size = parseSize(text);
  if (size === undefined || size <= 0) {
    throw new PgconvoyError(`${flag} "${text}" is not a size`, {
      code: 'BAD_SIZE',
      exitCode: EXIT.usage,
      hint: 'write it like 512MB, 10GB or 1TB',
    });
  }
  return size;
}

/** pg_dump's option, for clone and start: how long a source table lock may be waited for. */
export const LOCK_WAIT_TIMEOUT_OPTION = [
  '--lock-wait-timeout <time>',
  `how long to wait for a table lock on the source (pg_dump's, and for the publication at start) before saying who holds it: 30s, 2min, or milliseconds (default ${DEFAULTS.lockWaitTimeoutMs / 1000}s)`,
  milliseconds,
] as const;

export function buildCloneOptions(flags: CloneFlags, signal: AbortSignal | undefined): CloneOptions {
  if (flags.via === 'fdw' && flags.planOnly)
    throw new PgconvoyError('--via fdw and --plan-only do not go together', {
      code: 'BAD_ARGUMENT',
      exitCode: EXIT.usage,
      hint: '`pgconvoy worker` copies with COPY; --via fdw applies to the copy that clone runs itself: drop one of them',
    });
  const config = loadConfig(flags.config);
  const source = connectionFor('source', flags, config)!;
  const target = connectionFor('target', flags, config)!;
  const opt = (key: string) => config?.options[`clone.${key}`];
  const schemaFlag = splitSchemaFlag(flags.schema, SCHEMA_MODES);
  const runDir = flags.runDir ?? (opt('run-dir') as string | undefined) ?? defaultRunDir(target);
  return {
    source,
    target,
    jobs: flags.jobs ?? (opt('jobs') as number | undefined) ?? DEFAULTS.jobs,
    indexJobs: flags.indexJobs ?? (opt('index-jobs') as number | undefined) ?? DEFAULTS.indexJobs,
    ledgerSchema: flags.ledgerSchema,
    runDir,
    excludeColumns: new Set((flags.excludeColumn ?? []).map(parseExcludedColumn)),
    schema: schemaFlag.mode ?? (opt('schema') as 'apply' | 'skip' | undefined) ?? 'apply',
    filter: filterOf(flags, schemaFlag.patterns),
    vacuum: flags.vacuum !== false,
    lockWaitTimeoutMs: flags.lockWaitTimeout ?? DEFAULTS.lockWaitTimeoutMs,
    indexes: flags.indexes ?? (opt('indexes') as 'before' | 'after' | undefined) ?? 'after',
    createDatabase: Boolean(flags.createDatabase),
    existingRows: flags.existingRows,
    pgBin: flags.pgBin ?? (opt('pg-bin') as string | undefined),
    pathEnv: process.env.PATH ?? '',
    noOwner: !flags.owner,
    noPrivileges: !flags.privileges,
    roles: Boolean(flags.roles || flags.rolePasswords),
    rolePasswords: Boolean(flags.rolePasswords),
    noTablespaces: flags.tablespaces === false,
    tablespaceMap: parseTablespaceMap(flags.tablespaceMap ?? []),
    maxAttempts: flags.retries + 1,
    maintenanceWorkMem: flags.maintenanceWorkMem,
    planOnly: Boolean(flags.planOnly),
    snapshot: undefined,
    planChunks: chunkedTables(
      sizeOption(
        flags.splitTablesLargerThan ?? (opt('split-tables-larger-than') as string | undefined),
        DEFAULTS.splitTablesLargerThan,
        '--split-tables-larger-than',
      ),
      sizeOption(
        flags.chunkSize ?? (opt('chunk-size') as string | undefined),
        DEFAULTS.chunkSize,
        '--chunk-size',
      ),
    ),
    ...(flags.queueFile
      ? {
          queueFile: {
            text: readQueueFile(flags.queueFile),
            fileName: flags.queueFile,
            allowGaps: Boolean(flags.allowGaps),
          },
        }
      : {}),
    workerPrefix: defaultWorkerPrefix(),
    via: flags.via ?? (opt('via') as CopyMethod | undefined) ?? 'copy',
    sourceFromTarget: flags.sourceFromTarget,
    signal,
    onEvent: () => undefined,
  };
}

export function registerClone(program: Command): void {
  addFilterOptions(program.command('clone'), [...SCHEMA_MODES])
    .description(
      'copy a whole database to the target: schema, data with parallel workers, indexes, sequences, ANALYZE',
    )
    .option('--source <conninfo>', 'source server: libpq URI or key=value string')
    .option('--target <conninfo>', 'target server: libpq URI or key=value string')
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
    .addHelpText(
      'after',
      `
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
  pgconvoy clone --source ... --target ... --dry-run`,
    )
    .action(async (flags: CloneFlags) => {
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const options = buildCloneOptions(flags, controller.signal);
      if (flags.dryRun) {
        const plan = await planDryRun(options);
        // A plan that would stop at a table is not a plan: say so in the exit code too.
        if (plan.problems.length > 0) process.exitCode = EXIT.blocked;
        if (flags.json) return outJson({ ok: plan.problems.length === 0, dryRun: plan });
        out(`dry run: ${plan.source} → ${plan.target} (nothing will be touched)`);
        if (plan.pgDump) out(`  schema from ${plan.pgDump}`);
        out(`  phases: ${plan.phases.join(' → ')}`);
        out(`  ${plan.jobs.length} job(s), ~${formatBytes(plan.totalBytes)}, ${options.jobs} workers:`);
        out(
          textTable(
            ['#', 'TABLE', 'CHUNK', 'EST. SIZE', 'FORMAT'],
            plan.jobs.map((j) => [
              String(j.order),
              j.table,
              j.chunk,
              formatBytes(j.estimatedBytes),
              j.format,
            ]),
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
        return;
      }
      const progress = new CloneProgress(isTTY() && !flags.json, Boolean(flags.quiet));
      const dashboard = await openDashboard(
        flags,
        'clone',
        options.target,
        options.source,
        options.ledgerSchema,
      );
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
    });
}
