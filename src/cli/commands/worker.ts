/**
 * `pgconvoy worker`: takes copy jobs from the plan in the target's ledger until none is left.
 * Start it on as many machines as help; each job is done once (FOR UPDATE SKIP LOCKED in the
 * job's own transaction), and a worker that dies releases its job to the others.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { withClient } from '../../connect/session.js';
import { readServerInfo } from '../../inventory/server-info.js';
import { ledgerExists } from '../../ledger/ledger-schema.js';
import { JobLedger } from '../../ledger/jobs.js';
import { runCopyPool } from '../../copy/copy-pool.js';
import { readOnlineState } from '../../replicate/online-state.js';
import { formatBytes, formatCount, formatDuration } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { err, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { positiveInt } from '../parse-options.js';
import { parseExcludedColumn } from '../../copy/table-columns.js';
import { EXCLUDE_COLUMN_OPTION } from './clone-options.js';
import { openDashboard, type HttpFlags } from '../http-option.js';

interface WorkerFlags extends ConnectionFlags, HttpFlags {
  jobs: number;
  ledgerSchema: string;
  retries: number;
  name?: string;
  excludeColumn?: string[];
  json?: boolean;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description("take copy jobs from the plan in the target's ledger (start it on any number of machines)")
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('-j, --jobs <n>', 'copy workers in this process', positiveInt, DEFAULTS.jobs)
    .option('--retries <n>', 'retries of a job after a transient failure', positiveInt, DEFAULTS.jobRetries)
    .option('--name <name>', 'worker name shown by `pgconvoy status` (default host-pid)')
    .option(...EXCLUDE_COLUMN_OPTION)
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option('--json', 'machine-readable summary')
    .addHelpText(
      'after',
      `
Workflow for several machines:
  pgconvoy clone --source S --target T --plan-only     # schema + plan into the ledger
  pgconvoy worker --source S --target T --jobs 4       # on each machine, as many as help
  pgconvoy status --target T                            # from anywhere
  pgconvoy clone --source S --target T                  # once: indexes, constraints, sequences, ANALYZE

Each worker reads its own snapshot of the source: stop writes to the source first.`,
    )
    .action(async (flags: WorkerFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config)!;
      const target = connectionFor('target', flags, config)!;
      const ledger = new JobLedger(flags.ledgerSchema);
      const replicationRole = await withClient(
        target,
        async (client) => {
          if (!(await ledgerExists(client, flags.ledgerSchema))) {
            throw new PgconvoyError(`the target has no pgconvoy plan (schema "${flags.ledgerSchema}")`, {
              code: 'NO_PLAN',
              exitCode: EXIT.target,
              hint: 'write one first: pgconvoy clone --source ... --target ... --plan-only',
            });
          }
          const online = await readOnlineState(client, flags.ledgerSchema);
          if (online?.phase === 'copying')
            throw new PgconvoyError('this target is being filled by an online start', {
              code: 'ONLINE_COPY',
              exitCode: EXIT.usage,
              hint: "an online start copies in its replication slot's snapshot, which a separate worker cannot join (its rows would come from another point in time and replication would apply changes twice or miss them); let pgconvoy start finish its copy",
            });
          return (await readServerInfo(client)).role.canSetReplicationRole;
        },
        { applicationName: 'pgconvoy worker' },
      );
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.once('SIGTERM', () => controller.abort());
      let done = 0;
      let rows = 0;
      let bytes = 0;
      let failed = 0;
      const started = Date.now();
      const dashboard = await openDashboard(flags, 'worker', target, source, flags.ledgerSchema);
      const work = runCopyPool({
        source,
        target,
        ledger,
        snapshot: undefined,
        snapshotRequired: false,
        jobs: flags.jobs,
        excludeColumns: new Set((flags.excludeColumn ?? []).map(parseExcludedColumn)),
        workerPrefix: flags.name ?? `${os.hostname()}-${process.pid}`,
        maxAttempts: flags.retries + 1,
        replicationRole,
        signal: controller.signal,
        onEvent: (e) => {
          dashboard.live?.clone(e);
          if (e.type === 'job-done') {
            done++;
            rows += e.rows;
            bytes += e.bytes;
            if (!flags.json)
              err(
                `${e.worker}: ${displayName(e.job.table.schema, e.job.table.name)} ${e.job.chunkLabel}: ${formatCount(e.rows)} rows, ${formatBytes(e.bytes)}`,
              );
          } else if (e.type === 'job-failed') {
            failed++;
            err(
              `${e.worker}: ${displayName(e.job.table.schema, e.job.table.name)} ${e.job.chunkLabel}: FAILED: ${e.error}`,
            );
          } else if (e.type === 'job-retry' || e.type === 'warning') {
            err(
              `${'worker' in e ? e.worker + ': ' : ''}${e.type === 'warning' ? e.message : `retry ${e.attempt}: ${e.error}`}`,
            );
          }
        },
      });
      await dashboard.settle(work);
      const seconds = (Date.now() - started) / 1000;
      if (flags.json) outJson({ ok: failed === 0, jobsDone: done, jobsFailed: failed, rows, bytes, seconds });
      else
        out(
          `worker ${controller.signal.aborted ? 'interrupted' : 'finished'}: ${done} job(s), ${formatCount(rows)} rows, ${formatBytes(bytes)} in ${formatDuration(seconds * 1000)}${failed ? `, ${failed} failed` : ''}${controller.signal.aborted ? '; its unfinished job is pending again' : '; no pending job left'}`,
        );
      if (controller.signal.aborted) process.exitCode = EXIT.interrupted;
      else if (failed > 0) process.exitCode = EXIT.failed;
    });
}
