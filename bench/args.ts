/**
 * The benchmark's command line (`npm run bench -- --size 300MB --runs 3`), parsed into
 * plain options so that the run itself never reads process.argv.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseSize } from '../src/util/format.js';
import { positiveInt } from '../src/cli/parse-options.js';
import type { RelayBenchOptions } from './relay-bench.js';
import { DEFAULT_METHOD_KEYS, METHOD_KEYS, type MethodKey } from './method.js';

export interface BenchOptions {
  sizeBytes: number;
  jobs: number;
  runs: number;
  only: Set<MethodKey>;
  singleTable: boolean;
  /** `--many-tables N`: N small tables (many-tables.ts) instead of the ~1 GB case. */
  manyTables: number | undefined;
  /** Time pgconvoy verify against count(*) instead of the copy methods. */
  verify: boolean;
  /** Also time clone with its dashboard and metrics on (--http). */
  http: boolean;
  sourceMajor: number;
  /** undefined: the newest available of 17 and 15. */
  targetMajor: number | undefined;
  /** `--relay`: the relay against a native subscription (relay-bench.ts) instead of the copy methods. */
  relay: RelayBenchOptions | undefined;
  /** Print the results as JSON on stdout instead of the report. */
  json: boolean;
}

const RELAY_METHODS = ['subscription', 'relay'] as const;

function relayMethodList(value: string): Set<'subscription' | 'relay'> {
  const keys = value.split(',').map((k) => k.trim());
  if (keys.some((k) => !(RELAY_METHODS as readonly string[]).includes(k)))
    throw new InvalidArgumentError(`expected a comma-separated list of ${RELAY_METHODS.join(', ')}`);
  return new Set(keys as ('subscription' | 'relay')[]);
}

function size(value: string): number {
  const bytes = parseSize(value);
  if (bytes === undefined || bytes < 1024 ** 2)
    throw new InvalidArgumentError('expected a size of 1MB or more, such as 300MB or 1GB');
  return bytes;
}

function methodList(value: string): Set<MethodKey> {
  const keys = value
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
  const unknown = keys.filter((k) => !(METHOD_KEYS as readonly string[]).includes(k));
  if (unknown.length || keys.length === 0)
    throw new InvalidArgumentError(`expected a comma-separated list of ${METHOD_KEYS.join(', ')}`);
  return new Set(keys as MethodKey[]);
}

/**
 * Parses `args` (without node and the script); throws CommanderError on bad input after
 * writing the message to `writeErr` (stderr by default).
 */
export function parseBenchArgs(
  args: string[],
  writeErr: (text: string) => void = (text) => process.stderr.write(text),
): BenchOptions {
  const program = new Command('npm run bench --')
    .description(
      'time pgconvoy clone against pg_dump/pg_restore and a psql \\copy floor on throwaway local servers',
    )
    .exitOverride()
    .configureOutput({ writeErr })
    .option('--size <size>', 'approximate on-disk size of the generated database', size, 1024 ** 3)
    .option('-j, --jobs <n>', 'parallel jobs / streams of every method', positiveInt, 2)
    .option('--runs <n>', 'interleaved rounds (every method once per round)', positiveInt, 5)
    .addOption(
      new Option(
        '--only <methods>',
        `comma-separated subset of: ${METHOD_KEYS.join(', ')} (default: ${DEFAULT_METHOD_KEYS.join(', ')})`,
      ).argParser(methodList),
    )
    .option('--single-table', 'one table of about --size, pgconvoy with --jobs 1, 2 and 4 against pg_dump -t')
    .option(
      '--many-tables <n>',
      'N small tables (a schema per 25 tables: primary key, index, foreign key, 200 rows each): pgconvoy clone against pg_dump -Fd (one process) + pg_restore -j',
      positiveInt,
    )
    .option('--verify', 'time pgconvoy verify of a clone against SELECT count(*) on both sides')
    .option('--http', 'also time pgconvoy clone --http 0 (dashboard and /metrics on) beside plain clone')
    .option(
      '--relay',
      'the relay against a native subscription: changes/s of a queued backlog, and lag at a fixed rate',
    )
    .option('--relay-changes <n>', 'changes queued for the throughput measurement', positiveInt, 100_000)
    .option('--relay-rate <n>', 'transactions per second of the lag measurement', positiveInt, 1000)
    .option('--relay-seconds <n>', 'how long the lag measurement writes', positiveInt, 30)
    .option('--relay-tables <n>', 'tables the changes are spread over', positiveInt, 4)
    .option('--relay-rows <n>', 'seed rows per table', positiveInt, 50_000)
    .option('--relay-writers <n>', 'sessions writing the backlog', positiveInt, 2)
    .addOption(
      new Option(
        '--relay-only <methods>',
        `comma-separated subset of: ${RELAY_METHODS.join(', ')}`,
      ).argParser(relayMethodList),
    )
    .option('--json', 'results as JSON on stdout (--relay)')
    .option('--source-major <n>', 'source server major (pg_dump must be at least this)', positiveInt, 15)
    .option('--target-major <n>', 'target server major (default 17 when available, else 15)', positiveInt)
    .addHelpText(
      'after',
      `
Examples:
  npm run bench                                   # about 1 GB, --jobs 2, 5 rounds
  npm run bench -- --size 50MB --runs 1           # a quick check
  npm run bench -- --size 1GB --single-table --only clone,dump
  npm run bench -- --size 1GB --runs 1 --only clone,clone-fdw   # COPY against clone --via fdw
  npm run bench -- --size 1GB --single-table --verify --runs 3
  npm run bench -- --many-tables 2000 --runs 1
  npm run bench -- --size 300MB --only clone --http --runs 3   # what the dashboard costs
  npm run bench -- --relay                        # relay against subscription: changes/s, lag at 1,000 tx/s
  npm run bench -- --relay --relay-changes 20000 --relay-seconds 10 --json   # a quick check`,
    );
  program.parse(args, { from: 'user' });
  const o = program.opts<{
    size: number;
    jobs: number;
    runs: number;
    only?: Set<MethodKey>;
    singleTable?: boolean;
    manyTables?: number;
    verify?: boolean;
    http?: boolean;
    sourceMajor: number;
    targetMajor?: number;
    relay?: boolean;
    relayChanges: number;
    relayRate: number;
    relaySeconds: number;
    relayTables: number;
    relayRows: number;
    relayWriters: number;
    relayOnly?: Set<'subscription' | 'relay'>;
    json?: boolean;
  }>();
  return {
    sizeBytes: o.size,
    jobs: o.jobs,
    runs: o.runs,
    only: o.only ?? new Set(DEFAULT_METHOD_KEYS),
    singleTable: Boolean(o.singleTable),
    manyTables: o.manyTables,
    verify: Boolean(o.verify),
    http: Boolean(o.http),
    sourceMajor: o.sourceMajor,
    targetMajor: o.targetMajor,
    relay: o.relay
      ? {
          changes: o.relayChanges,
          rate: o.relayRate,
          seconds: o.relaySeconds,
          tables: o.relayTables,
          rowsPerTable: o.relayRows,
          writers: o.relayWriters,
          only: o.relayOnly ?? new Set(RELAY_METHODS),
        }
      : undefined,
    json: Boolean(o.json),
  };
}
