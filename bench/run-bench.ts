/**
 * `npm run bench`: how pgconvoy clone compares with pg_dump/pg_restore and with the floor of
 * just moving the bytes, on throwaway local servers.
 *
 *   start a source (PG 15) and a target (PG 17, else 15) → generate the dataset → for each
 *   round, every method once in a fixed order (A B C D, A B C D, …), each into a fresh
 *   target database that is checked (row counts) and dropped afterwards → print the table,
 *   write the raw results as JSON under os.tmpdir().
 *
 * Servers, child processes and scratch files are removed on success, error and Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { EXIT } from '../src/defaults.js';
import { PgconvoyError, errorMessage } from '../src/errors.js';
import { LocalServer, SANDBOX_PASSWORD, SANDBOX_SUPERUSER } from '../src/sandbox/local-server.js';
import { availableMajors } from '../src/sandbox/postgres-binaries.js';
import { findPgTools } from '../src/schema/pg-tools.js';
import { parseBenchArgs, type BenchOptions } from './args.js';
import { countRows, createDataset, type Dataset } from './dataset.js';
import { createManyTablesDataset } from './many-tables.js';
import { killLiveChildren } from './measure.js';
import { chooseMethods, cloneMethod } from './methods.js';
import { runRelayBench, type RelayBenchOptions } from './relay-bench.js';
import { RELAY_NOTES, renderRelayReport } from './relay-report.js';
import { benchVerify } from './verify-bench.js';
import type { BenchContext, Method, MethodResult } from './method.js';
import { renderReport, writeResults, type BenchReport, type RunRecord } from './report.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliPath = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const SOURCE_DB = 'bench_source';
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

function loopbackUrl(server: LocalServer, database: string): string {
  return `postgresql://${SANDBOX_SUPERUSER}@127.0.0.1:${server.port}/${database}`;
}

/** The chunking flags when this build of pgconvoy has them, else undefined. */
function chunkFlags(sizeBytes: number): string[] | undefined {
  const help = execFileSync(process.execPath, [cliPath, 'clone', '--help'], { encoding: 'utf8' });
  if (!help.includes('--split-tables-larger-than') || !help.includes('--chunk-size')) return undefined;
  const chunkMb = Math.max(8, Math.floor(sizeBytes / 16 / 1024 ** 2));
  return ['--split-tables-larger-than', `${chunkMb}MB`, '--chunk-size', `${chunkMb}MB`];
}

async function serverVersion(server: LocalServer): Promise<string> {
  const [row] = await server.sql<{ v: string }>("SELECT pg_catalog.current_setting('server_version') AS v");
  return `PostgreSQL ${row?.v ?? server.major}`;
}

/** Untimed check that the target holds every row of the source. */
async function checkCopy(target: LocalServer, db: string, dataset: Dataset): Promise<string | undefined> {
  const counts = await countRows(target, db, dataset.tables);
  const count = (t: { schema: string; name: string }) => counts.get(`${t.schema}.${t.name}`);
  const wrong = dataset.tables.filter((t) => count(t) !== t.rows);
  if (wrong.length === 0) return undefined;
  return `row counts differ: ${wrong
    .slice(0, 10)
    .map((t) => `${t.schema}.${t.name} ${count(t)} of ${t.rows}`)
    .join(', ')}`;
}

async function runOnce(
  method: Method,
  round: number,
  ctx: BenchContext,
  target: LocalServer,
): Promise<RunRecord> {
  const db = `bench_${method.id.replace(/-/g, '_')}_r${round}`;
  await target.sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await target.sql(`CREATE DATABASE ${db}`);
  const startedAt = new Date().toISOString();
  const loadAverage = os.loadavg()[0] ?? 0;
  let result: MethodResult;
  try {
    result = await method.run(ctx, db);
    if (result.ok) {
      const wrong = await checkCopy(target, db, ctx.dataset);
      if (wrong) result = { ...result, ok: false, error: wrong };
    }
  } catch (err) {
    result = { seconds: NaN, ok: false, error: errorMessage(err), steps: [] };
  } finally {
    await target.sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    // Leave no dirty buffers of this run for the next method to write out.
    await target.sql('CHECKPOINT');
  }
  log(
    `round ${round} ${method.id}: ${result.ok ? `${result.seconds.toFixed(2)} s` : `FAILED: ${result.error ?? '?'}`}` +
      (result.steps.length > 1
        ? ` (${result.steps.map((s) => `${s.name} ${s.seconds.toFixed(2)}`).join(', ')})`
        : ''),
  );
  return { round, method: method.id, targetDatabase: db, startedAt, loadAverage, result };
}

