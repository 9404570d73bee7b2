/**
 * Tests of the benchmark's parts, never of its timings: option parsing, the statistics and
 * report text (from made-up figures), and on real servers that the dataset has the promised
 * shape and that every method really copies every row.
 *
 * Run: npm run build --silent && node --test --test-reporter=spec dist/bench/bench.test.js
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { LocalServer, SANDBOX_PASSWORD } from '../src/sandbox/local-server.js';
import { findPgTools } from '../src/schema/pg-tools.js';
import { parseBenchArgs } from './args.js';
import { countRows, createDataset, type Dataset } from './dataset.js';
import { chooseMethods, cloneMethod } from './methods.js';
import { benchVerify } from './verify-bench.js';
import type { BenchContext, Method, MethodResult } from './method.js';
import { median, renderReport, stats, type BenchReport } from './report.js';

describe('bench options', () => {
  test('defaults: about 1 GB, 2 jobs, 5 rounds, every method', () => {
    const o = parseBenchArgs([]);
    assert.equal(o.sizeBytes, 1024 ** 3);
    assert.equal(o.jobs, 2);
    assert.equal(o.runs, 5);
    assert.deepEqual([...o.only], ['clone', 'dump', 'dump-gz', 'floor']);
    assert.equal(o.singleTable, false);
  });

  test('sizes, subsets and the single-table case', () => {
    const o = parseBenchArgs(['--size', '300MB', '--jobs', '4', '--only', 'clone,floor', '--single-table']);
    assert.equal(o.sizeBytes, 300 * 1024 ** 2);
    assert.equal(o.jobs, 4);
    assert.deepEqual([...o.only], ['clone', 'floor']);
    assert.equal(o.singleTable, true);
  });

  test('--http: clone is timed once more with its dashboard on', () => {
    const o = parseBenchArgs(['--only', 'clone', '--http']);
    assert.equal(o.http, true);
    assert.equal(parseBenchArgs([]).http, false);
    const methods = chooseMethods({
      singleTable: false,
      jobs: 2,
      only: o.only,
      chunkFlags: undefined,
      http: o.http,
    });
    assert.deepEqual(
      methods.map((m) => m.id),
      ['clone', 'clone-http'],
    );
    assert.match(methods[1]!.commands[0]!, / --http 0$/);
  });

  test('bad values are refused', () => {
    for (const args of [
      ['--only', 'clone,rsync'],
      ['--size', '10kB'],
      ['--runs', '0'],
    ]) {
      let message = '';
      assert.throws(
        () => parseBenchArgs(args, (text) => (message += text)),
        (e: unknown) => e instanceof CommanderError,
        args.join(' '),
      );
      assert.match(message, /error: option/);
    }
  });
});

describe('bench statistics and report', () => {
  test('median, min and max', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.deepEqual(stats([5, 1, 3]), { n: 3, median: 3, min: 1, max: 5 });
    assert.equal(stats([]), undefined);
  });

  test('ratios to pgconvoy, data phase against the floor, failures left out and listed', () => {
    const ok = (seconds: number, extra: Partial<MethodResult> = {}): MethodResult => ({
      seconds,
      ok: true,
      steps: [],
      ...extra,
    });
    const pgconvoy = (seconds: number, copySeconds: number, rssKb: number, cpu: number) =>
      ok(seconds, {
        pgconvoy: {
          resources: { peakRssKb: rssKb, cpuSeconds: cpu, source: 'rusage' },
          polled: undefined,
          copySeconds,
          bytes: 100 * 1024 ** 2,
          phases: [{ phase: 'copy', seconds: copySeconds }],
        },
      });
    const runs: [string, MethodResult][] = [
      ['clone', pgconvoy(2, 2, 100 * 1024, 1.5)],
      ['dump', ok(3)],
      ['floor', ok(1)],
      ['clone', pgconvoy(4, 2, 120 * 1024, 2.5)],
      ['dump', { seconds: 99, ok: false, error: 'pg_restore exited with code 1', steps: [] }],
      ['floor', ok(1)],
    ];
    const report: BenchReport = {
      startedAt: '2024-01-01T00:00:00.000Z',
      options: {
        sizeBytes: 1024 ** 3,
        jobs: 2,
        runs: 2,
        only: ['clone', 'dump', 'floor'],
        singleTable: false,
        sourceMajor: 15,
        targetMajor: 17,
      },
      machine: { cpus: 2, memoryBytes: 8 * 1024 ** 3, node: 'v20', platform: 'linux' },
      servers: { source: 'PostgreSQL 15.1', target: 'PostgreSQL 17.1', notes: [] },
      binDir: '/usr/lib/postgresql/15/bin',
      notes: [],
      dataset: {
        database: 'bench_source',
        singleTable: false,
        tables: [
          { schema: 'public', name: 'events', rows: 10, bytes: 1024 ** 3, copyTextBytes: 200 * 1024 ** 2 },
        ],
        databaseBytes: 1024 ** 3,
        generateSeconds: 1,
      },
      methods: [
        { id: 'clone', label: 'pgconvoy clone -j2', short: 'pgconvoy', jobs: 2, commands: ['node …'] },
        {
          id: 'dump',
          label: 'pg_dump -Z0 + pg_restore -j2',
          short: 'dump -Z0',
          jobs: 2,
          commands: ['pg_dump …'],
        },
        { id: 'floor', label: 'floor', short: 'floor', jobs: 2, commands: ['psql …'] },
      ],
      runs: runs.map(([method, result], i) => ({
        round: Math.floor(i / 3) + 1,
        method,
        targetDatabase: `db${i}`,
        startedAt: '2024-01-01T00:00:00.000Z',
        loadAverage: 1,
        result,
      })),
    };
    const text = renderReport(report);
    assert.match(text, /pgconvoy clone -j2 +2\/2 +3\.00 s +2\.00 s +4\.00 s +1\.00× \(reference\)/);
    // The failed dump run is not in its statistics: median of [3] over pgconvoy's 3.
    assert.match(text, /pg_dump -Z0 \+ pg_restore -j2 +1\/2 +3\.00 s .* dump -Z0 \/ pgconvoy = 1\.00×/);
    assert.match(text, /floor \/ pgconvoy = 0\.33×/);
    assert.match(text, /peak RSS median 110 MB \(max 120 MB\), CPU of the pgconvoy process median 2\.00 s/);
    assert.match(
      text,
      /pgconvoy copy phase median 2\.00 s = 100 MB\/s .* floor 1\.00 s = 200 MB\/s; pgconvoy reaches 50% of the floor/,
    );
    assert.match(text, /FAILED round 2 dump: pg_restore exited with code 1/);
  });
});

describe('bench dataset and methods on real servers', () => {
  let source: LocalServer;
  let target: LocalServer;
  let dataset: Dataset;
  let ctx: BenchContext;
  let workDir: string;

  before(async () => {
    [source, target] = await Promise.all([
      LocalServer.start({ major: 15 }),
      LocalServer.start({ major: 17 }),
    ]);
    dataset = await createDataset(source, 'bench_source', {
      sizeBytes: 3 * 1024 ** 2,
      singleTable: false,
      log: () => undefined,
    });
    workDir = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-bench-test-'));
    const url = (s: LocalServer, db: string) => `postgresql://postgres@127.0.0.1:${s.port}/${db}`;
    ctx = {
      sourceUrl: url(source, 'bench_source'),
      targetUrl: (db) => url(target, db),
      password: SANDBOX_PASSWORD,
      binDir: findPgTools({ sourceMajor: 15, pathEnv: '' }).dir,
      cliPath: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js'),
      dataset,
      workDir,
    };
  });

  after(async () => {
    await Promise.all([source?.destroy(), target?.destroy()]);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  test('the dataset: three tables of the promised shape, sized near the request', async () => {
    assert.deepEqual(dataset.tables.map((t) => t.name).sort(), ['audit_log', 'documents', 'events']);
    const counts = await countRows(source, 'bench_source', dataset.tables);
    for (const t of dataset.tables) {
      assert.equal(counts.get(`public.${t.name}`), t.rows, t.name);
      assert.ok(t.copyTextBytes > 0, t.name);
    }
    const shape = await source.sql<{ relname: string; pk: boolean; fks: number; indexes: number }>(
      `SELECT c.relname,
              EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS pk,
              (SELECT count(*) FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f')::int AS fks,
              (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid)::int AS indexes
       FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
       ORDER BY c.relname`,
      'bench_source',
    );
    assert.deepEqual(shape, [
      { relname: 'audit_log', pk: false, fks: 0, indexes: 1 },
      { relname: 'documents', pk: true, fks: 1, indexes: 3 },
      { relname: 'events', pk: true, fks: 0, indexes: 2 },
    ]);
    // Calibrated, not exact: within a factor of two of 3 MB.
    assert.ok(dataset.databaseBytes > 0);
    const tablesBytes = dataset.tables.reduce((s, t) => s + t.bytes, 0);
    assert.ok(
      tablesBytes > 1.5 * 1024 ** 2 && tablesBytes < 6 * 1024 ** 2,
      `tables hold ${tablesBytes} bytes`,
    );
  });

  const methods: Method[] = chooseMethods({
    singleTable: false,
    jobs: 2,
    only: new Set(['clone', 'dump', 'dump-gz', 'floor']),
    chunkFlags: undefined,
  });
  for (const method of methods) {
    test(`${method.id} copies every row`, async () => {
      const db = `t_${method.id.replace(/-/g, '_')}`;
      await target.sql(`CREATE DATABASE ${db}`);
      const result = await method.run(ctx, db);
      assert.equal(result.error, undefined);
      assert.equal(result.ok, true);
      const counts = await countRows(target, db, dataset.tables);
      for (const t of dataset.tables) assert.equal(counts.get(`public.${t.name}`), t.rows, t.name);
      const [idx] = await target.sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace = 'public'::regnamespace`,
        db,
      );
      // Everything but the floor rebuilds the six indexes; the floor only moves rows.
      assert.equal(idx?.n, method.key === 'floor' ? 0 : 6);
      if (method.key === 'clone') {
        const p = result.pgconvoy;
        assert.ok(p?.resources && p.resources.peakRssKb > 10_000, 'peak RSS read');
        assert.ok(p.resources.cpuSeconds > 0, 'CPU seconds read');
        assert.equal(p.resources.source, 'rusage');
        assert.ok(p.polled && p.polled.peakRssKb > 0, '/proc polled');
        assert.ok(p.phases.some((x) => x.phase === 'copy') && p.copySeconds !== undefined);
        assert.ok((p.bytes ?? 0) > 0);
      }
      if (method.key === 'dump' || method.key === 'dump-gz')
        assert.deepEqual(
          result.steps.map((s) => s.name),
          ['pg_dump', 'pg_restore'],
        );
      await target.sql(`DROP DATABASE ${db} WITH (FORCE)`);
    });
  }

  test('the verify benchmark times verify of a clone against count(*) and says by how much', async () => {
    const db = 't_verify';
    await target.sql(`CREATE DATABASE ${db}`);
    const clone = await cloneMethod('clone', 2, []).run(ctx, db);
    assert.equal(clone.ok, true, clone.error);
    const lines: string[] = [];
    const once = () =>
      benchVerify({ ctx, source, target, targetDb: db, jobs: 2, runs: 1, log: (l) => lines.push(l) });
    const result = await once();
    assert.equal(result.ok, true, lines.join('\n'));
    assert.match(result.text, /count\(\*\) on source \+ target +\d+\.\d\d s/);
    assert.match(result.text, /pgconvoy verify --jobs 2 +\d+\.\d\d s +\(\d+\.\d\d× count\(\*\)/);
    // A verify that finds a difference is reported as failed, not timed as if it passed.
    await target.sql(
      `DELETE FROM public.audit_log WHERE ctid = (SELECT min(ctid) FROM public.audit_log)`,
      db,
    );
    const differing = await once();
    assert.equal(differing.ok, false);
    assert.match(lines.at(-1) ?? '', /FAILED, exit 6/);
    await target.sql(`DROP DATABASE ${db} WITH (FORCE)`);
  });
});
