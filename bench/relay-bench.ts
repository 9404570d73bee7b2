/**
 * `npm run bench -- --relay`: the relay against a native subscription on the same change
 * stream (relay-workload.ts), each into its own pair of databases, one after the other:
 *
 *   seed database (tables, rows, churn procedure) → per method: source database from it →
 *   initial copy (pgconvoy start) → 1. throughput: apply paused, N changes queued, apply
 *   resumed; changes/s from the slot becoming active to the target holding the last
 *   heartbeat → 2. lag: a fixed rate of transactions for some seconds with the apply
 *   running, lag sampled every second (bytes: the slot's confirmed_flush_lsn behind
 *   pg_current_wal_lsn(); seconds: how old the target's heartbeat is when the source's is
 *   newer), then the time to drain → drop both databases.
 *
 * CPU: the relay process' own (rusage hook) and, for both methods, the server processes
 * that do the apply (walsender, apply worker or the relay's target session), from /proc.
 */
import os from 'node:os';
import pg from 'pg';
import { sleep } from '../src/util/wait.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { readProc, type ResourceReading } from './measure.js';
import {
  relayApplier,
  slotState,
  subscriptionApplier,
  type Applier,
  type ApplierContext,
} from './relay-appliers.js';
import { beat, readBeat, workloadSql, writeBacklog, writePaced } from './relay-workload.js';

export interface RelayBenchOptions {
  /** Changes queued for the throughput measurement. */
  changes: number;
  /** Transactions per second of the lag measurement, and for how long. */
  rate: number;
  seconds: number;
  tables: number;
  rowsPerTable: number;
  writers: number;
  only: Set<'subscription' | 'relay'>;
}

export interface LagSample {
  second: number;
  lagBytes: number;
  lagSeconds: number;
}

export interface Percentiles {
  p50: number;
  p95: number;
  max: number;
}

export interface RelayMethodResult {
  id: string;
  label: string;
  ok: boolean;
  error?: string;
  throughput?: {
    changes: number;
    /** From resume to the slot being active (process start, connections). */
    startSeconds: number;
    applySeconds: number;
    changesPerSecond: number;
    client?: ResourceReading;
    serverCpuSeconds: number;
    loadAverage: number;
  };
  lag?: {
    transactions: number;
    achievedRate: number;
    bytes: Percentiles;
    seconds: Percentiles;
    drainSeconds: number;
    samples: LagSample[];
    client?: ResourceReading;
    serverCpuSeconds: number;
    loadAverage: number;
  };
}

interface Servers {
  source: LocalServer;
  target: LocalServer;
  url: (server: LocalServer, db: string) => string;
  password: string;
  cliPath: string;
  binDir: string;
  workDir: string;
  log: (line: string) => void;
}

const SEED_DB = 'relay_seed';

function config(server: LocalServer, database: string, password: string): pg.ClientConfig {
  return { host: '127.0.0.1', port: server.port, user: 'postgres', password, database };
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
  return { p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1] ?? 0 };
}

