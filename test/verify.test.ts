/**
 * pgconvoy verify against real servers: a 13 and a 15 source, a 17 target. Each source
 * database is built once as a template; its target twin is made by a genuine copy path
 * (pg_dump | psql) once into a target template; every test gets fresh copies of both
 * (CREATE DATABASE ... TEMPLATE), changes the target, and checks that verify finds exactly
 * that change, where it is, and nothing else.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { resolveConnection } from '../src/connect/resolve.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { findPgTools } from '../src/schema/pg-tools.js';
import { columnHash } from '../src/verify/row-hash.js';
import { checksumSql, rowBucketSql, type RowShape } from '../src/verify/row-sql.js';
import { quoteLiteral } from '../src/util/sql.js';
import { filterFromFlags, parsePattern } from '../src/inventory/table-filter.js';
import type { RowDifference, TableResult, VerifyEvent, VerifyReport } from '../src/verify/types.js';
import { verifyDatabases } from '../src/verify/verify-databases.js';
import { featureDatabaseSql, FEATURE_TABLES } from './fixtures/feature-db.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
} from './helpers/servers.js';

// Extras on top of the feature database: a float at 0.1 exactly, a table whose primary
// key is text (no integer split column: compared by hash buckets, keyed), and a table with a
// column of every kind verify hashes differently (row-hash.ts), with edge values: the same
// values must hash the same on every major.
const EXTRAS = `
UPDATE public."select" SET ratio = 0.1 WHERE "from" = 7;
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.kinds (
  id int PRIMARY KEY, b boolean, i2 smallint, i8 bigint, o oid, t text, vc varchar(20), ch char(5),
  ts timestamp, tstz timestamptz, d date, tm time, ttz timetz, u uuid, f4 real, f8 double precision,
  n numeric, iv interval, j jsonb, bin bytea, ip inet, arr int[], m public.mood);
INSERT INTO public.kinds
SELECT g, g % 3 = 0, (g % 32000)::smallint, g * 2147483659::bigint, (g * 7)::oid, 'text ' || g, 'vc ' || g,
       'c' || (g % 100), timestamp '2020-01-01' + g * interval '1 hour 1 second',
       timestamptz '2020-01-01 00:00+00' + g * interval '1 minute 1 microsecond', date '2000-01-01' + g,
       time '00:00' + g * interval '1 second', timetz '12:00+02' + g * interval '1 minute', md5(g::text)::uuid,
       (g / 7.0)::real, g / 7.0::float8, g / 7.0, g * interval '1 day 1 hour',
       jsonb_build_object('g', g, 'x', g / 4.0), decode(md5(g::text), 'hex'),
       ('10.0.' || (g % 256) || '.' || (g / 256 % 256))::inet, ARRAY[g, g + 1],
       (ARRAY['sad', 'ok', 'happy']::public.mood[])[g % 3 + 1]
FROM generate_series(1, 300) g;
INSERT INTO public.kinds VALUES
  (1000, false, -32768, -9223372036854775808, 0, '', '', '', '-infinity', 'infinity', '-infinity', '24:00',
   '00:00+14', '00000000-0000-0000-0000-000000000000', '-0', 'NaN', 'NaN', '-178000000 years', '{}', '',
   '::1', '{}', 'sad'),
  (1001, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL);
CREATE TABLE public.codes (code text PRIMARY KEY, label text, weight double precision);
INSERT INTO public.codes
SELECT 'C-' || lpad(g::text, 4, '0'), CASE WHEN g % 3 = 0 THEN NULL ELSE 'label ' || g END, g / 3.0
FROM generate_series(1, 600) g;
ANALYZE;
`;

const AUDIT_COLUMNS: [string, string][] = [
  ['happened_at', 'timestamptz'],
  ['actor', 'text'],
  ['payload', 'jsonb'],
];
const CODES_COLUMNS: [string, string][] = [
  ['code', 'text'],
  ['label', 'text'],
  ['weight', 'float8'],
];

/** How verify sees a table whose columns have these pg_catalog types on both sides. */
function shapeOf(
  schema: string,
  name: string,
  columns: [string, string][],
  key: string[] | undefined,
): RowShape {
  return {
    table: { schema, name },
    hashed: columns.map(([c, type]) => ({ name: c, type, hash: columnHash(type, type), notNull: false })),
    key: key?.map((k) => ({ name: k, type: columns.find(([c]) => c === k)?.[1] ?? 'text' })),
    convert: false,
  };
}

