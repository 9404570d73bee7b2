/**
 * pg_dump's filters (-n/-N/-t/-T/--exclude-table-data/--filter) on clone, verify and start,
 * checked against what the target holds, counted by SQL on both sides (not by pgconvoy).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  createDatabase,
  NEW_MAJOR,
  runCli,
  startServer,
  SYSTEM_MAJOR,
  tempDir,
  uniqueName,
} from './helpers/servers.js';

const SOURCE_SQL = `
CREATE SCHEMA sales; CREATE SCHEMA audit; CREATE SCHEMA "Mixed";
CREATE TABLE sales.orders (id int PRIMARY KEY, v text);
INSERT INTO sales.orders SELECT g, 'o' || g FROM generate_series(1, 200) g;
CREATE TABLE sales.orders_archive (id int PRIMARY KEY, v text);
INSERT INTO sales.orders_archive SELECT g, 'a' || g FROM generate_series(1, 50) g;
CREATE TABLE sales.customers (id serial PRIMARY KEY, name text);
INSERT INTO sales.customers (name) SELECT 'c' || g FROM generate_series(1, 30) g;
CREATE TABLE audit.log (id int PRIMARY KEY, msg text);
INSERT INTO audit.log SELECT g, 'm' || g FROM generate_series(1, 40) g;
CREATE TABLE "Mixed"."Big Table" (id int PRIMARY KEY);
INSERT INTO "Mixed"."Big Table" SELECT generate_series(1, 10);
CREATE TABLE public.events (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE public.events_2023 PARTITION OF public.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO public.events SELECT g, DATE '2023-06-01' + (g * 7) FROM generate_series(1, 60) g;
CREATE TABLE public.notes (id int PRIMARY KEY, t text);
INSERT INTO public.notes SELECT g, 'n' || g FROM generate_series(1, 20) g;
CREATE TABLE public.keyless (v int);
INSERT INTO public.keyless SELECT generate_series(1, 5);
ANALYZE;`;

const TABLES = [
  'sales.orders',
  'sales.orders_archive',
  'sales.customers',
  'audit.log',
  '"Mixed"."Big Table"',
  'public.events_2023',
  'public.events_2024',
  'public.notes',
];

/** Row count of each table, or null when the table does not exist: plain SQL, no pgconvoy. */
async function counts(server: LocalServer, db: string): Promise<Record<string, number | null>> {
  const out: Record<string, number | null> = {};
  for (const t of TABLES) {
    const [exists] = await server.sql<{ r: string | null }>(`SELECT to_regclass($1)::text AS r`, db, [t]);
    out[t] = exists?.r
      ? Number((await server.sql<{ n: string }>(`SELECT count(*) AS n FROM ${t}`, db))[0]?.n)
      : null;
  }
  return out;
}

