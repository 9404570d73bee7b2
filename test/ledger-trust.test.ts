import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { isPlainTypeName } from '../src/ledger/job-row.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
  type CliResult,
} from './helpers/servers.js';
import { sleep } from '../src/util/wait.js';

describe("the target's ledger is not trusted with the source", () => {
  let server: LocalServer;
  before(async () => {
    server = await startServer(SYSTEM_MAJOR);
  });
  after(async () => server?.destroy());

  /** A planned (not copied) clone of one table; returns the connection arguments. */
  const planned = async () => {
    const src = await createDatabase(server, uniqueName('trust_src'));
    const dst = uniqueName('trust_dst');
    await server.sql(
      'CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO public.t SELECT generate_series(1, 100);',
      src,
    );
    const conn = ['--source', server.url(src), '--target', server.url(dst)];
    const plan = await runCli(['clone', ...conn, '--create-database', '--plan-only', '--run-dir', tempDir()]);
    assert.equal(plan.code, 0, plan.stderr);
    return { src, dst, conn };
  };

  test("SQL put in a job's column type is refused, and never runs on the source", async () => {
    const { src, dst, conn } = await planned();
    // A bystander session on the source, which the injected SQL would terminate.
    const bystander = new pg.Client({ connectionString: server.url(src) });
    bystander.on('error', () => undefined);
    await bystander.connect();
    try {
      const pid = (await bystander.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const chunk = {
        kind: 'key-range',
        column: 'id',
        columnType: `int AND pg_catalog.pg_terminate_backend(${pid})`,
        low: '1',
        includeNulls: true,
      };
      await server.sql(`UPDATE pgconvoy.jobs SET chunk = '${JSON.stringify(chunk)}'::jsonb`, dst);
      const res = await runCli(['worker', ...conn, '--jobs', '1', '--name', 'W']);
      assert.equal(res.code, 5, res.stderr + res.stdout);
      assert.match(
        res.stderr,
        /job \d+ in "pgconvoy"\."jobs" on the target is not valid: chunk\.columnType: not a plain type name/,
      );
      assert.match(res.stderr, /hint: the ledger was changed by something other than pgconvoy/);
      await bystander.query('SELECT 1'); // still alive: the injected call never ran
      const copied = await server.sql<{ n: string }>('SELECT count(*) AS n FROM public.t', dst);
      assert.equal(copied[0]!.n, '0');
    } finally {
      await bystander.end().catch(() => undefined);
    }
  });

  test('a block number that is not a non-negative integer is refused', async () => {
    const { dst, conn } = await planned();
    await server.sql(
      `UPDATE pgconvoy.jobs SET chunk = '{"kind":"block-range","fromBlock":"0,0)''::pg_catalog.tid OR (true"}'::jsonb`,
      dst,
    );
    const res = await runCli(['clone', ...conn, '--run-dir', tempDir()]);
    assert.equal(res.code, 5, res.stderr);
    assert.match(res.stderr, /chunk\.fromBlock: Expected number/);
  });

  test("status finds a worker's job when its long name makes the server cut application_name", async () => {
    const { dst, conn } = await planned();
    // The worker claims the job, then waits for this lock on the table it loads.
    const blocker = new pg.Client({ connectionString: server.url(dst) });
    await blocker.connect();
    const name = `copy-host-${'x'.repeat(60)}.eu-west-1.compute.internal`;
    let worker: Promise<CliResult> | undefined;
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE');
      worker = runCli(['worker', ...conn, '--jobs', '1', '--name', name]);
      let report:
        { counts: { running: number }; running: { job: { id: number }; worker: string }[] } | undefined;
      for (let i = 0; i < 100 && !(report && report.counts.running > 0); i++) {
        await sleep(200);
        const res = await runCli(['status', '--target', server.url(dst), '--json']);
        assert.equal(res.code, 0, res.stderr);
        report = JSON.parse(res.stdout) as typeof report;
      }
      assert.equal(report?.counts.running, 1, JSON.stringify(report));
      const jobs = await server.sql<{ id: string }>('SELECT id FROM pgconvoy.jobs', dst);
      assert.equal(report?.running[0]?.job.id, Number(jobs[0]!.id));
      assert.ok(name.startsWith(report?.running[0]?.worker.slice(0, 20) ?? '?'), report?.running[0]?.worker);
    } finally {
      await blocker.end();
      const done = await worker;
      assert.equal(done?.code, 0, done?.stderr);
    }
  });

  test('type names as format_type() prints them pass; anything else does not', () => {
    for (const ok of [
      'integer',
      'bigint',
      'character varying',
      'timestamp with time zone',
      'public.mood',
      '"My Schema"."My ""Type"""',
      '"char"',
      'text[]',
    ])
      assert.ok(isPlainTypeName(ok), ok);
    for (const bad of [
      'int); DROP TABLE x; --',
      'int AND true',
      'int OR pg_catalog.pg_sleep(1) IS NULL',
      '"a" ; drop "b"',
      'integer -- x',
      '',
      'Integer',
    ])
      assert.ok(!isPlainTypeName(bad), bad);
  });
});
