/**
 * `npm run bench -- --verify`: how long `pgconvoy verify` takes against the time of
 * `SELECT count(*)` on both sides (the yardstick of the verify issue), and against the floor
 * of any content comparison: reading every column of every row once on each side.
 *
 *   clone the dataset once (untimed) → per round: count(*) on the source then the target,
 *   count(last column) — which reads every column — on each, then `pgconvoy verify --jobs N`
 *   → medians and ratios.
 *
 * The servers keep their defaults for the yardstick queries (parallel workers included), as
 * a user typing them into psql would get.
 */
import { performance } from 'node:perf_hooks';
import { runMeasured } from './measure.js';
import { toolEnv, type BenchContext } from './method.js';
import { median } from './report.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { qualifiedName, quoteIdent } from '../src/util/sql.js';

interface VerifyRound {
  countSource: number;
  countTarget: number;
  readAllSource: number;
  readAllTarget: number;
  verify: number;
  verifyOk: boolean;
}

export interface VerifyBenchInput {
  ctx: BenchContext;
  source: LocalServer;
  target: LocalServer;
  /** The cloned database on the target. */
  targetDb: string;
  jobs: number;
  runs: number;
  log: (line: string) => void;
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return (performance.now() - started) / 1000;
}

/** Seconds to run `sql` once per table on `server`, one after the other. */
async function perTable(server: LocalServer, db: string, sqls: string[]): Promise<number> {
  return timed(async () => {
    for (const sql of sqls) await server.sql(sql, db);
  });
}

async function lastColumns(server: LocalServer, db: string, tables: { schema: string; name: string }[]) {
  const last = new Map<string, string>();
  for (const t of tables) {
    const [row] = await server.sql<{ name: string }>(
      `SELECT a.attname AS name FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum DESC LIMIT 1`,
      db,
      [qualifiedName(t.schema, t.name)],
    );
    if (row) last.set(qualifiedName(t.schema, t.name), row.name);
  }
  return last;
}

export async function benchVerify(input: VerifyBenchInput): Promise<{ text: string; ok: boolean }> {
  const { ctx, source, target, targetDb, jobs, runs, log } = input;
  const sourceDb = ctx.dataset.database;
  const tables = ctx.dataset.tables;
  const last = await lastColumns(source, sourceDb, tables);
  const counts = tables.map((t) => `SELECT pg_catalog.count(*) FROM ONLY ${qualifiedName(t.schema, t.name)}`);
  const readAll = tables.map((t) => {
    const name = qualifiedName(t.schema, t.name);
    return `SELECT pg_catalog.count(${quoteIdent(last.get(name) ?? '')}) FROM ONLY ${name}`;
  });
  const args = [
    ctx.cliPath,
    'verify',
    '--source',
    ctx.sourceUrl,
    '--target',
    ctx.targetUrl(targetDb),
    '--jobs',
    String(jobs),
    '--json',
  ];
  const rounds: VerifyRound[] = [];
  for (let round = 1; round <= runs; round++) {
    const countSource = await perTable(source, sourceDb, counts);
    const countTarget = await perTable(target, targetDb, counts);
    const readAllSource = await perTable(source, sourceDb, readAll);
    const readAllTarget = await perTable(target, targetDb, readAll);
    const run = await runMeasured(process.execPath, args, { env: toolEnv(ctx), poll: false });
    const r = {
      countSource,
      countTarget,
      readAllSource,
      readAllTarget,
      verify: run.seconds,
      verifyOk: run.code === 0,
    };
    rounds.push(r);
    log(
      `round ${round}: count(*) ${countSource.toFixed(2)} + ${countTarget.toFixed(2)} s, read every column ` +
        `${readAllSource.toFixed(2)} + ${readAllTarget.toFixed(2)} s, verify ${run.seconds.toFixed(2)} s` +
        (r.verifyOk
          ? ''
          : ` (FAILED, exit ${run.code}: ${run.stderr.trim().split('\n').slice(-3).join(' ')})`),
    );
  }
  const m = (pick: (r: VerifyRound) => number) => median(rounds.map(pick));
  const count = m((r) => r.countSource + r.countTarget);
  const floor = m((r) => r.readAllSource + r.readAllTarget);
  const verify = m((r) => r.verify);
  const lines = [
    `verify benchmark: ${tables.length} table(s), ${(ctx.dataset.databaseBytes / 1024 ** 2).toFixed(0)} MB, ${runs} round(s), medians`,
    `  count(*) on source + target      ${count.toFixed(2)} s`,
    `  read every column, both sides    ${floor.toFixed(2)} s   (${(floor / count).toFixed(2)}× count(*))`,
    `  pgconvoy verify --jobs ${jobs}           ${verify.toFixed(2)} s   (${(verify / count).toFixed(2)}× count(*), ${(verify / floor).toFixed(2)}× reading every column)`,
  ];
  return { text: lines.join('\n'), ok: rounds.every((r) => r.verifyOk) };
}