describe('filters: clone, verify and start with pg_dump patterns', { timeout: 240_000 }, () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('filter_tpl');
  let all: Record<string, number | null>;
  const dir = tempDir();

  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    await source.sql(SOURCE_SQL, template);
    all = await counts(source, template);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  /** clone, then verify, with the same filter flags; returns the target's counts. */
  async function cloneAndVerify(flags: string[]): Promise<Record<string, number | null>> {
    const db = uniqueName('filter');
    await Promise.all([createDatabase(source, db, template), createDatabase(target, db)]);
    const conn = ['--source', source.url(db), '--target', target.url(db)];
    const cloned = await runCli(['clone', ...conn, '--run-dir', path.join(dir, db), '-q', ...flags]);
    assert.equal(cloned.code, 0, cloned.stderr + cloned.stdout);
    const verified = await runCli(['verify', ...conn, ...flags]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    return counts(target, db);
  }

  test('-n with -T and --exclude-table-data: the schema, minus a table, one table without rows', async () => {
    const got = await cloneAndVerify([
      '-n',
      'sales',
      '-T',
      'sales.*_archive',
      '--exclude-table-data',
      'sales.cust?mers',
    ]);
    assert.deepEqual(got, {
      ...Object.fromEntries(TABLES.map((t) => [t, null])),
      'sales.orders': all['sales.orders'],
      'sales.customers': 0,
    });
  });

  test('-N and -T leave out schemas (quoted, wildcard) and a table; the rest is whole', async () => {
    const got = await cloneAndVerify(['-N', 'audit', '-N', '"Mix"*', '-T', 'notes']);
    assert.deepEqual(got, { ...all, 'audit.log': null, '"Mixed"."Big Table"': null, 'public.notes': null });
  });

  test('--filter FILE: pg_dump 17 rules, a partitioned table with its partitions, a quoted name', async () => {
    const file = path.join(dir, 'rules.filter');
    writeFileSync(
      file,
      [
        '# tables to move',
        'include table public.events',
        'include table "Mixed"."Big "*   # quoted part literal, then a wildcard',
        '',
        'exclude table_data public.events_2023',
      ].join('\n'),
    );
    const got = await cloneAndVerify(['--filter', file]);
    assert.deepEqual(got, {
      ...Object.fromEntries(TABLES.map((t) => [t, null])),
      'public.events_2023': 0,
      'public.events_2024': all['public.events_2024'],
      '"Mixed"."Big Table"': all['"Mixed"."Big Table"'],
    });
  });

  test('a pattern that matches nothing is an error naming it, before anything is written', async () => {
    const db = uniqueName('filter_none');
    await Promise.all([createDatabase(source, db, template), createDatabase(target, db)]);
    const conn = ['--source', source.url(db), '--target', target.url(db)];
    const clone = await runCli([
      'clone',
      ...conn,
      '--run-dir',
      path.join(dir, db),
      '-n',
      'sales',
      '-T',
      'sales.nope*',
    ]);
    assert.equal(clone.code, 2, clone.stderr);
    assert.match(clone.stderr, /nothing in the source matches table pattern "sales\.nope\*"/);
    const [tables] = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'sales'`,
      db,
    );
    assert.equal(tables?.n, '0');
    // Quoted: no folding to lower case, so it is not audit.
    const verify = await runCli(['verify', ...conn, '-N', '"Audit"']);
    assert.equal(verify.code, 2, verify.stderr);
    assert.match(verify.stderr, /schema pattern ""Audit""/);
    const file = path.join(dir, 'bad.filter');
    writeFileSync(file, 'include table sales.orders\ninclude function f\n');
    const bad = await runCli(['verify', ...conn, '--filter', file]);
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /bad\.filter:2: "include function f"/);
  });

  test('start: the publication holds only the included tables', async () => {
    const db = uniqueName('filter_start');
    await Promise.all([createDatabase(source, db, template), createDatabase(target, db)]);
    const conn = ['--source', source.url(db), '--target', target.url(db)];
    const started = await runCli([
      'start',
      ...conn,
      '--run-dir',
      path.join(dir, db),
      '-q',
      '-t',
      'sales.*',
      '--exclude-table-data',
      'sales.orders_archive',
    ]);
    assert.equal(started.code, 0, started.stderr + started.stdout);
    const published = await source.sql<{ t: string }>(
      `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables ORDER BY 1`,
      db,
    );
    assert.deepEqual(
      published.map((r) => r.t),
      ['sales.customers', 'sales.orders'],
    );
    const got = await counts(target, db);
    assert.equal(got['sales.orders'], all['sales.orders']);
    assert.equal(got['sales.orders_archive'], 0);
    assert.equal(got['audit.log'], null);
    const down = await runCli(['teardown', ...conn]);
    assert.equal(down.code, 0, down.stderr + down.stdout);
  });

  test('start -T/-N, then status and cutover follow the same tables: an excluded key-less table is not copied', async () => {
    const db = uniqueName('filter_cut');
    await Promise.all([createDatabase(source, db, template), createDatabase(target, db)]);
    // The operator's own table of that name on the target: cutover must leave it alone.
    await target.sql('CREATE TABLE public.keyless (v int); INSERT INTO public.keyless VALUES (-1)', db);
    const conn = ['--source', source.url(db), '--target', target.url(db)];
    const flags = ['-T', 'public.keyless', '-N', 'audit'];
    const started = await runCli(['start', ...conn, '--run-dir', path.join(dir, db), '-q', ...flags]);
    assert.equal(started.code, 0, started.stderr + started.stdout);
    await source.sql(
      `INSERT INTO public.keyless VALUES (6); INSERT INTO sales.orders VALUES (1000, 'late');
       INSERT INTO audit.log VALUES (1000, 'late')`,
      db,
    );
    // The excluded schema is not "missing on the target" for status.
    const status = await runCli(['status', ...conn, '--json']);
    assert.equal(status.code, 0, status.stderr + status.stdout);
    const online = (JSON.parse(status.stdout) as { online: { drift: unknown[]; warnings: string[] } }).online;
    assert.deepEqual([online.drift, online.warnings], [[], []]);
    const cutover = await runCli(['cutover', ...conn, '--json']);
    assert.equal(cutover.code, 0, cutover.stderr + cutover.stdout);
    const result = JSON.parse(cutover.stdout) as { copiedTables: unknown[]; verify: { ok: boolean } };
    assert.deepEqual([result.copiedTables, result.verify.ok], [[], true]);
    const kept = await target.sql<{ v: number }>('SELECT v FROM public.keyless', db);
    assert.deepEqual(
      kept.map((r) => r.v),
      [-1],
    );
    const got = await counts(target, db);
    assert.deepEqual([got['sales.orders'], got['audit.log']], [(all['sales.orders'] ?? 0) + 1, null]);
  });
});
