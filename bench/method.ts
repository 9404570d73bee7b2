/**
 * What every timed method shares: its shape, the result it returns, and the environment
 * its child processes get (no password in argv: only PGPASSWORD; none of our own PG*
 * variables leak in).
 */
import type { Dataset } from './dataset.js';
import type { MeasuredRun, ResourceReading } from './measure.js';

export type MethodKey = 'clone' | 'clone-fdw' | 'dump' | 'dump-gz' | 'floor';
export const METHOD_KEYS: readonly MethodKey[] = ['clone', 'clone-fdw', 'dump', 'dump-gz', 'floor'];
/** What runs without --only: `clone-fdw` is asked for by name (`--only clone,clone-fdw`). */
export const DEFAULT_METHOD_KEYS: readonly MethodKey[] = ['clone', 'dump', 'dump-gz', 'floor'];

export interface BenchContext {
  /** libpq URI of a database on the source / target, without password. */
  sourceUrl: string;
  targetUrl: (database: string) => string;
  password: string;
  /** Directory of pg_dump, pg_restore and psql. */
  binDir: string;
  cliPath: string;
  dataset: Dataset;
  /** Scratch space for dumps and run directories (removed after each run). */
  workDir: string;
}

export interface PgconvoyMetrics {
  resources: ResourceReading | undefined;
  polled: ResourceReading | undefined;
  /** From the `--json` summary. */
  copySeconds: number | undefined;
  bytes: number | undefined;
  phases: { phase: string; seconds: number }[];
}

export interface MethodResult {
  seconds: number;
  ok: boolean;
  error?: string;
  /** Timed parts (pg_dump and pg_restore, say). */
  steps: { name: string; seconds: number }[];
  pgconvoy?: PgconvoyMetrics;
  /** Number of COPY streams at once (floor). */
  streams?: number;
}

export interface Method {
  /** Unique in a run: 'clone', 'clone-j4', 'dump', … */
  id: string;
  key: MethodKey;
  label: string;
  /** Name in ratios: "dump -Z0 / pgconvoy = 1.3×". */
  short: string;
  jobs: number;
  /** The command lines, with <source>, <target> and <dir> placeholders. */
  commands: string[];
  run(ctx: BenchContext, targetDb: string): Promise<MethodResult>;
}

/** The children's whole environment: ours is not passed on (no stray PG* variables). */
export function toolEnv(ctx: BenchContext, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: `${ctx.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: process.env.HOME ?? '/',
    LC_ALL: 'C',
    PGPASSWORD: ctx.password,
    ...extra,
  };
}

export function failure(run: MeasuredRun, what: string): string | undefined {
  if (run.code === 0) return undefined;
  const tail = run.stderr.trim().split('\n').slice(-5).join('\n');
  return `${what} exited with ${run.signal ?? `code ${run.code}`}: ${tail}`;
}
