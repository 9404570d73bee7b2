/**
 * The ways of moving the benchmark database that are timed against each other:
 *
 *  - `clone`:   the built pgconvoy CLI as a child process (`node dist/src/cli/main.js clone`);
 *  - `clone-fdw`: the same with `--via fdw` (the target pulls the rows through postgres_fdw);
 *  - `dump`:    `pg_dump -Fd -Z0 -j N` to a directory, then `pg_restore -j N` (both timed);
 *  - `dump-gz`: the same with pg_dump's default compression;
 *  - `floor`:   per table `psql -c '\copy t to stdout' | psql -c '\copy t from stdin'`, N
 *               tables at a time, into tables pre-created (untimed) without indexes or
 *               constraints: the cost of just moving the bytes (floor-method.ts).
 *
 * Every method gets the same connection strings (no password: it is in PGPASSWORD, never in
 * argv) and a fresh, empty target database created before it starts (untimed).
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runMeasured, rusageHookPath, RUSAGE_ENV } from './measure.js';
import { failure, toolEnv, type Method, type MethodKey } from './method.js';
import { floorMethod } from './floor-method.js';

interface CloneTarget {
  source: string;
  target: string;
  runDir: string;
  binDir: string;
}

function cloneArgs(t: CloneTarget, jobs: number, extra: string[]): string[] {
  return [
    'clone',
    '--source',
    t.source,
    '--target',
    t.target,
    '--create-database',
    '--jobs',
    String(jobs),
    '--run-dir',
    t.runDir,
    '--pg-bin',
    t.binDir,
    '--json',
    '--quiet',
    ...extra,
  ];
}

interface CloneJson {
  ok?: boolean;
  bytes?: number;
  phases?: { phase: string; seconds: number }[];
}

export function cloneMethod(
  id: string,
  jobs: number,
  extraFlags: string[],
  short = 'pgconvoy',
  key: MethodKey = 'clone',
): Method {
  const shown = cloneArgs(
    { source: '<source>', target: '<target>', runDir: '<dir>/run', binDir: '<bin>' },
    jobs,
    extraFlags,
  );
  return {
    id,
    key,
    label: `pgconvoy clone${key === 'clone-fdw' ? ' --via fdw' : ''} -j${jobs}${extraFlags.includes('--http') ? ' --http' : ''}`,
    short,
    jobs,
    commands: [`node dist/src/cli/main.js ${shown.join(' ')}`],
    async run(ctx, targetDb) {
      const runDir = path.join(ctx.workDir, `run-${targetDb}`);
      const args = cloneArgs(
        { source: ctx.sourceUrl, target: ctx.targetUrl(targetDb), runDir, binDir: ctx.binDir },
        jobs,
        extraFlags,
      );
      const rusageFile = path.join(ctx.workDir, `rusage-${targetDb}.json`);
      const hook = pathToFileURL(rusageHookPath).href;
      try {
        const run = await runMeasured(process.execPath, ['--import', hook, ctx.cliPath, ...args], {
          env: toolEnv(ctx, { [RUSAGE_ENV]: rusageFile }),
          poll: true,
          rusageFile,
        });
        let summary: CloneJson = {};
        try {
          summary = JSON.parse(run.stdout) as CloneJson;
        } catch {
          /* reported below through the exit code or ok */
        }
        const error =
          failure(run, 'pgconvoy clone') ?? (summary.ok === true ? undefined : 'pgconvoy reported ok: false');
        const phases = summary.phases ?? [];
        return {
          seconds: run.seconds,
          ok: error === undefined,
          ...(error ? { error } : {}),
          steps: [{ name: 'pgconvoy clone', seconds: run.seconds }],
          pgconvoy: {
            resources: run.resources,
            polled: run.polled,
            copySeconds: phases.find((p) => p.phase === 'copy')?.seconds,
            bytes: summary.bytes,
            phases: phases.map((p) => ({ phase: p.phase, seconds: p.seconds })),
          },
        };
      } finally {
        rmSync(rusageFile, { force: true });
        rmSync(runDir, { recursive: true, force: true });
      }
    },
  };
}