/** `--verify`: one untimed clone, then verify against count(*) (verify-bench.ts). */
async function verifyBench(
  o: BenchOptions,
  ctx: BenchContext,
  source: LocalServer,
  target: LocalServer,
): Promise<boolean> {
  const db = 'bench_verify';
  await target.sql(`CREATE DATABASE ${db}`);
  log(`cloning into ${db} (untimed) …`);
  const clone = await cloneMethod('clone', o.jobs, []).run(ctx, db);
  const wrong = clone.ok ? await checkCopy(target, db, ctx.dataset) : clone.error;
  if (wrong) throw new PgconvoyError(`the clone to verify failed: ${wrong}`, { code: 'BENCH_CLONE_FAILED' });
  const result = await benchVerify({ ctx, source, target, targetDb: db, jobs: o.jobs, runs: o.runs, log });
  process.stdout.write(result.text + '\n');
  return result.ok;
}

/** `--relay`: the relay against a native subscription (relay-bench.ts). */
async function relayBench(
  o: BenchOptions,
  relay: RelayBenchOptions,
  workDir: string,
  binDir: string,
  targetMajor: number,
): Promise<boolean> {
  log(`starting PostgreSQL ${o.sourceMajor} (source) and ${targetMajor} (target) …`);
  const servers: LocalServer[] = [];
  try {
    const source = await LocalServer.start({ major: o.sourceMajor, label: 'bench-source' });
    servers.push(source);
    const target = await LocalServer.start({ major: targetMajor, label: 'bench-target' });
    servers.push(target);
    const results = await runRelayBench(relay, {
      source,
      target,
      url: loopbackUrl,
      password: SANDBOX_PASSWORD,
      cliPath,
      binDir,
      workDir,
      log,
    });
    const header = {
      source: await serverVersion(source),
      target: await serverVersion(target),
      cpus: os.cpus().length,
      notes: [
        'throwaway servers on loopback: fsync, synchronous_commit and full_page_writes off, shared_buffers 128MB',
        ...RELAY_NOTES,
      ],
    };
    process.stdout.write(
      (o.json
        ? JSON.stringify({ ...header, options: { ...relay, only: [...relay.only] }, results }, null, 2)
        : renderRelayReport(relay, results, header)) + '\n',
    );
    return results.every((r) => r.ok);
  } finally {
    killLiveChildren();
    for (const s of servers) await s.destroy();
  }
}

