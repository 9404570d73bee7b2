/**
 * `node dist/bench/profile-many.js N [--log] [--cpu-prof DIR] [-- extra clone flags]`: one
 * pgconvoy clone of the --many-tables layout, with the servers' statement logs kept (--log:
 * log_min_duration_statement = 0) and node's CPU profile of pgconvoy (--cpu-prof), to see
 * where the time of each table goes. Prints the clone's phases; leaves the server logs in
 * the working directory (source.log, target.log) for counting round trips per table.
 */
import { copyFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalServer, SANDBOX_PASSWORD, SANDBOX_SUPERUSER } from '../src/sandbox/local-server.js';
import { findPgTools } from '../src/schema/pg-tools.js';
import { createManyTablesDataset } from './many-tables.js';
import { killLiveChildren, runMeasured } from './measure.js';

// The CLI compiled beside this file (dist/, or another --outDir).
const cliPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const log = (line: string) => process.stderr.write(`profile-many: ${line}\n`);
const url = (s: LocalServer, db: string) => `postgresql://${SANDBOX_SUPERUSER}@127.0.0.1:${s.port}/${db}`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const extra = dash >= 0 ? argv.slice(dash + 1) : [];
  const tables = Number(own[0] ?? 2000);
  const statementLog = own.includes('--log');
  const profIndex = own.indexOf('--cpu-prof');
  const profDir = profIndex >= 0 ? own[profIndex + 1] : undefined;
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-profile-'));
  const logging: Record<string, number> = statementLog ? { log_min_duration_statement: 0 } : {};
  const servers: LocalServer[] = [];
  try {
    const source = await LocalServer.start({ major: 15, label: 'profile-source', settings: logging });
    servers.push(source);
    const target = await LocalServer.start({
      major: 17,
      label: 'profile-target',
      settings: { maintenance_work_mem: "'512MB'", ...logging },
    });
    servers.push(target);
    await createManyTablesDataset(source, 'src', tables, log);
    await target.sql('CREATE DATABASE dst');
    const tools = findPgTools({ sourceMajor: 15, pathEnv: '' });
    const load = os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
    const node = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
    const args = [...node, cliPath, 'clone', '--source', url(source, 'src'), '--target', url(target, 'dst')];
    args.push(
      '--jobs',
      '2',
      '--pg-bin',
      tools.dir,
      '--run-dir',
      path.join(outDir, 'run'),
      '--json',
      '--quiet',
    );
    const run = await runMeasured(process.execPath, [...args, ...extra], {
      env: { ...(process.env as Record<string, string>), PGPASSWORD: SANDBOX_PASSWORD },
      poll: false,
    });
    const summary = JSON.parse(run.stdout || '{}') as {
      ok?: boolean;
      phases?: { phase: string; seconds: number }[];
    };
    const phases = (summary.phases ?? []).map((p) => `${p.phase} ${p.seconds.toFixed(2)}`).join(', ');
    process.stdout.write(
      `${tables} tables: clone ${run.seconds.toFixed(1)} s (ok ${String(summary.ok)}; phases ${phases}); load before ${load}, after ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n`,
    );
    if (run.code !== 0) process.stderr.write(run.stderr);
    if (own.includes('--verify')) {
      const v = await runMeasured(
        process.execPath,
        [
          cliPath,
          'verify',
          '--source',
          url(source, 'src'),
          '--target',
          url(target, 'dst'),
          '--jobs',
          '2',
          '--json',
        ],
        { env: { ...(process.env as Record<string, string>), PGPASSWORD: SANDBOX_PASSWORD }, poll: false },
      );
      process.stdout.write(
        `verify ${v.seconds.toFixed(1)} s (exit ${String(v.code)}) = ${(v.seconds / run.seconds).toFixed(2)}× the clone; load ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}\n`,
      );
    }
    copyFileSync(path.join(source.dir, 'server.log'), path.join(outDir, 'source.log'));
    copyFileSync(path.join(target.dir, 'server.log'), path.join(outDir, 'target.log'));
    process.stdout.write(`server logs in ${outDir}\n`);
  } finally {
    killLiveChildren();
    for (const s of servers) await s.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`profile-many: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