export function dumpMethod(
  id: string,
  jobs: number,
  compressed: boolean,
  onlyTable?: string,
  dumpJobs = jobs,
): Method {
  const z = compressed ? [] : ['-Z0'];
  const t = onlyTable ? ['-t', onlyTable] : [];
  const dumpArgs = (src: string, dir: string) => [
    '-Fd',
    ...z,
    ...(dumpJobs > 1 ? ['-j', String(dumpJobs)] : []),
    ...t,
    '-f',
    dir,
    '-d',
    src,
  ];
  const restoreArgs = (tgt: string, dir: string) => ['-j', String(jobs), '-d', tgt, dir];
  return {
    id,
    key: compressed ? 'dump-gz' : 'dump',
    label: `pg_dump${compressed ? ' (gzip)' : ' -Z0'}${dumpJobs === jobs ? '' : ` -j${dumpJobs}`} + pg_restore -j${jobs}`,
    short: compressed ? 'dump gzip' : 'dump -Z0',
    jobs,
    commands: [
      `pg_dump ${dumpArgs('<source>', '<dir>').join(' ')}`,
      `pg_restore ${restoreArgs('<target>', '<dir>').join(' ')}`,
    ],
    async run(ctx, targetDb) {
      const dir = path.join(ctx.workDir, `dump-${targetDb}`);
      rmSync(dir, { recursive: true, force: true });
      const env = toolEnv(ctx);
      try {
        const dump = await runMeasured(path.join(ctx.binDir, 'pg_dump'), dumpArgs(ctx.sourceUrl, dir), {
          env,
        });
        const steps = [{ name: 'pg_dump', seconds: dump.seconds }];
        const dumpError = failure(dump, 'pg_dump');
        if (dumpError) return { seconds: dump.seconds, ok: false, error: dumpError, steps };
        const restore = await runMeasured(
          path.join(ctx.binDir, 'pg_restore'),
          restoreArgs(ctx.targetUrl(targetDb), dir),
          { env },
        );
        steps.push({ name: 'pg_restore', seconds: restore.seconds });
        const error = failure(restore, 'pg_restore');
        return { seconds: dump.seconds + restore.seconds, ok: !error, ...(error ? { error } : {}), steps };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export interface MethodChoice {
  singleTable: boolean;
  jobs: number;
  only: ReadonlySet<MethodKey>;
  /** `--split-tables-larger-than … --chunk-size …` when this pgconvoy has them. */
  chunkFlags: string[] | undefined;
  /** --many-tables: pg_dump in one process (with -j its workers cannot lock thousands of tables). */
  manyTables?: boolean;
  /** --http: pgconvoy clone once more with its dashboard on (`--http 0`), to show what it costs. */
  http?: boolean;
}

const VIA_FDW = ['--via', 'fdw'];

/** The methods of one benchmark, in the order every round runs them. */
export function chooseMethods(c: MethodChoice): Method[] {
  if (c.manyTables)
    return [cloneMethod('clone', c.jobs, []), dumpMethod('dump', c.jobs, false, undefined, 1)].filter((m) =>
      c.only.has(m.key),
    );
  const all: Method[] = c.singleTable
    ? [
        ...[1, 2, 4].map((j) => cloneMethod(`clone-j${j}`, j, c.chunkFlags ?? [], `pgconvoy -j${j}`)),
        cloneMethod(
          `clone-fdw-j${c.jobs}`,
          c.jobs,
          [...(c.chunkFlags ?? []), ...VIA_FDW],
          `fdw -j${c.jobs}`,
          'clone-fdw',
        ),
        dumpMethod('dump', c.jobs, false, 'public.events'),
        floorMethod('floor', 1),
      ]
    : [
        cloneMethod('clone', c.jobs, []),
        cloneMethod('clone-fdw', c.jobs, VIA_FDW, 'pgconvoy --via fdw', 'clone-fdw'),
        ...(c.http ? [cloneMethod('clone-http', c.jobs, ['--http', '0'], 'pgconvoy --http')] : []),
        dumpMethod('dump', c.jobs, false),
        dumpMethod('dump-gz', c.jobs, true),
        floorMethod('floor', c.jobs),
      ];
  return all.filter((m) => c.only.has(m.key));
}