async function bench(o: BenchOptions, workDir: string): Promise<boolean> {
  if (!existsSync(cliPath))
    throw new PgconvoyError(`"${cliPath}" does not exist`, {
      code: 'BENCH_NOT_BUILT',
      hint: 'run `npm run build` first (npm run bench does)',
      exitCode: EXIT.usage,
    });
  const targetMajor = o.targetMajor ?? (availableMajors().includes(17) ? 17 : 15);
  const tools = findPgTools({ sourceMajor: Math.max(o.sourceMajor, 15), pathEnv: '' });
  if (o.relay) return relayBench(o, o.relay, workDir, tools.dir, targetMajor);
  const flags = o.singleTable ? chunkFlags(o.sizeBytes) : undefined;
  const methods = chooseMethods({
    singleTable: o.singleTable,
    jobs: o.jobs,
    only: o.only,
    chunkFlags: flags,
    manyTables: o.manyTables !== undefined,
    http: o.http,
  });
  if (methods.length === 0)
    throw new PgconvoyError(`no method to run: --only ${[...o.only].join(',')}`, {
      code: 'BENCH_NO_METHODS',
      hint: 'the single-table case has clone, dump and floor (no dump-gz)',
      exitCode: EXIT.usage,
    });
  const notes: string[] = [
    'every target database is created (untimed) before its method runs, checked by row counts and dropped after it (untimed)',
    'pgconvoy runs with its defaults besides the flags shown (e.g. one index build at a time); its time includes sequences and ANALYZE, which pg_restore does not do',
    "pgconvoy's copy phase also overlaps index builds of tables already copied; the floor builds no index",
  ];
  if (o.manyTables)
    notes.push(
      'pg_dump runs as one process: with -j its workers must each lock every table again, and on default settings they run out of lock table (issue 16)',
    );
  if (o.singleTable && !flags)
    notes.push(
      'this pgconvoy has no --split-tables-larger-than/--chunk-size: the single table is copied as one job, so --jobs 2/4 cannot speed up its data phase',
    );

  log(`starting PostgreSQL ${o.sourceMajor} (source) and ${targetMajor} (target) …`);
  const servers: LocalServer[] = [];
  try {
    const source = await LocalServer.start({ major: o.sourceMajor, label: 'bench-source' });
    servers.push(source);
    // pgconvoy sets maintenance_work_mem=512MB for its index builds: give pg_restore the same.
    const target = await LocalServer.start({
      major: targetMajor,
      label: 'bench-target',
      settings: { maintenance_work_mem: "'512MB'" },
    });
    servers.push(target);
    const dataset = o.manyTables
      ? await createManyTablesDataset(source, SOURCE_DB, o.manyTables, log)
      : await createDataset(source, SOURCE_DB, {
          sizeBytes: o.sizeBytes,
          singleTable: o.singleTable,
          log,
        });
    log(
      `dataset ready: ${(dataset.databaseBytes / 1024 ** 2).toFixed(0)} MB on disk in ${dataset.generateSeconds.toFixed(0)} s`,
    );

    const ctx: BenchContext = {
      sourceUrl: loopbackUrl(source, SOURCE_DB),
      targetUrl: (db) => loopbackUrl(target, db),
      password: SANDBOX_PASSWORD,
      binDir: tools.dir,
      cliPath,
      dataset,
      workDir,
    };
    if (o.verify) return await verifyBench(o, ctx, source, target);
    const runs: RunRecord[] = [];
    for (let round = 1; round <= o.runs; round++)
      for (const method of methods) runs.push(await runOnce(method, round, ctx, target));

    const report: BenchReport = {
      startedAt: new Date().toISOString(),
      options: { ...o, only: [...o.only] },
      machine: {
        cpus: os.cpus().length,
        memoryBytes: os.totalmem(),
        node: process.version,
        platform: `${os.platform()} ${os.release()}`,
      },
      servers: {
        source: await serverVersion(source),
        target: await serverVersion(target),
        notes: [
          'throwaway servers on loopback: fsync, synchronous_commit and full_page_writes off, shared_buffers 128MB; target maintenance_work_mem 512MB',
        ],
      },
      binDir: tools.dir,
      notes,
      dataset,
      methods: methods.map((m) => ({
        id: m.id,
        label: m.label,
        short: m.short,
        jobs: m.jobs,
        commands: m.commands,
      })),
      runs,
    };
    process.stdout.write(renderReport(report) + '\n');
    process.stdout.write(`\nraw results: ${writeResults(report)}\n`);
    return runs.every((r) => r.result.ok);
  } finally {
    killLiveChildren();
    for (const s of servers) await s.destroy();
  }
}

async function main(): Promise<void> {
  let options: BenchOptions;
  try {
    options = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    throw err;
  }
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-bench-'));
  const onSignal = (signal: NodeJS.Signals) => {
    // The sandbox stops its servers on the same signal (and on exit); here: our children and
    // files. Then exit: the sandbox re-raises the signal, but while another listener (this
    // one) is registered node swallows it and the run would go on against dead servers.
    killLiveChildren();
    rmSync(workDir, { recursive: true, force: true });
    process.stderr.write(`bench: interrupted (${signal}); servers and scratch files removed\n`);
    process.exit(EXIT.interrupted);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, onSignal);
  try {
    const allOk = await bench(options, workDir);
    if (!allOk) process.exitCode = EXIT.failed;
  } catch (err) {
    process.stderr.write(`bench: error: ${errorMessage(err)}\n`);
    if (err instanceof PgconvoyError && err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
    process.exitCode = err instanceof PgconvoyError ? err.exitCode : EXIT.failed;
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