/** pg_dump of the source piped into psql on the target: a copy made the way people do it. */
async function dumpInto(sourceUrl: string, targetUrl: string): Promise<void> {
  const tools = findPgTools({ sourceMajor: SYSTEM_MAJOR, pathEnv: process.env.PATH ?? '' });
  const dump = spawn(tools.pgDump, ['--no-owner', sourceUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  const psql = spawn(path.join(tools.dir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', targetUrl], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  dump.stdout.pipe(psql.stdin);
  let errors = '';
  dump.stderr.on('data', (d: Buffer) => (errors += d.toString()));
  psql.stderr.on('data', (d: Buffer) => (errors += d.toString()));
  const exit = (p: ReturnType<typeof spawn>) => new Promise<number | null>((r) => p.on('close', r));
  const [a, b] = await Promise.all([exit(dump), exit(psql)]);
  assert.equal(a, 0, `pg_dump failed: ${errors}`);
  assert.equal(b, 0, `psql failed: ${errors}`);
}

let old: LocalServer;
let sys: LocalServer;
let target: LocalServer;
const TEMPLATE = 'verify_template';
const FROM_OLD = 'verify_from_old';
const FROM_SYS = 'verify_from_sys';

before(async () => {
  [old, sys, target] = await Promise.all([
    startServer(OLD_MAJOR),
    startServer(SYSTEM_MAJOR),
    startServer(NEW_MAJOR),
  ]);
  await Promise.all(
    [old, sys].map(async (server) => {
      await createDatabase(server, TEMPLATE);
      await server.sql(featureDatabaseSql(2000) + EXTRAS, TEMPLATE);
    }),
  );
  await createDatabase(target, FROM_OLD);
  await createDatabase(target, FROM_SYS);
  await dumpInto(old.url(TEMPLATE), target.url(FROM_OLD));
  await dumpInto(sys.url(TEMPLATE), target.url(FROM_SYS));
});
after(async () => {
  await Promise.all([old?.destroy(), sys?.destroy(), target?.destroy()]);
});

interface Pair {
  source: LocalServer;
  db: string;
  sourceUrl: string;
  targetUrl: string;
}

/** Fresh copies of the source template and its pg_dump twin on the target. */
async function freshPair(from: 'old' | 'sys' = 'sys'): Promise<Pair> {
  const source = from === 'old' ? old : sys;
  const db = uniqueName('verify');
  await Promise.all([
    createDatabase(source, db, TEMPLATE),
    createDatabase(target, db, from === 'old' ? FROM_OLD : FROM_SYS),
  ]);
  return { source, db, sourceUrl: source.url(db), targetUrl: target.url(db) };
}

async function verify(
  p: Pair,
  extra: Partial<Parameters<typeof verifyDatabases>[0]> = {},
): Promise<VerifyReport> {
  return verifyDatabases({
    source: resolveConnection(p.sourceUrl, 'source', {}),
    target: resolveConnection(p.targetUrl, 'target', {}),
    jobs: 3,
    maxDiffs: 20,
    ledgerSchema: 'pgconvoy',
    chunkRows: 400,
    ...extra,
  });
}

const tableName = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

/** The one table that differs; every other table matches and the schema is the same. */
function onlyDiffering(report: VerifyReport, expected: string): TableResult {
  assert.equal(report.ok, false);
  const differing = report.tables.filter((t) => t.status !== 'match').map(tableName);
  assert.deepEqual(differing, [expected]);
  assert.deepEqual(
    report.schema.filter((d) => d.severity === 'difference'),
    [],
  );
  const t = report.tables.find((x) => tableName(x) === expected);
  assert.ok(t);
  return t;
}

/** The chunk a key-range difference names holds its key. */
function assertInChunk(d: RowDifference, key: number): void {
  const low = d.chunk.low === undefined ? -Infinity : Number(d.chunk.low);
  const high = d.chunk.high === undefined ? Infinity : Number(d.chunk.high);
  assert.ok(low <= key && key < high, `key ${key} not in chunk ${d.chunk.label}`);
}

describe('verify: identical databases', () => {
  test(`${OLD_MAJOR} → ${NEW_MAJOR} (CLI, --json): exit 0, every table matches with exact counts`, async () => {
    const p = await freshPair('old');
    const res = await runCli([
      'verify',
      '--source',
      p.sourceUrl,
      '--target',
      p.targetUrl,
      '--json',
      '--jobs',
      '3',
    ]);
    assert.equal(res.code, 0, res.stderr + res.stdout);
    const report = JSON.parse(res.stdout) as VerifyReport;
    assert.equal(report.ok, true);
    assert.equal(report.source.major, OLD_MAJOR);
    assert.equal(report.target.major, NEW_MAJOR);
    assert.match(report.source.snapshot ?? '', /^[0-9A-F]+-[0-9A-F]+-\d+$/);
    assert.match(report.source.lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(report.source.connection, `postgres@127.0.0.1:${old.port}/${p.db}`);
    assert.deepEqual(report.schema, []);
    const byName = new Map(report.tables.map((t) => [tableName(t), t]));
    for (const name of [...FEATURE_TABLES, 'public.codes', 'public.kinds', 'sales.revenue_by_status']) {
      const t = byName.get(name);
      assert.ok(t, `${name} verified`);
      assert.equal(t.status, 'match', name);
      const [schema, table] =
        name === 'public.a"b' ? ['public', 'a"b'] : (name.split('.') as [string, string]);
      const count = await old.sql<{ n: string }>(
        `SELECT count(*) AS n FROM ONLY "${schema}"."${table.replace(/"/g, '""')}"`,
        p.db,
      );
      assert.equal(t.rows.source, Number(count[0]?.n), name);
      assert.equal(t.rows.target, t.rows.source, name);
      assert.deepEqual(t.differences, []);
    }
    assert.equal(byName.get('sales.orders')?.method, 'key-range');
    assert.equal(byName.get('public.codes')?.method, 'hash');
    assert.equal(byName.get('Audit Log.events')?.method, 'hash');
    assert.deepEqual(report.counts, {
      tables: report.tables.length,
      tablesMatching: report.tables.length,
      tablesDiffering: 0,
      rowDifferences: 0,
      schemaDifferences: 0,
      notes: 0,
    });
    assert.match(res.stderr, /verify: source snapshot .* at LSN /);
  });

  test(`${SYSTEM_MAJOR} → ${NEW_MAJOR} (library): ok, and the target's ledger schema is ignored`, async () => {
    const p = await freshPair('sys');
    await target.sql(
      'CREATE SCHEMA pgconvoy; CREATE TABLE pgconvoy.jobs (id int PRIMARY KEY); INSERT INTO pgconvoy.jobs VALUES (1)',
      p.db,
    );
    const events: VerifyEvent[] = [];
    const report = await verify(p, { onProgress: (e) => events.push(e) });
    assert.equal(report.ok, true, JSON.stringify(report.schema));
    assert.equal(report.source.major, SYSTEM_MAJOR);
    assert.ok(report.tables.every((t) => t.schema !== 'pgconvoy'));
    assert.ok((report.tables.find((t) => tableName(t) === 'sales.orders')?.chunks.total ?? 0) > 1);
    const done = events.filter((e) => e.type === 'table-done');
    assert.equal(done.length, report.tables.length);
    // No session left behind on either side.
    for (const server of [sys, target]) {
      let left = -1;
      for (let i = 0; i < 40 && left !== 0; i++) {
        const rows = await server.sql<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'pgconvoy verify%'",
        );
        left = Number(rows[0]?.n);
        if (left) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(left, 0, 'verify sessions closed');
    }
  });
});

describe('verify: every kind of row difference is found, with table, chunk and key', () => {
  test('a changed value', async () => {
    const p = await freshPair('old');
    await target.sql("UPDATE sales.customers SET name = 'changed' WHERE id = 1500", p.db);
    const t = onlyDiffering(await verify(p), 'sales.customers');
    assert.ok(t.chunks.total > 1);
    assert.equal(t.chunks.differing, 1);
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'changed');
    assert.deepEqual(d.key, { id: '1500' });
    assert.deepEqual(d.columns, [{ name: 'name', source: 'customer 1500', target: 'changed' }]);
    assertInChunk(d, 1500);
  });

  test('a materialized view whose rows differ (refreshed at other times) is a note, not a failure', async () => {
    const p = await freshPair('sys');
    // The source's view was refreshed before its table changed (the nightly refresh); the
    // target's copy was refreshed after: derived data, not a lost row.
    await p.source.sql(
      "INSERT INTO sales.orders (customer_id, status, total) SELECT 1, 'cancelled', 1 FROM generate_series(1, 3)",
      p.db,
    );
    await target.sql(
      "INSERT INTO sales.orders (customer_id, status, total) SELECT 1, 'cancelled', 1 FROM generate_series(1, 3)",
      p.db,
    );
    await target.sql('REFRESH MATERIALIZED VIEW sales.revenue_by_status', p.db);
    const report = await verify(p);
    assert.equal(report.ok, true, JSON.stringify(report.schema));
    const note = report.schema.find((d) => d.object === 'sales.revenue_by_status');
    assert.equal(note?.severity, 'note');
    assert.equal(note?.kind, 'materialized view');
    assert.match(note?.target ?? '', /REFRESH MATERIALIZED VIEW/);
  });

  test('a deleted row', async () => {
    const p = await freshPair('sys');
    await target.sql('DELETE FROM sales.orders WHERE id = 3001', p.db);
    const t = onlyDiffering(await verify(p), 'sales.orders');
    assert.deepEqual(t.rows, { source: 4000, target: 3999 });
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'missing on target');
    assert.deepEqual(d.key, { id: '3001' });
    assertInChunk(d, 3001);
  });

  test('an extra row (table with a mixed-case name and key)', async () => {
    const p = await freshPair('sys');
    await target.sql(`INSERT INTO public."MixedCase" VALUES (51, 'v51')`, p.db);
    const t = onlyDiffering(await verify(p), 'public.MixedCase');
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'extra on target');
    assert.deepEqual(d.key, { Id: '51' });
    assertInChunk(d, 51);
  });

  test('NULL turned into an empty string', async () => {
    const p = await freshPair('old');
    const before = await target.sql<{ w: string | null }>(
      `SELECT "where" AS w FROM public."select" WHERE "from" = 10`,
      p.db,
    );
    assert.equal(before[0]?.w, null);
    await target.sql(`UPDATE public."select" SET "where" = '' WHERE "from" = 10`, p.db);
    const t = onlyDiffering(await verify(p), 'public.select');
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'changed');
    assert.deepEqual(d.key, { from: '10' });
    assert.deepEqual(d.columns, [{ name: 'where', source: null, target: '' }]);
  });

  test('a float changed in its last digit (0.1 vs 0.1 + 1 ulp)', async () => {
    const p = await freshPair('old');
    await target.sql(`UPDATE public."select" SET ratio = '0.10000000000000002' WHERE "from" = 7`, p.db);
    // With 15 significant digits both print 0.1: a checksum over that text would miss it.
    for (const [server, db] of [
      [old, p.db],
      [target, p.db],
    ] as const) {
      const rows = await server.sql<{ r: string }>(
        `SET extra_float_digits = 0; SELECT ratio::text AS r FROM public."select" WHERE "from" = 7`,
        db,
      );
      assert.equal(rows[0]?.r, '0.1');
    }
    const t = onlyDiffering(await verify(p), 'public.select');
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'changed');
    assert.deepEqual(d.key, { from: '7' });
    assert.deepEqual(d.columns, [{ name: 'ratio', source: '0.1', target: '0.10000000000000002' }]);
  });

  test('trailing white space added to a text (composite primary key)', async () => {
    const p = await freshPair('sys');
    await target.sql(
      `UPDATE public."Order Items" SET note = note || ' ' WHERE order_id = 5 AND line_no = 4`,
      p.db,
    );
    const t = onlyDiffering(await verify(p), 'public.Order Items');
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'changed');
    assert.deepEqual(d.key, { order_id: '5', line_no: '4' });
    assert.deepEqual(d.columns, [{ name: 'note', source: 'ünïcødé ✓ 日本', target: 'ünïcødé ✓ 日本 ' }]);
    assertInChunk(d, 5);
  });

  test('a duplicated row in a table without a primary key', async () => {
    const p = await freshPair('old');
    await target.sql(
      `INSERT INTO "Audit Log".events SELECT * FROM "Audit Log".events WHERE payload = '{"g": 500}'`,
      p.db,
    );
    const t = onlyDiffering(await verify(p), 'Audit Log.events');
    assert.equal(t.method, 'hash');
    assert.deepEqual(t.rows, { source: 2010, target: 2011 });
    assert.equal(t.differences.length, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'content');
    assert.equal(d.sourceCount, 1);
    assert.equal(d.targetCount, 2);
    assert.equal(d.row, '("2024-06-01 08:20:00+00","actor 0","{""g"": 500}")');
    const bucket = await old.sql<{ b: string }>(
      rowBucketSql(shapeOf('Audit Log', 'events', AUDIT_COLUMNS, undefined), 1, `payload = '{"g": 500}'`),
      p.db,
    );
    assert.equal(bucket.length, 1);
    assert.equal(d.chunk.label, `hash bucket ${bucket[0]?.b}`);
  });

  test('a change in a column of any kind is found, and only that column is named', async () => {
    const p = await freshPair('old');
    // One row per column, each given another value of its type (row 1000 holds the edge values):
    // floats one digit off, numeric with one more zero (equal, but printed differently).
    const changes: [string, number, string][] = [
      ['b', 3, 'false'],
      ['i2', 4, '-4'],
      ['i8', 5, '5'],
      ['o', 6, '7'],
      ['t', 7, "'text 7 '"],
      ['vc', 8, "'VC 8'"],
      ['ch', 9, "'c9 x'"],
      ['ts', 10, "ts + interval '1 microsecond'"],
      ['tstz', 11, "tstz - interval '1 microsecond'"],
      ['d', 12, 'd + 1'],
      ['tm', 13, "tm + interval '1 microsecond'"],
      ['ttz', 14, "'12:14:00+03'"],
      ['u', 15, "md5('x')::uuid"],
      ['f4', 16, "'2.2857146'"],
      ['f8', 17, "'2.428571428571429'"],
      ['n', 18, '2.57142857142857140'],
      ['iv', 19, "'19 days 19:00:00.000001'"],
      ['j', 20, `'{"g": 20, "x": 5.00}'`],
      ['bin', 21, "decode('00', 'hex')"],
      ['ip', 22, "'10.0.22.0/24'"],
      ['arr', 23, "'{24,23}'"],
      ['m', 24, "'happy'"],
      ['f4', 1000, "'0'"],
      ['tstz', 1000, "'-infinity'"],
      ['t', 1001, "''"],
    ];
    await target.sql(
      changes.map(([c, id, v]) => `UPDATE public.kinds SET ${c} = ${v} WHERE id = ${id};`).join('\n'),
      p.db,
    );
    const t = onlyDiffering(await verify(p, { maxDiffs: 50 }), 'public.kinds');
    const order = ['b', 'i2', 'i8', 'o', 't', 'vc', 'ch', 'ts', 'tstz', 'd', 'tm', 'ttz', 'u', 'f4', 'f8'];
    const expected = new Map<number, string[]>();
    for (const [c, id] of changes) expected.set(id, [...(expected.get(id) ?? []), c]);
    assert.deepEqual(
      t.differences.map((d) => [
        d.kind,
        'key' in d ? Number(d.key.id) : 0,
        'columns' in d ? d.columns.map((c) => c.name) : [],
      ]),
      [...expected].map(([id, cols]) => [
        'changed',
        id,
        cols.sort((a, b) => order.indexOf(a) - order.indexOf(b)),
      ]),
    );
  });

  test('text primary key (hash buckets): changed, missing and extra, each in its bucket', async () => {
    const p = await freshPair('sys');
    await target.sql(
      `UPDATE public.codes SET label = '' WHERE code = 'C-0300';
       DELETE FROM public.codes WHERE code = 'C-0007';
       INSERT INTO public.codes VALUES ('C-9999', 'new', 1.5);`,
      p.db,
    );
    const t = onlyDiffering(await verify(p), 'public.codes');
    assert.equal(t.method, 'hash');
    const got = t.differences.map((d) => [d.kind, 'key' in d ? d.key.code : '', d.chunk.label]);
    const shape = shapeOf('public', 'codes', CODES_COLUMNS, ['code']);
    // Each key's bucket, on the side that has it.
    const bucket = async (code: string, side: LocalServer = sys) =>
      `hash bucket ${(await side.sql<{ b: string }>(rowBucketSql(shape, 1, `code = ${quoteLiteral(code)}`), p.db))[0]?.b}`;
    assert.deepEqual(got, [
      ['missing on target', 'C-0007', await bucket('C-0007')],
      ['changed', 'C-0300', await bucket('C-0300')],
      ['extra on target', 'C-9999', await bucket('C-9999', target)],
    ]);
    const changed = t.differences[1];
    assert.ok(changed?.kind === 'changed');
    assert.deepEqual(changed.columns, [{ name: 'label', source: null, target: '' }]);
  });

  test('one big chunk is narrowed by bisection to a small range holding the key', async () => {
    const p = await freshPair('sys');
    await target.sql(`UPDATE sales.orders SET ref = NULL WHERE id = 2345`, p.db);
    const events: VerifyEvent[] = [];
    const t = onlyDiffering(
      await verify(p, { chunkRows: 1_000_000, onProgress: (e) => events.push(e) }),
      'sales.orders',
    );
    assert.equal(t.chunks.total, 1);
    const d = t.differences[0];
    assert.ok(d?.kind === 'changed');
    assert.deepEqual(d.key, { id: '2345' });
    assert.equal(d.columns[0]?.name, 'ref');
    assert.equal(d.columns[0]?.target, null);
    const m = /^id \[(\d+), (\d+)\)$/.exec(d.chunk.range);
    assert.ok(m, `narrowed range: ${d.chunk.range}`);
    const [low, high] = [Number(m[1]), Number(m[2])];
    assert.ok(low <= 2345 && 2345 < high && high - low <= 500, d.chunk.range);
    assert.ok(events.some((e) => e.type === 'narrowing'));
  });

  test('sparse keys are cut where the rows are, as the copy cuts them, not in equal widths', async () => {
    const db = uniqueName('verify_sparse');
    // Two dense runs of 3000 keys, 10^12 apart: equal widths would put all rows in 2 chunks.
    const sql = `CREATE TABLE public.sparse (id bigint PRIMARY KEY, v text);
      INSERT INTO public.sparse SELECT g, 'v' || g FROM generate_series(1, 3000) g;
      INSERT INTO public.sparse SELECT 1000000000000 + g, 'v' || g FROM generate_series(1, 3000) g;
      ANALYZE public.sparse`;
    for (const server of [sys, target]) {
      await createDatabase(server, db);
      await server.sql(sql, db);
    }
    const events: VerifyEvent[] = [];
    const p: Pair = { source: sys, db, sourceUrl: sys.url(db), targetUrl: target.url(db) };
    const report = await verify(p, { chunkRows: 1000, onProgress: (e) => events.push(e) });
    assert.equal(report.ok, true, JSON.stringify(report.tables));
    const labels = events.flatMap((e) => (e.type === 'chunk-done' ? [e.chunk] : []));
    assert.ok(labels.length >= 4, labels.join(' | '));
    for (const label of labels) {
      const m = /^id \[(-inf|\d+), (\+inf|\d+)\)/.exec(label);
      assert.ok(m, label);
      const low = m[1] === '-inf' ? '' : `id >= ${m[1]}`;
      const high = m[2] === '+inf' ? '' : `id < ${m[2]}`;
      const where = [low, high].filter(Boolean).join(' AND ') || 'true';
      const [row] = await sys.sql<{ n: string }>(
        `SELECT count(*) AS n FROM public.sparse WHERE ${where}`,
        db,
      );
      assert.ok(
        Number(row?.n) <= 2 * Math.ceil(6000 / labels.length),
        `${label} holds ${row?.n} of 6000 rows`,
      );
    }
  });

  test('counts only: a missing row is found by count; the tables named are still checksummed', async () => {
    const p = await freshPair('sys');
    await target.sql(
      `DELETE FROM public."MixedCase" WHERE "Id" = 11; UPDATE public.codes SET label = 'x' WHERE code = 'C-0100'`,
      p.db,
    );
    const report = await verify(p, {
      contents: 'counts',
      checksumTables: [{ schema: 'public', name: 'codes' }],
    });
    const differing = report.tables.filter((t) => t.status !== 'match');
    assert.deepEqual(
      differing.map((t) => [tableName(t), t.method, (t.rows.source ?? 0) - (t.rows.target ?? 0)]),
      [
        ['public.MixedCase', 'count', 1],
        ['public.codes', 'hash', 0],
      ],
    );
    assert.deepEqual(
      differing[1]?.differences.map((d) => [d.kind, 'key' in d ? d.key.code : '']),
      [['changed', 'C-0100']],
    );
    assert.ok(
      report.tables.filter((t) => tableName(t) !== 'public.codes').every((t) => t.method === 'count'),
    );
    // The same from the command line: --counts-only, exit 6, the count that differs.
    const res = await runCli(['verify', '--source', p.sourceUrl, '--target', p.targetUrl, '--counts-only']);
    assert.equal(res.code, 6, res.stderr + res.stdout);
    assert.match(res.stdout, /^public\."MixedCase" +50 +49 +1 \(1 differ\) +count +DIFFER/m);
  });

  test('--max-diffs caps the listed differences and says more exist', async () => {
    const p = await freshPair('sys');
    await target.sql(`DELETE FROM public."MixedCase" WHERE "Id" BETWEEN 11 AND 20`, p.db);
    const t = onlyDiffering(await verify(p, { maxDiffs: 3 }), 'public.MixedCase');
    assert.deepEqual(
      t.differences.map((d) => ('key' in d ? d.key.Id : '')),
      ['11', '12', '13'],
    );
    assert.equal(t.truncated, true);
  });
});

