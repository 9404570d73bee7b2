import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
  tempDir,
} from './helpers/servers.js';
import { assertSameData } from './helpers/compare.js';

const runDir = () => tempDir('pgconvoy-run-');

describe('plan-only, workers on several machines, status', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('workers_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    const tables = Array.from(
      { length: 6 },
      (_, i) => `
      CREATE TABLE public.t${i} (id bigint PRIMARY KEY, payload text);
      INSERT INTO public.t${i} SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, ${40000 + i * 10000}) g;`,
    );
    await source.sql(tables.join('\n') + 'ANALYZE;', template);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('two workers share a plan: every job done exactly once; a SIGKILLed worker releases its job', async () => {
    const db = await createDatabase(source, uniqueName('workers'), template);
    const conn = ['--source', source.url(db), '--target', target.url(db)];
    const plan = await runCli(['clone', ...conn, '--create-database', '--plan-only', '--run-dir', runDir()]);
    assert.equal(plan.code, 0, plan.stderr);
    const pending = await runCli(['status', '--target', target.url(db), '--json']);
    const before = JSON.parse(pending.stdout) as { counts: { pending: number; total: number } };
    assert.deepEqual([before.counts.pending, before.counts.total], [6, 6]);
    const empty = await target.sql<{ n: string }>('SELECT count(*) AS n FROM public.t0', db);
    assert.equal(empty[0]!.n, '0', 'plan-only copies nothing');

    // Worker A is killed right after its first job, in the middle of its second one.
    let killedAfter = 0;
    const a = runCli(['worker', ...conn, '--jobs', '1', '--name', 'A'], {
      onSpawn: (child) =>
        child.stderr!.on('data', (d: Buffer) => {
          if (/A-1: /.test(d.toString()) && killedAfter++ === 0) child.kill('SIGKILL');
        }),
    });
    const b = runCli(['worker', ...conn, '--jobs', '1', '--name', 'B']);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.signal, 'SIGKILL');
    // B waits for jobs held by others, and takes over the one A's death released.
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /no pending job left/);
    const c = await runCli(['worker', ...conn, '--jobs', '2', '--name', 'C']);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /worker finished: 0 job\(s\)/);

    const jobs = await target.sql<{ table_name: string; state: string; rows: string; done_by: string }>(
      'SELECT table_name, state, rows, done_by FROM pgconvoy.jobs ORDER BY table_name',
      db,
    );
    assert.equal(jobs.length, 6);
    assert.ok(
      jobs.every((j) => j.state === 'done'),
      JSON.stringify(jobs),
    );
    assert.ok(
      jobs.some((j) => j.done_by.startsWith('A-')),
      'A finished a job before it was killed',
    );
    assert.ok(jobs.some((j) => j.done_by.startsWith('B-')));
    for (const j of jobs) {
      const n = await target.sql<{ n: string; d: string }>(
        `SELECT count(*) AS n, count(DISTINCT id) AS d FROM public.${j.table_name}`,
        db,
      );
      assert.equal(n[0]!.n, j.rows, `ledger and target agree for ${j.table_name}`);
      assert.equal(n[0]!.d, n[0]!.n, `no duplicate in ${j.table_name}`);
    }
    await assertSameData(source, db, target, db);
    const status = await runCli(['status', '--target', target.url(db)]);
    assert.match(status.stdout, /jobs: 6 done, 0 running, 0 failed, 0 pending \(of 6\)/);

    // The same clone command then finishes what only one process should do: indexes, sequences, ANALYZE.
    const finish = await runCli(['clone', ...conn, '--run-dir', runDir()]);
    assert.equal(finish.code, 0, finish.stderr);
    assert.match(finish.stderr, /6 already done/);
    const pk = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE i.indisprimary AND c.relname LIKE 't_'`,
      db,
    );
    assert.equal(pk[0]!.n, '6');
  });

  test('a worker without a plan says what to run first', async () => {
    const db = await createDatabase(target, uniqueName('noplan'));
    const res = await runCli(['worker', '--source', source.url(template), '--target', target.url(db)]);
    assert.equal(res.code, 5);
    assert.match(res.stderr, /the target has no pgconvoy plan/);
    assert.match(res.stderr, /hint: .*--plan-only/);
  });
});
