/**
 * `--relay`: the ways of applying the source's changes that are measured against each other,
 * each able to stop and resume its apply (to queue a backlog) and to name its processes:
 *
 *  - `subscription`: `pgconvoy start` (a native subscription on the target); stopped and
 *    resumed by ALTER SUBSCRIPTION … DISABLE / ENABLE;
 *  - `relay`: `pgconvoy start --via relay`, stopped by SIGTERM (a clean stop) and resumed by
 *    `pgconvoy replicate`, each run of it preloaded with the rusage hook (its CPU and peak RSS).
 *
 * Servers' own processes (the walsender, the apply worker or the relay's target session) are
 * named by pid so that their CPU can be read from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { sleep } from '../src/util/wait.js';
import { readRusageFile, rusageHookPath, RUSAGE_ENV, type ResourceReading } from './measure.js';

export interface ApplierContext {
  cliPath: string;
  binDir: string;
  workDir: string;
  password: string;
  sourceUrl: string;
  targetUrl: string;
  source: pg.ClientConfig;
  target: pg.ClientConfig;
  sourceDb: string;
  targetDb: string;
}

export interface Applier {
  id: 'subscription' | 'relay';
  label: string;
  /** The initial copy; returns with the apply running. */
  setup(): Promise<void>;
  /** Stops the apply; the relay's process reading for the run that ends. */
  pause(): Promise<ResourceReading | undefined>;
  resume(): Promise<void>;
  /** Server processes doing the apply's work: walsender and target session / apply worker. */
  serverPids(): Promise<number[]>;
  /** Ends the apply and drops what it left on both servers. */
  close(): Promise<void>;
}

async function one<R extends pg.QueryResultRow>(
  config: pg.ClientConfig,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const c = new pg.Client(config);
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

export interface SlotState {
  name: string;
  active: boolean;
  activePid: number | null;
  lagBytes: number;
}

/** The one slot of the source database (pgconvoy start creates one). */
export async function slotState(c: pg.Client, database: string): Promise<SlotState | undefined> {
  const res = await c.query<{ slot_name: string; active: boolean; active_pid: number | null; lag: string }>(
    `SELECT slot_name, active, active_pid,
            pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag
     FROM pg_catalog.pg_replication_slots WHERE database = $1`,
    [database],
  );
  const r = res.rows[0];
  return r && { name: r.slot_name, active: r.active, activePid: r.active_pid, lagBytes: Number(r.lag) };
}

async function waitSlot(ctx: ApplierContext, active: boolean): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const [s] = await one<{ active: boolean }>(
      ctx.source,
      'SELECT active FROM pg_catalog.pg_replication_slots WHERE database = $1',
      [ctx.sourceDb],
    );
    if (s && s.active === active) return;
    if (Date.now() > deadline)
      throw new Error(`the slot of ${ctx.sourceDb} never became ${active ? 'active' : 'inactive'}`);
    await sleep(20);
  }
}

async function dropSlot(ctx: ApplierContext): Promise<void> {
  await one(
    ctx.source,
    'SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE database = $1',
    [ctx.sourceDb],
  ).catch(() => undefined);
}