describe('verify: schema and sequences (CLI, exit 6)', () => {
  const cases: [string, string, Record<string, unknown>][] = [
    [
      'a sequence moved on the target',
      "SELECT setval('public.invoice_no', 500000)",
      {
        kind: 'sequence',
        object: 'public.invoice_no',
        problem: 'different',
        source: 'last_value 424242',
        target: 'last_value 500000',
        severity: 'difference',
      },
    ],
    [
      'a dropped index',
      'DROP INDEX sales.orders_customer_idx',
      {
        kind: 'index',
        object: 'sales.orders_customer_idx',
        problem: 'missing on target',
        severity: 'difference',
      },
    ],
    [
      'a foreign key left NOT VALID',
      `ALTER TABLE sales.orders DROP CONSTRAINT orders_customer_id_fkey;
       ALTER TABLE sales.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES sales.customers (id) NOT VALID`,
      {
        kind: 'constraint',
        object: 'sales.orders.orders_customer_id_fkey',
        problem: 'not valid on target',
        source: 'FOREIGN KEY (customer_id) REFERENCES sales.customers(id)',
        target: 'FOREIGN KEY (customer_id) REFERENCES sales.customers(id) NOT VALID',
        severity: 'difference',
      },
    ],
  ];
  for (const [what, change, expected] of cases) {
    test(what, async () => {
      const p = await freshPair('old');
      await target.sql(change, p.db);
      const res = await runCli(['verify', '--source', p.sourceUrl, '--target', p.targetUrl, '--json']);
      assert.equal(res.code, 6, res.stderr);
      const report = JSON.parse(res.stdout) as VerifyReport;
      assert.equal(report.ok, false);
      assert.deepEqual(report.schema, [expected]);
      const differing = report.tables.filter((t) => t.status !== 'match');
      assert.deepEqual(differing, [], 'no table differs');
      assert.equal(report.counts.schemaDifferences, 1);
    });
  }

  test('a table missing on the target, a column only on the target', async () => {
    const p = await freshPair('sys');
    await target.sql(
      `DROP TABLE public."a""b"; ALTER TABLE public."MixedCase" ADD COLUMN extra integer DEFAULT 7`,
      p.db,
    );
    const report = await verify(p);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.schema.map((d) => [d.kind, d.object, d.problem]),
      [
        ['column', 'public."MixedCase".extra', 'extra on target'],
        ['table', 'public."a""b"', 'missing on target'],
      ],
    );
    const byName = new Map(report.tables.map((t) => [tableName(t), t]));
    assert.equal(byName.get('public.a"b')?.status, 'missing on target');
    // Rows are compared over the columns both sides have.
    assert.equal(byName.get('public.MixedCase')?.status, 'match');
    assert.deepEqual(byName.get('public.MixedCase')?.columns, ['Id', 'Value']);
  });

  test('human output: the difference with its table, chunk and key, and exit 6', async () => {
    const p = await freshPair('old');
    await target.sql(
      `UPDATE sales.customers SET name = 'changed' WHERE id = 1500; ALTER TABLE sales.orders DISABLE TRIGGER orders_count`,
      p.db,
    );
    const res = await runCli([
      'verify',
      '--source',
      p.sourceUrl,
      '--target',
      p.targetUrl,
      '--chunk-rows',
      '400',
    ]);
    assert.equal(res.code, 6, res.stderr);
    assert.match(res.stdout, /^sales\.customers +2,000 +2,000 +\d+ \(1 differ\) +key-range +DIFFER/m);
    assert.match(
      res.stdout,
      /changed: id=1500 {2}\(chunk id \[\d+, \d+\)\): name "customer 1500" → "changed"/,
    );
    assert.match(
      res.stdout,
      /trigger sales\.orders\.orders_count: disabled: source enabled; target disabled/,
    );
    assert.match(res.stdout, /^DIFFERENT: 1 of \d+ table\(s\) differ, 1 schema difference\(s\)/m);
    assert.match(res.stderr, /verify: sales\.customers: differ, 2,000 rows/);
  });
});

