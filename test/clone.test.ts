import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { featureDatabaseSql } from './fixtures/feature-db.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
  tempDir,
} from './helpers/servers.js';
import { assertSameData, catalogFacts, userTables } from './helpers/compare.js';

const runDir = () => tempDir('pgconvoy-run-');

for (const sourceMajor of [SYSTEM_MAJOR, OLD_MAJOR]) {
  describe(`clone ${sourceMajor} → ${NEW_MAJOR}`, () => {
    let source: LocalServer;
    let target: LocalServer;
    const template = uniqueName('feature_tpl');
    before(async () => {
      [source, target] = await Promise.all([startServer(sourceMajor), startServer(NEW_MAJOR)]);
      await createDatabase(source, template);
      await source.sql(featureDatabaseSql(1500), template);
    });
    after(async () => Promise.all([source?.destroy(), target?.destroy()]));

    test('every table, index, constraint, trigger, sequence, view and large object arrives', async () => {
      const db = await createDatabase(source, uniqueName('feature'), template);
      const res = await runCli([
        'clone',
        '--verify',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--create-database',
        '--jobs',
        '3',
        '--run-dir',
        runDir(),
      ]);
      assert.equal(res.code, 0, res.stderr + res.stdout);
      assert.match(res.stdout, /clone complete/);
      assert.match(res.stdout, /verify: the target equals the source/);
      await assertSameData(source, db, target, db);
      const [s, t] = await Promise.all([catalogFacts(source, db), catalogFacts(target, db)]);
      assert.deepEqual(t, s);
      assert.equal(t.indexes_valid, true);
      assert.ok((t.triggers as string[]).includes('orders_count:O'), 'trigger present and enabled');
      assert.ok(
        (t.matviews as string[]).includes('sales.revenue_by_status:true'),
        'materialized view populated',
      );
      assert.ok((t.sequences as string[]).includes('public.invoice_no=424242'));
      // The trigger did not fire during the load: the audit log is the source's, not doubled.
      const audit = await target.sql<{ n: string }>('SELECT count(*) AS n FROM sales.order_audit', db);
      assert.equal(audit[0]!.n, '3000');
      // Function bodies are intact (a peer dropped every statement containing "GRANT ").
      const fn = await target.sql<{ src: string }>(
        `SELECT prosrc AS src FROM pg_proc WHERE proname = 'count_order'`,
        db,
      );
      assert.match(fn[0]!.src, /GRANT ALL ON nothing/);
      // Binary COPY where safe (enums, built-ins), text where the binary form carries OIDs (composites).
      const formats = await target.sql<{ t: string; f: string }>(
        `SELECT table_name AS t, copy_format AS f FROM pgconvoy.jobs`,
        db,
      );
      const format = new Map(formats.map((r) => [r.t, r.f]));
      assert.equal(format.get('orders'), 'binary');
      assert.equal(format.get('customers'), 'text');
      assert.equal(format.get('Order Items'), 'binary');
      // Running the same command again changes nothing.
      const again = await runCli([
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--run-dir',
        runDir(),
      ]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /10 already done/);
      await assertSameData(source, db, target, db);
    });
  });
}

