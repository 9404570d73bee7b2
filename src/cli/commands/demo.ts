/**
 * `pgconvoy demo`: the whole clone on two throwaway local servers, no setup. An older major
 * as the source, a newer one as the target, a sample database with every feature clone
 * cares about, then `clone`, a row-count check on both sides, the summary, and cleanup.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { LocalServer } from '../../sandbox/local-server.js';
import { availableMajors } from '../../sandbox/postgres-binaries.js';
import { featureDatabaseSql } from '../../sandbox/sample-database.js';
import { resolveConnection } from '../../connect/resolve.js';
import { withClient } from '../../connect/session.js';
import { readInventory } from '../../inventory/inventory.js';
import { defaultWorkerPrefix, runClone, wholeTables } from '../../clone/run-clone.js';
import { formatReport } from '../../verify/report-text.js';
import { VERIFY_DEFAULTS } from '../../verify/types.js';
import { verifyDatabases } from '../../verify/verify-databases.js';
import { formatBytes, formatDuration } from '../../util/format.js';
import { isTTY, out } from '../output.js';
import { CloneProgress, printCloneSummary } from '../clone-progress.js';
import { positiveInt } from '../parse-options.js';
import { runOnlineDemo } from './demo-online.js';

interface DemoFlags {
  rows: number;
  jobs: number;
  sourceMajor?: number;
  targetMajor?: number;
  keep?: boolean;
  online?: boolean;
}

function pickMajors(flags: DemoFlags): [number, number] {
  const majors = availableMajors().sort((a, b) => a - b);
  // pg_dump must be at least the source's major: the source is the oldest we can dump.
  const source = flags.sourceMajor ?? majors.find((m) => m <= 15) ?? majors[0];
  const target = flags.targetMajor ?? majors.at(-1);
  if (source === undefined || target === undefined) {
    throw new PgconvoyError('no PostgreSQL server binaries found for the demo', {
      code: 'SANDBOX_NO_BINARIES',
      hint: "run `npm ci` in the pgconvoy checkout (it installs PostgreSQL 13 and 17 from npm), or install Debian's postgresql-15",
      exitCode: EXIT.usage,
    });
  }
  return [source, target];
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'clone a sample database between two throwaway local servers (older → newer major), check it, clean up',
    )
    .option('--rows <n>', 'scale of the sample database (200000 ≈ a few hundred MB)', positiveInt, 200_000)
    .option('-j, --jobs <n>', 'copy workers', positiveInt, DEFAULTS.jobs)
    .option('--source-major <n>', 'major version of the source server', positiveInt)
    .option('--target-major <n>', 'major version of the target server', positiveInt)
    .option('--keep', 'leave the servers running at the end (press Ctrl-C to stop them)')
    .option(
      '--online',
      'the online path instead: an application writes while precheck, start, status, start-back, cutover and verify run',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  pgconvoy demo --rows 20000            (a small, quick run)\n  pgconvoy demo --online --rows 20000   (online migration under writes)',
    )
    .action(async (flags: DemoFlags) => {
      const [sourceMajor, targetMajor] = pickMajors(flags);
      const runDir = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-demo-'));
      out(`starting PostgreSQL ${sourceMajor} (source) and ${targetMajor} (target) on loopback …`);
      const [source, target] = await Promise.all([
        LocalServer.start({ major: sourceMajor, label: 'demo-source' }),
        LocalServer.start({ major: targetMajor, label: 'demo-target' }),
      ]);
      try {
        out(
          `  source ${source.url('shop').replace(/:[^:@/]*@/, '@')}, target ${target.url('shop').replace(/:[^:@/]*@/, '@')}`,
        );
        const t0 = Date.now();
        out(`creating the sample database "shop" (--rows ${flags.rows}) …`);
        await source.sql('CREATE DATABASE shop');
        await source.sql(featureDatabaseSql(flags.rows), 'shop');
        if (flags.online) {
          await runOnlineDemo(source, target, 'shop');
          out('');
          out('demo passed: the target has every write the application committed, and verify agrees');
          return;
        }
        const sourceSpec = resolveConnection(source.url('shop'), 'source', {});
        const targetSpec = resolveConnection(target.url('shop'), 'target', {});
        const inventory = await withClient(sourceSpec, (probe) =>
          readInventory(probe, DEFAULTS.ledgerSchema),
        );
        out(
          `  ${inventory.tables.length} tables, ${formatBytes(inventory.totalBytes)} of data, made in ${formatDuration(Date.now() - t0)}`,
        );
        const progress = new CloneProgress(isTTY(), false);
        const summary = await runClone({
          source: sourceSpec,
          target: targetSpec,
          jobs: flags.jobs,
          indexJobs: DEFAULTS.indexJobs,
          ledgerSchema: DEFAULTS.ledgerSchema,
          excludeColumns: new Set(),
          runDir,
          schema: 'apply',
          indexes: 'after',
          createDatabase: true,
          existingRows: 'error',
          pgBin: undefined,
          pathEnv: process.env.PATH ?? '',
          noOwner: false,
          noPrivileges: false,
          maxAttempts: DEFAULTS.jobRetries + 1,
          maintenanceWorkMem: '256MB',
          planOnly: false,
          snapshot: undefined,
          planChunks: wholeTables,
          workerPrefix: defaultWorkerPrefix(),
          signal: undefined,
          onEvent: (e) => progress.handle(e),
        });
        progress.finish();
        printCloneSummary(summary, 'pgconvoy demo');
        // Check: pgconvoy verify, row counts and checksums chunk by chunk, and the schema.
        out('');
        out('pgconvoy verify: row counts and checksums on both sides, and the schema …');
        const report = await verifyDatabases({
          source: sourceSpec,
          target: targetSpec,
          jobs: flags.jobs,
          maxDiffs: VERIFY_DEFAULTS.maxDiffs,
          ledgerSchema: DEFAULTS.ledgerSchema,
        });
        for (const line of formatReport(report)) out(line);
        if (!summary.ok || !report.ok) {
          throw new PgconvoyError('the demo clone did not produce an equal copy', {
            code: 'DEMO_MISMATCH',
            exitCode: EXIT.mismatch,
            hint: `the run files are in ${runDir}; please report this`,
          });
        }
        out('');
        out(
          'demo passed: every table has the same rows on both servers, and the same schema. Try it on your own: pgconvoy clone --help',
        );
        if (flags.keep) {
          out(`servers kept: source ${source.url('shop')}  target ${target.url('shop')}  (Ctrl-C to stop)`);
          await new Promise(() => undefined);
        }
      } finally {
        await Promise.all([source.destroy(), target.destroy()]);
        rmSync(runDir, { recursive: true, force: true });
      }
    });
}