/** Waits until the target holds heartbeat `marker`; fails after `timeoutMs`. */
async function caughtUp(target: pg.Client, marker: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await readBeat(target)) !== marker) {
    if (Date.now() > deadline) throw new Error(`the target did not catch up within ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}

const cpuOf = (pids: number[]) => pids.reduce((sum, pid) => sum + (readProc(pid)?.cpuSeconds ?? 0), 0);

async function untilActive(src: pg.Client, db: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!(await slotState(src, db))?.active) {
    if (Date.now() > deadline) throw new Error('the apply never started streaming');
    await sleep(10);
  }
}

async function measureThroughput(
  o: RelayBenchOptions,
  a: Applier,
  ctx: ApplierContext,
  src: pg.Client,
  tgt: pg.Client,
): Promise<NonNullable<RelayMethodResult['throughput']>> {
  await a.pause();
  const changes = await writeBacklog(ctx.source, o.changes, o.writers);
  const marker = await beat(src);
  const resumed = Date.now();
  await a.resume();
  await untilActive(src, ctx.sourceDb);
  const active = Date.now();
  const pids = await a.serverPids();
  const cpu0 = cpuOf(pids);
  const loadAverage = os.loadavg()[0] ?? 0;
  await caughtUp(tgt, marker, 1_800_000);
  const done = Date.now();
  const serverCpuSeconds = cpuOf(pids) - cpu0;
  const client = await a.pause();
  const applySeconds = (done - active) / 1000;
  return {
    changes,
    startSeconds: (active - resumed) / 1000,
    applySeconds,
    changesPerSecond: changes / applySeconds,
    ...(client ? { client } : {}),
    serverCpuSeconds,
    loadAverage,
  };
}

async function measureLag(
  o: RelayBenchOptions,
  a: Applier,
  ctx: ApplierContext,
  src: pg.Client,
  tgt: pg.Client,
): Promise<NonNullable<RelayMethodResult['lag']>> {
  await a.resume();
  await untilActive(src, ctx.sourceDb);
  await caughtUp(tgt, await beat(src), 120_000);
  const pids = await a.serverPids();
  const cpu0 = cpuOf(pids);
  const loadAverage = os.loadavg()[0] ?? 0;
  const samples: LagSample[] = [];
  const started = Date.now();
  let sampling = true;
  const sampler = (async () => {
    for (let next = started + 1000; sampling; next += 1000) {
      await sleep(Math.max(0, next - Date.now()));
      if (!sampling) break;
      const [slot, srcAt, tgtAt] = await Promise.all([
        slotState(src, ctx.sourceDb),
        readBeat(src),
        readBeat(tgt),
      ]);
      const now = Date.now();
      const lagSeconds = srcAt === tgtAt ? 0 : Math.max(0, now - Number(tgtAt) / 1000) / 1000;
      samples.push({
        second: Math.round((now - started) / 1000),
        lagBytes: slot?.lagBytes ?? NaN,
        lagSeconds,
      });
    }
  })();
  const written = await writePaced(ctx.source, o.rate, o.seconds);
  const drainFrom = Date.now();
  await caughtUp(tgt, await beat(src), 600_000);
  const drainSeconds = (Date.now() - drainFrom) / 1000;
  sampling = false;
  await sampler;
  const serverCpuSeconds = cpuOf(pids) - cpu0;
  const client = await a.pause();
  return {
    transactions: written.transactions,
    achievedRate: written.transactions / written.seconds,
    bytes: percentiles(samples.map((s) => s.lagBytes)),
    seconds: percentiles(samples.map((s) => s.lagSeconds)),
    drainSeconds,
    samples,
    ...(client ? { client } : {}),
    serverCpuSeconds,
    loadAverage,
  };
}

async function runMethod(
  o: RelayBenchOptions,
  s: Servers,
  make: (ctx: ApplierContext) => Applier,
  id: string,
): Promise<RelayMethodResult> {
  const sourceDb = `relay_src_${id}`;
  const targetDb = `relay_tgt_${id}`;
  await s.source.sql(`DROP DATABASE IF EXISTS ${sourceDb} WITH (FORCE)`);
  await s.target.sql(`DROP DATABASE IF EXISTS ${targetDb} WITH (FORCE)`);
  await s.source.sql(`CREATE DATABASE ${sourceDb} TEMPLATE ${SEED_DB}`);
  const ctx: ApplierContext = {
    cliPath: s.cliPath,
    binDir: s.binDir,
    workDir: s.workDir,
    password: s.password,
    sourceUrl: s.url(s.source, sourceDb),
    targetUrl: s.url(s.target, targetDb),
    source: config(s.source, sourceDb, s.password),
    target: config(s.target, targetDb, s.password),
    sourceDb,
    targetDb,
  };
  const a = make(ctx);
  const src = new pg.Client(ctx.source);
  const tgt = new pg.Client(ctx.target);
  try {
    s.log(`${id}: initial copy …`);
    await a.setup();
    await src.connect();
    await tgt.connect();
    await caughtUp(tgt, await beat(src), 120_000);
    s.log(`${id}: throughput: ${o.changes} changes queued, then applied …`);
    const throughput = await measureThroughput(o, a, ctx, src, tgt);
    s.log(
      `${id}: ${throughput.changesPerSecond.toFixed(0)} changes/s (${throughput.applySeconds.toFixed(1)} s)`,
    );
    s.log(`${id}: lag at ${o.rate} tx/s for ${o.seconds} s …`);
    const lag = await measureLag(o, a, ctx, src, tgt);
    s.log(
      `${id}: lag p50 ${lag.seconds.p50.toFixed(2)} s, p95 ${lag.seconds.p95.toFixed(2)} s, max ${lag.seconds.max.toFixed(2)} s`,
    );
    return { id, label: a.label, ok: true, throughput, lag };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    s.log(`${id}: FAILED: ${error}`);
    return { id, label: a.label, ok: false, error };
  } finally {
    await src.end().catch(() => undefined);
    await tgt.end().catch(() => undefined);
    await a.close().catch(() => undefined);
    await s.source.sql(`DROP DATABASE IF EXISTS ${sourceDb} WITH (FORCE)`).catch(() => undefined);
    await s.target.sql(`DROP DATABASE IF EXISTS ${targetDb} WITH (FORCE)`).catch(() => undefined);
  }
}

export async function runRelayBench(o: RelayBenchOptions, s: Servers): Promise<RelayMethodResult[]> {
  s.log(`generating ${o.tables} tables × ${o.rowsPerTable} rows …`);
  await s.source.sql(`CREATE DATABASE ${SEED_DB}`);
  await s.source.sql(workloadSql({ tables: o.tables, rowsPerTable: o.rowsPerTable }), SEED_DB);
  const results: RelayMethodResult[] = [];
  if (o.only.has('subscription')) results.push(await runMethod(o, s, subscriptionApplier, 'subscription'));
  if (o.only.has('relay')) results.push(await runMethod(o, s, relayApplier, 'relay'));
  return results;
}