describe('clone: interruption and bad input', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('kill_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    await source.sql(featureDatabaseSql(1000), template);
    // Enough rows that the copy is still going when it is killed.
    await source.sql(
      `CREATE TABLE public.big (id bigint PRIMARY KEY, payload text);
       INSERT INTO public.big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 300000) g;
       CREATE TABLE public.big2 (id bigint PRIMARY KEY, payload text);
       INSERT INTO public.big2 SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g;
       ANALYZE;`,
      template,
    );
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('killed with SIGKILL in the data phase: the same command finishes, no duplicate rows', async () => {
    const db = await createDatabase(source, uniqueName('kill'), template);
    const dir = runDir();
    const args = [
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--jobs',
      '1',
      '--run-dir',
      dir,
    ];
    let started = 0;
    const first = await runCli(args, {
      onSpawn: (child) => {
        child.stderr!.on('data', (d: Buffer) => {
          started += (d.toString().match(/ started /g) ?? []).length;
          if (started >= 2) child.kill('SIGKILL');
        });
      },
    });
    assert.equal(first.signal, 'SIGKILL');
    const ledger = await target.sql<{ state: string; n: string }>(
      `SELECT state, count(*) AS n FROM pgconvoy.jobs GROUP BY state ORDER BY state`,
      db,
    );
    const states = Object.fromEntries(ledger.map((r) => [r.state, Number(r.n)]));
    assert.ok(
      (states.done ?? 0) >= 1 && (states.pending ?? 0) >= 1,
      `killed mid-copy: ${JSON.stringify(states)}`,
    );
    // Nothing half-copied is visible: every table without a done job is empty.
    const second = await runCli(args);
    assert.equal(second.code, 0, second.stderr);
    await assertSameData(source, db, target, db);
    const dup = await target.sql<{ n: string }>(
      'SELECT count(*) - count(DISTINCT id) AS n FROM public.big',
      db,
    );
    assert.equal(dup[0]!.n, '0');
  });

  test('Ctrl-C (SIGINT) stops the copy at once: exit 130, the resume hint, the job left pending', async () => {
    const db = await createDatabase(source, uniqueName('sigint'), template);
    const args = [
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--jobs',
      '1',
      '--run-dir',
      runDir(),
    ];
    const res = await runCli(args, {
      onSpawn: (child) =>
        child.stderr!.on('data', (d: Buffer) => {
          if (/ started public\.big/.test(d.toString())) child.kill('SIGINT');
        }),
    });
    assert.equal(res.code, 130, res.stderr);
    assert.match(res.stderr, /pgconvoy: error: interrupted\n\s+hint: run the same command again to resume/);
    const big = await target.sql<{ state: string }>(
      `SELECT state FROM pgconvoy.jobs WHERE table_name = 'big'`,
      db,
    );
    assert.equal(big[0]!.state, 'pending');
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr);
    await assertSameData(source, db, target, db);
  });

  test('the target server restarts in the middle of the copy: the run recovers by itself', async () => {
    const db = await createDatabase(source, uniqueName('restart'), template);
    let restarted: Promise<void> | undefined;
    const res = await runCli(
      [
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--create-database',
        '--jobs',
        '2',
        '--run-dir',
        runDir(),
      ],
      {
        onSpawn: (child) =>
          child.stderr!.on('data', (d: Buffer) => {
            if (!restarted && / started public\.big/.test(d.toString())) restarted = target.restart('fast');
          }),
      },
    );
    await restarted;
    assert.ok(restarted, 'the target was restarted during the copy');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /transient failure/);
    await assertSameData(source, db, target, db);
  });

  test('a target table holding rows pgconvoy did not put there is refused; nothing counted as done', async () => {
    const db = await createDatabase(source, uniqueName('occupied'), template);
    // The target has the schema (from an earlier clone, ledger dropped) and one table holds a row of its own.
    const first = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(first.code, 0, first.stderr);
    const tables = await userTables(target, db);
    await target.sql(
      `DROP SCHEMA pgconvoy CASCADE; TRUNCATE ${tables.join(', ')} CASCADE; INSERT INTO public."MixedCase" VALUES (999, 'theirs');`,
      db,
    );
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--schema',
      'skip',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5, res.stderr);
    assert.match(
      res.stderr,
      /the target already has rows that pgconvoy did not copy, in 1 table\(s\): public\."MixedCase"/,
    );
    assert.match(res.stderr, /hint: .*--existing-rows truncate/);
    const done = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pgconvoy.jobs WHERE state = 'done'`,
      db,
    );
    assert.equal(done[0]!.n, '0');
  });

  test('a schema error stops the run with the statement and the server message; nothing half-applied', async () => {
    const db = await createDatabase(source, uniqueName('conflict'), template);
    await createDatabase(target, db);
    await target.sql('CREATE SCHEMA sales', db);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5, res.stderr);
    assert.match(
      res.stderr,
      /applying the schema \(pre-data\) to the target .* failed: schema "sales" already exists/,
    );
    assert.match(res.stderr, /statement: CREATE SCHEMA sales;/);
    const left = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'Audit Log') AND c.relkind = 'r'`,
      db,
    );
    assert.equal(left[0]!.n, '0', 'no table of the schema was created');
    const steps = await target.sql<{ n: string }>(`SELECT count(*) AS n FROM pgconvoy.steps`, db);
    assert.equal(steps[0]!.n, '0');
  });

  test('different column types on the target (int4 → int8, timestamp → timestamptz) use text COPY and keep every value', async () => {
    const db = await createDatabase(source, uniqueName('types'));
    await source.sql(
      `CREATE TABLE public.t (a integer, ts timestamp, n numeric); INSERT INTO public.t SELECT g, timestamp '2024-03-01 12:34:56.789' + g * interval '1 hour', g / 3.0 FROM generate_series(1, 500) g;`,
      db,
    );
    await createDatabase(target, db);
    await target.sql(`CREATE TABLE public.t (a bigint, ts timestamptz, n numeric)`, db);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--schema',
      'skip',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(
      res.stderr,
      /public\.t: text COPY \(column "a" is integer on the source and bigint on the target\)/,
    );
    // Both servers run in UTC, so a timestamp read as timestamptz keeps its wall-clock value.
    const q = `SET TimeZone = 'UTC'; SELECT count(*) AS n, md5(string_agg(a::text || to_char(ts, 'YYYY-MM-DD HH24:MI:SS.MS') || n::text, ',' ORDER BY a)) AS h FROM public.t`;
    const [a, b] = await Promise.all([
      source.sql<{ n: string; h: string }>(q, db),
      target.sql<{ n: string; h: string }>(q, db),
    ]);
    assert.equal(b[0]!.n, '500');
    assert.deepEqual(b[0], a[0]);
  });

  test('an unreachable target: a one-line error with a hint, exit 5', async () => {
    const res = await runCli([
      'clone',
      '--source',
      source.url(template),
      '--target',
      'postgresql://u:secret@127.0.0.1:1/x',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5);
    assert.match(res.stderr, /cannot connect to the target u@127\.0\.0\.1:1\/x: connection refused/);
    assert.doesNotMatch(res.stderr + res.stdout, /secret/);
  });

  test('no pg_dump new enough for the source: a clear error naming the majors', async () => {
    const newer = await startServer(NEW_MAJOR);
    try {
      const res = await runCli([
        'clone',
        '--source',
        newer.url(),
        '--target',
        target.url(uniqueName('x')),
        '--create-database',
        '--run-dir',
        runDir(),
      ]);
      assert.equal(res.code, 3, res.stderr);
      assert.match(res.stderr, /pg_dump/);
      assert.match(res.stderr, /17/);
      assert.match(res.stderr, /hint: .*--pg-bin/);
    } finally {
      await newer.destroy();
    }
  });

  test('--dry-run prints the plan and touches nothing', async () => {
    const db = await createDatabase(source, uniqueName('dry'), template);
    const res = await runCli(['clone', '--source', source.url(db), '--target', target.url(db), '--dry-run']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /dry run: .*nothing will be touched/);
    const lines = res.stdout.split('\n');
    const first = lines.findIndex((l) => /^\s+1\s+public\.big\s/.test(l));
    assert.ok(first > 0, 'largest table first');
    const exists = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_database WHERE datname = $1`,
      'postgres',
      [db],
    );
    assert.equal(exists[0]!.n, '0');
  });
});