function runCli(
  ctx: ApplierContext,
  args: string[],
  rusageFile?: string,
): { child: ChildProcess; exit: Promise<{ code: number | null; stderr: string }> } {
  const env: Record<string, string> = {
    PATH: `${ctx.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: process.env.HOME ?? '/',
    LC_ALL: 'C',
    PGPASSWORD: ctx.password,
    ...(rusageFile ? { [RUSAGE_ENV]: rusageFile } : {}),
  };
  const nodeArgs = [
    ...(rusageFile ? ['--import', rusageHookPath] : []),
    ...(process.env.PGCONVOY_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
    ctx.cliPath,
    ...args,
  ];
  const child = spawn(process.execPath, nodeArgs, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-8192)));
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stderr })),
  );
  return { child, exit };
}

function connectionArgs(ctx: ApplierContext): string[] {
  return ['--source', ctx.sourceUrl, '--target', ctx.targetUrl];
}

function startArgs(ctx: ApplierContext): string[] {
  return [
    'start',
    ...connectionArgs(ctx),
    '--create-database',
    '--pg-bin',
    ctx.binDir,
    '--run-dir',
    path.join(ctx.workDir, `run-${ctx.targetDb}`),
    '--quiet',
  ];
}

export function subscriptionApplier(ctx: ApplierContext): Applier {
  const subscription = async () => {
    const [row] = await one<{ subname: string }>(
      ctx.target,
      'SELECT subname FROM pg_catalog.pg_subscription',
    );
    if (!row) throw new Error(`no subscription in ${ctx.targetDb}`);
    return `"${row.subname.replace(/"/g, '""')}"`;
  };
  return {
    id: 'subscription',
    label: 'native subscription (pgconvoy start)',
    async setup() {
      const run = runCli(ctx, startArgs(ctx));
      const { code, stderr } = await run.exit;
      if (code !== 0)
        throw new Error(`pgconvoy start exited ${code}: ${stderr.trim().split('\n').slice(-5).join('\n')}`);
    },
    async pause() {
      await one(ctx.target, `ALTER SUBSCRIPTION ${await subscription()} DISABLE`);
      await waitSlot(ctx, false);
      return undefined;
    },
    async resume() {
      await one(ctx.target, `ALTER SUBSCRIPTION ${await subscription()} ENABLE`);
    },
    async serverPids() {
      const [w] = await one<{ pid: number }>(
        ctx.source,
        'SELECT active_pid AS pid FROM pg_catalog.pg_replication_slots WHERE database = $1',
        [ctx.sourceDb],
      );
      const a = await one<{ pid: number }>(
        ctx.target,
        'SELECT pid FROM pg_catalog.pg_stat_subscription WHERE relid IS NULL AND pid IS NOT NULL',
      );
      return [w?.pid, ...a.map((r) => r.pid)].filter((p): p is number => typeof p === 'number');
    },
    async close() {
      const name = await subscription().catch(() => undefined);
      if (name) {
        await one(ctx.target, `ALTER SUBSCRIPTION ${name} DISABLE`).catch(() => undefined);
        await one(ctx.target, `ALTER SUBSCRIPTION ${name} SET (slot_name = NONE)`).catch(() => undefined);
        await one(ctx.target, `DROP SUBSCRIPTION ${name}`).catch(() => undefined);
      }
      await sleep(200);
      await dropSlot(ctx);
    },
  };
}

export function relayApplier(ctx: ApplierContext): Applier {
  let running:
    | { child: ChildProcess; exit: Promise<{ code: number | null; stderr: string }>; rusageFile: string }
    | undefined;
  let runs = 0;
  const launch = (args: string[]) => {
    const rusageFile = path.join(ctx.workDir, `relay-rusage-${ctx.targetDb}-${++runs}.json`);
    running = { ...runCli(ctx, args, rusageFile), rusageFile };
  };
  return {
    id: 'relay',
    label: 'pgconvoy relay (start --via relay, replicate)',
    async setup() {
      launch([...startArgs(ctx).slice(0, 1), '--via', 'relay', ...startArgs(ctx).slice(1)]);
      const exited = running?.exit.then((r) => r);
      // Streaming once the slot is active (the copy is done by then).
      const streaming = waitSlot(ctx, true);
      const first = await Promise.race([streaming.then(() => undefined), exited]);
      if (first)
        throw new Error(
          `pgconvoy start --via relay exited ${first.code}: ${first.stderr.trim().split('\n').slice(-5).join('\n')}`,
        );
    },
    async pause() {
      const r = running;
      if (!r) return undefined;
      running = undefined;
      r.child.kill('SIGTERM');
      const { code, stderr } = await r.exit;
      if (code !== 0)
        throw new Error(
          `the relay exited ${code} on SIGTERM: ${stderr.trim().split('\n').slice(-5).join('\n')}`,
        );
      await waitSlot(ctx, false);
      return readRusageFile(r.rusageFile);
    },
    resume() {
      launch(['replicate', ...connectionArgs(ctx), '--quiet']);
      return Promise.resolve();
    },
    async serverPids() {
      const [w] = await one<{ pid: number }>(
        ctx.source,
        'SELECT active_pid AS pid FROM pg_catalog.pg_replication_slots WHERE database = $1',
        [ctx.sourceDb],
      );
      const a = await one<{ pid: number }>(
        ctx.target,
        "SELECT pid FROM pg_catalog.pg_stat_activity WHERE application_name = 'pgconvoy relay apply' AND datname = $1",
        [ctx.targetDb],
      );
      return [w?.pid, ...a.map((r) => r.pid)].filter((p): p is number => typeof p === 'number');
    },
    async close() {
      running?.child.kill('SIGKILL');
      await running?.exit;
      running = undefined;
      await dropSlot(ctx);
    },
  };
}
