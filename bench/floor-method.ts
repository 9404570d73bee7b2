/**
 * The floor: the cost of only moving the bytes. Tables are pre-created on the target
 * without indexes or constraints (pg_dump --section=pre-data, untimed), then per table
 * `psql -c '\copy t to stdout' | psql -c '\copy t from stdin'`, N tables at a time. Nothing
 * else: no indexes, no constraints, no sequences, no ANALYZE.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { runLimited } from '../src/util/pool.js';
import { qualifiedName } from '../src/util/sql.js';
import { runMeasured } from './measure.js';
import { failure, toolEnv, type Method, type MethodResult } from './method.js';

const PSQL = ['-X', '-q', '-v', 'ON_ERROR_STOP=1'];
/** psql → psql through a pipe; pipefail makes either side's failure the pipeline's. */
const PIPE = 'set -o pipefail; "$1" "${@:6}" -d "$2" -c "$4" | "$1" "${@:6}" -d "$3" -c "$5"';

export function floorMethod(id: string, streams: number): Method {
  return {
    id,
    key: 'floor',
    short: 'floor',
    label: `floor: psql \\copy | psql \\copy, ${streams} stream${streams > 1 ? 's' : ''}`,
    jobs: streams,
    commands: [
      `untimed: pg_dump --schema-only --section=pre-data -f <dir>/pre-data.sql -d <source>; psql ${PSQL.join(' ')} -d <target> -f <dir>/pre-data.sql`,
      `timed, per table, ${streams} at a time: psql ${PSQL.join(' ')} -d <source> -c '\\copy public.t to stdout' | psql ${PSQL.join(' ')} -d <target> -c '\\copy public.t from stdin'`,
    ],
    async run(ctx, targetDb) {
      const env = toolEnv(ctx);
      const target = ctx.targetUrl(targetDb);
      const psql = path.join(ctx.binDir, 'psql');
      const dir = path.join(ctx.workDir, `floor-${targetDb}`);
      mkdirSync(dir, { recursive: true });
      try {
        const file = path.join(dir, 'pre-data.sql');
        const schema = await runMeasured(
          path.join(ctx.binDir, 'pg_dump'),
          ['--schema-only', '--section=pre-data', '-f', file, '-d', ctx.sourceUrl],
          { env },
        );
        const apply =
          schema.code === 0 ? await runMeasured(psql, [...PSQL, '-d', target, '-f', file], { env }) : schema;
        const setupError =
          failure(schema, 'pg_dump --section=pre-data') ?? failure(apply, 'psql -f pre-data.sql');
        if (setupError) return { seconds: 0, ok: false, error: setupError, steps: [] };

        const started = performance.now();
        const steps: MethodResult['steps'] = [];
        const errors: string[] = [];
        await runLimited(ctx.dataset.tables, streams, async (t) => {
          const name = qualifiedName(t.schema, t.name);
          const run = await runMeasured(
            'bash',
            [
              '--noprofile',
              '--norc',
              '-c',
              PIPE,
              'floor',
              psql,
              ctx.sourceUrl,
              target,
              `\\copy ${name} to stdout`,
              `\\copy ${name} from stdin`,
              ...PSQL,
            ],
            { env },
          );
          steps.push({ name: t.name, seconds: run.seconds });
          const error = failure(run, `copy of ${name}`);
          if (error) errors.push(error);
        });
        const seconds = (performance.now() - started) / 1000;
        return {
          seconds,
          ok: errors.length === 0,
          ...(errors.length ? { error: errors.join('; ') } : {}),
          steps,
          streams,
        };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
