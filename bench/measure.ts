/**
 * Running the processes the benchmark times: wall-clock seconds from spawn to exit, and for
 * pgconvoy its peak RSS and CPU seconds.
 *
 * Two independent readings of the pgconvoy process (never of its children such as pg_dump):
 *  - exact: node's `--import` preload `rusage-hook.js` writes `process.resourceUsage()`
 *    (getrusage RUSAGE_SELF: ru_maxrss, user and system CPU) to a file as the process exits;
 *  - polled: /proc/<pid>/status VmHWM and /proc/<pid>/stat utime+stime every 100 ms, the
 *    maximum kept (misses at most the last 100 ms of CPU; VmHWM is a high-water mark).
 * The report uses the exact values and falls back to the polled ones.
 *
 * Every child is tracked so that Ctrl-C or an error kills what is still running.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

export interface ProcessRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  stdout: string;
  /** The last 16 kB of stderr. */
  stderr: string;
}

export interface ResourceReading {
  peakRssKb: number;
  cpuSeconds: number;
  userSeconds?: number;
  systemSeconds?: number;
  source: 'rusage' | 'proc';
}

export interface MeasuredRun extends ProcessRun {
  /** From the exit hook when it wrote its file, else from /proc polling. */
  resources: ResourceReading | undefined;
  polled: ResourceReading | undefined;
}

const live = new Set<ChildProcess>();

/** Synchronous, for signal handlers: SIGKILL every child still running. */
export function killLiveChildren(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  live.clear();
}

/** The preload that records the pgconvoy process' own rusage on exit (compiled next to us). */
export const rusageHookPath = path.join(path.dirname(fileURLToPath(import.meta.url)), 'rusage-hook.js');
/** Environment variable naming the file the hook writes. */
export const RUSAGE_ENV = 'PGCONVOY_BENCH_RUSAGE';

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** VmHWM (kB) and utime+stime (s) of one live process, or undefined once it is gone. */
export function readProc(pid: number): { hwmKb: number; cpuSeconds: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    // Fields after "(comm)" start at field 3 (state); utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    if (!hwm || !Number.isFinite(ticks)) return undefined;
    return { hwmKb: Number(hwm[1]), cpuSeconds: ticks / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

export interface RunOptions {
  env: Record<string, string>;
  /** Poll /proc for VmHWM and CPU every 100 ms. */
  poll?: boolean;
  /** Where the rusage hook writes (the child must have been started with `--import` it). */
  rusageFile?: string;
  cwd?: string;
}

/** Spawns `file args`, waits for it, and times it. Never throws for a non-zero exit. */
export function runMeasured(file: string, args: string[], options: RunOptions): Promise<MeasuredRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file, args, {
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    live.add(child);
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString('utf8')).slice(-16_384);
    });
    let polled: { hwmKb: number; cpuSeconds: number } | undefined;
    const sample = () => {
      if (child.pid === undefined) return;
      const now = readProc(child.pid);
      if (now)
        polled = {
          hwmKb: Math.max(now.hwmKb, polled?.hwmKb ?? 0),
          cpuSeconds: Math.max(now.cpuSeconds, polled?.cpuSeconds ?? 0),
        };
    };
    const timer = options.poll ? setInterval(sample, 100) : undefined;
    child.on('error', (e) => {
      if (timer) clearInterval(timer);
      live.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      const seconds = (performance.now() - started) / 1000;
      if (timer) clearInterval(timer);
      live.delete(child);
      const polledReading: ResourceReading | undefined = polled
        ? { peakRssKb: polled.hwmKb, cpuSeconds: polled.cpuSeconds, source: 'proc' }
        : undefined;
      const exact = options.rusageFile ? readRusageFile(options.rusageFile) : undefined;
      resolve({
        code,
        signal,
        seconds,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: err,
        resources: exact ?? polledReading,
        polled: polledReading,
      });
    });
  });
}

export function readRusageFile(file: string): ResourceReading | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const u = JSON.parse(readFileSync(file, 'utf8')) as {
      maxRssKb: number;
      userSeconds: number;
      systemSeconds: number;
    };
    return {
      peakRssKb: u.maxRssKb,
      cpuSeconds: u.userSeconds + u.systemSeconds,
      userSeconds: u.userSeconds,
      systemSeconds: u.systemSeconds,
      source: 'rusage',
    };
  } catch {
    return undefined;
  }
}