describe('verify: scope, snapshot, row text', () => {
  test('--table and --schema narrow the run; a partitioned table means its partitions', async () => {
    const p = await freshPair('sys');
    await target.sql("UPDATE sales.customers SET name = 'changed' WHERE id = 1", p.db);
    const tables = ['public."Order Items"', 'public.measurements'];
    const res = await runCli([
      'verify',
      '--source',
      p.sourceUrl,
      '--target',
      p.targetUrl,
      '--json',
      ...tables.flatMap((t) => ['--table', t]),
    ]);
    assert.equal(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout) as VerifyReport;
    assert.deepEqual(report.tables.map(tableName), [
      'public.Order Items',
      'public.measurements_2023',
      'public.measurements_2024',
    ]);
    const bySchema = await verify(p, { filter: filterFromFlags({ schema: ['sales'] }) });
    assert.deepEqual(bySchema.tables.filter((t) => t.status !== 'match').map(tableName), ['sales.customers']);
    assert.ok(bySchema.tables.every((t) => t.schema === 'sales'));
    const missing = await runCli([
      'verify',
      '--source',
      p.sourceUrl,
      '--target',
      p.targetUrl,
      '--table',
      'public.nope',
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nothing on either side matches table pattern "public\.nope"/);
  });

  test('a nullable split key and no primary key: rows with a NULL key get their own range', async () => {
    const db = uniqueName('verify_nullkey');
    const setup = `CREATE TABLE public.loose (k integer, v text);
      CREATE INDEX loose_k ON public.loose (k);
      INSERT INTO public.loose SELECT CASE WHEN g % 20 = 0 THEN NULL ELSE g END, 'v' || g FROM generate_series(1, 2000) g;
      ANALYZE public.loose;`;
    await Promise.all([createDatabase(sys, db), createDatabase(target, db)]);
    await Promise.all([sys.sql(setup, db), target.sql(setup, db)]);
    await target.sql(`UPDATE public.loose SET v = 'w' WHERE v = 'v40'`, db);
    // One chunk for the whole table: bisection must split the NULL keys off into a range of their own.
    const report = await verify(
      { source: sys, db, sourceUrl: sys.url(db), targetUrl: target.url(db) },
      { chunkRows: 1_000_000 },
    );
    const t = onlyDiffering(report, 'public.loose');
    assert.equal(t.method, 'key-range');
    assert.deepEqual(
      t.differences.map((d) =>
        d.kind === 'content' ? [d.row, d.sourceCount, d.targetCount, d.chunk.range] : [],
      ),
      [
        ['(,v40)', 1, 0, 'k = NULL'],
        ['(,w)', 0, 1, 'k = NULL'],
      ],
    );
  });

  test('pg_dump patterns follow SQL quoting and wildcards', () => {
    const m = (text: string, schema: string, name: string) => {
      const p = parsePattern(text);
      return (p.schema ? p.schema.test(schema) : schema === 'public') && p.name.test(name);
    };
    assert.ok(m('public."Order Items"', 'public', 'Order Items'));
    assert.ok(m('"Audit Log".events', 'Audit Log', 'events'));
    assert.ok(m('Sales.Orders', 'sales', 'orders'));
    assert.ok(!m('Sales.Orders', 'Sales', 'Orders'));
    assert.ok(m('"a""b"', 'public', 'a"b'));
    assert.ok(m('s*.ord?rs', 'sales', 'orders'));
    assert.ok(!m('"s*".orders', 'sales', 'orders'));
    assert.ok(m('x.a$b', 'x', 'a$b'));
    assert.throws(() => parsePattern('a.b.c'), /more than two/);
    assert.throws(() => parsePattern('"open'), /not closed/);
  });

  test('a given source snapshot: rows written after it are not seen', async () => {
    const p = await freshPair('sys');
    const holder = new pg.Client(sys.clientConfig(p.db));
    await holder.connect();
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const snap = (await holder.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]?.s;
      assert.ok(snap);
      await sys.sql(`INSERT INTO public."MixedCase" VALUES (99, 'late')`, p.db);
      const inSnapshot = await verify(p, { sourceSnapshot: snap });
      assert.equal(inSnapshot.ok, true);
      assert.equal(inSnapshot.source.snapshot, snap);
      const now = await verify(p);
      const t = onlyDiffering(now, 'public.MixedCase');
      assert.deepEqual(
        t.differences.map((d) => [d.kind, 'key' in d ? d.key.Id : '']),
        [['missing on target', '99']],
      );
    } finally {
      await holder.query('COMMIT');
      await holder.end();
    }
  });

  test('a LATIN1 source and a UTF8 target compare by the characters, not the bytes', async () => {
    const db = uniqueName('verify_latin1');
    await sys.sql(`CREATE DATABASE ${db} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    await sys.sql(
      `CREATE TABLE public.names (id int PRIMARY KEY, name text, initial char(2), note varchar(20));
       INSERT INTO public.names SELECT g, 'Zoë Müller ' || g, 'É', 'café' FROM generate_series(1, 300) g`,
      db,
    );
    await createDatabase(target, db);
    await dumpInto(sys.url(db), target.url(db));
    const p: Pair = { source: sys, db, sourceUrl: sys.url(db), targetUrl: target.url(db) };
    const same = await verify(p);
    assert.equal(same.ok, true, JSON.stringify(same.tables));
    await target.sql(`UPDATE public.names SET name = 'Zoe Müller 42' WHERE id = 42`, db);
    const t = onlyDiffering(await verify(p), 'public.names');
    assert.deepEqual(
      t.differences.map((d) => [d.kind, 'key' in d ? d.key.id : '', 'columns' in d ? d.columns : []]),
      [['changed', '42', [{ name: 'name', source: 'Zoë Müller 42', target: 'Zoe Müller 42' }]]],
    );
  });

  test('the row hash tells apart values that are equal but not the same', async () => {
    const db = await createDatabase(sys, uniqueName('verify_rowhash'));
    // Pairs of rows that compare equal (or look alike) but are not the same values; every row
    // must hash differently. Columns: types hashed directly, as timestamp, as float, as text.
    const columns: [string, string][] = [
      ['id', 'int4'],
      ['a', 'text'],
      ['b', 'text'],
      ['n', 'numeric'],
      ['f', 'float8'],
      ['i', 'interval'],
      ['j', 'jsonb'],
      ['c', 'bpchar'],
      ['t', 'timestamptz'],
      ['flag', 'bool'],
      ['v', 'varchar'],
      ['pf', 'float8'],
    ];
    // One row per value (id = its position): the named columns set, every other NULL.
    const rows: Record<string, string>[] = [
      {},
      { a: `''` },
      { b: `''` },
      { a: `'a'` },
      { a: `'a '` },
      { a: `'a,b'` },
      { a: `'a'`, b: `'b'` },
      { a: `'b'`, b: `'a'` },
      { a: `'"'` },
      { a: `'""'` },
      { a: `''`, b: `''` },
      { n: '1.0' },
      { n: '1.00' },
      { f: '0' },
      { f: `'-0'` },
      { f: '0.1' },
      { f: '0.10000000000000002' },
      { i: `'1 day'` },
      { i: `'24 hours'` },
      { j: `'{"x": 1.0}'` },
      { j: `'{"x": 1.00}'` },
      { c: `'a'` },
      { c: `'a '` },
      { t: `'2024-01-01 00:00:00+00'` },
      { t: `'2024-01-01 00:00:00.000001+00'` },
      { flag: 'true' },
      { flag: 'false' },
      { v: `'Ab'` },
      { v: `'ab'` },
      { pf: '0.5' },
      { pf: '0.25' },
    ];
    await sys.sql(
      `CREATE TABLE public.t (${columns.map(([c, type]) => `${c} ${type === 'int4' ? 'int' : type}`).join(', ')});
       INSERT INTO public.t VALUES ${rows
         .map((r, i) => `(${[String(i + 1), ...columns.slice(1).map(([c]) => r[c] ?? 'NULL')].join(', ')})`)
         .join(', ')};
       -- A domain over float8 (with a CHECK that refuses 0) is hashed as its base type.
       CREATE DOMAIN public.pos_float AS float8 CHECK (VALUE > 0);
       ALTER TABLE public.t ALTER COLUMN pf TYPE public.pos_float`,
      db,
    );
    const client = new pg.Client(sys.clientConfig(db));
    await client.connect();
    try {
      await client.query(`SET TimeZone = 'UTC'; SET extra_float_digits = 3`);
      const shape = shapeOf('public', 't', columns, undefined);
      const sums = new Map<string, number>();
      for (let id = 1; id <= rows.length; id++) {
        // Each row alone, with its key changed to 0 so that only the other columns tell them apart.
        await client.query(`UPDATE public.t SET id = 0 WHERE id = ${id}`);
        const res = await client.query<{ n: string; s: string }>(checksumSql(shape, 'id = 0'));
        await client.query(`UPDATE public.t SET id = ${id} WHERE id = 0`);
        assert.equal(res.rows[0]?.n, '1');
        const s = res.rows[0]?.s ?? '';
        assert.ok(!sums.has(s), `row ${id} hashes like row ${sums.get(s)}`);
        sums.set(s, id);
      }
      // A duplicated row adds to the sum: it does not cancel out as XOR would.
      const once = await client.query<{ s: string }>(checksumSql(shape, 'id = 7'));
      await client.query(`INSERT INTO public.t SELECT 1000, a, b FROM public.t WHERE id = 7`);
      await client.query(`UPDATE public.t SET id = 7 WHERE id = 1000`);
      const twice = await client.query<{ n: string; s: string }>(checksumSql(shape, 'id = 7'));
      assert.equal(twice.rows[0]?.n, '2');
      assert.equal(BigInt(twice.rows[0]?.s ?? '0'), 2n * BigInt(once.rows[0]?.s ?? '0'));
    } finally {
      await client.end();
    }
  });
});
