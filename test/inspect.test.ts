import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { NEW_MAJOR, OLD_MAJOR, createDatabase, runCli, startServer, uniqueName } from './helpers/servers.js';

const FIXTURE = `
CREATE SCHEMA sales;
CREATE TABLE sales.big (id bigint PRIMARY KEY, payload text);
INSERT INTO sales.big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
CREATE TABLE public."Order Items" (item_no integer NOT NULL, note text);
CREATE UNIQUE INDEX ON public."Order Items" (item_no);
INSERT INTO public."Order Items" SELECT g, 'n' FROM generate_series(1, 3000) g;
CREATE TABLE public."select" (k serial PRIMARY KEY, v text);
INSERT INTO public."select" (v) SELECT 'v' FROM generate_series(1, 500);
CREATE TABLE public.nokey (label text);
INSERT INTO public.nokey SELECT 'l' || g FROM generate_series(1, 100) g;
CREATE TABLE public.measurements (logdate date NOT NULL, v int) PARTITION BY RANGE (logdate);
CREATE TABLE public.measurements_2024 PARTITION OF public.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE UNLOGGED TABLE public.scratch (id int);
CREATE SEQUENCE public.standalone START 1000;
SELECT nextval('public.standalone');
SELECT lo_from_bytea(0, '\\x0102');
ANALYZE;
`;

interface InspectJson {
  ok: boolean;
  servers: {
    side: string;
    connection: string;
    server: {
      major: number;
      settings: Record<string, string>;
      role: { superuser: boolean; replication: boolean };
    };
    inventory?: {
      tables: {
        schema: string;
        name: string;
        kind: string;
        bytes: number;
        primaryKey?: string[];
        splitColumn?: { name: string; type: string };
        unlogged: boolean;
        partitionOf?: string;
      }[];
      sequences: { schema: string; name: string; lastValue?: string }[];
      largeObjects: number;
      schemas: string[];
    };
  }[];
}

for (const major of [OLD_MAJOR, NEW_MAJOR]) {
  describe(`inspect against PostgreSQL ${major}`, () => {
    let server: LocalServer;
    let db: string;
    before(async () => {
      server = await startServer(major);
      db = await createDatabase(server, uniqueName('inspect'));
      await server.sql(FIXTURE, db);
    });
    after(async () => server?.destroy());

    test('--json: tables largest first, split columns, keys, sequences, large objects', async () => {
      const res = await runCli([
        'inspect',
        '--source',
        server.url(db),
        '--target',
        server.url('postgres'),
        '--json',
      ]);
      assert.equal(res.code, 0, res.stderr);
      const report = JSON.parse(res.stdout) as InspectJson;
      assert.equal(report.servers.length, 2);
      const source = report.servers[0]!;
      assert.equal(source.side, 'source');
      assert.equal(source.server.major, major);
      assert.equal(source.server.settings.wal_level, 'logical');
      assert.equal(source.server.role.superuser, true);
      const tables = source.inventory!.tables;
      const sizes = tables.map((t) => t.bytes);
      assert.deepEqual(
        sizes,
        [...sizes].sort((a, b) => b - a),
        'largest first',
      );
      assert.equal(tables[0]!.name, 'big');
      const byName = new Map(tables.map((t) => [`${t.schema}.${t.name}`, t]));
      assert.deepEqual(byName.get('sales.big')!.splitColumn, { name: 'id', type: 'bigint' });
      assert.deepEqual(byName.get('public.Order Items')!.splitColumn, { name: 'item_no', type: 'integer' });
      assert.equal(byName.get('public.Order Items')!.primaryKey, undefined);
      assert.deepEqual(byName.get('public.select')!.primaryKey, ['k']);
      assert.deepEqual(byName.get('public.select')!.splitColumn, { name: 'k', type: 'integer' });
      assert.equal(byName.get('public.nokey')!.splitColumn, undefined);
      assert.equal(byName.get('public.measurements')!.kind, 'partitioned');
      assert.equal(byName.get('public.measurements_2024')!.partitionOf, 'public.measurements');
      assert.equal(byName.get('public.scratch')!.unlogged, true);
      const seq = source.inventory!.sequences.find((s) => s.name === 'standalone');
      assert.equal(seq?.lastValue, '1000');
      assert.equal(source.inventory!.largeObjects, 1);
      assert.deepEqual(source.inventory!.schemas, ['public', 'sales']);
      assert.equal(report.servers[1]!.inventory, undefined);
    });

    test('human output lists tables without a primary key with pasteable names', async () => {
      const res = await runCli(['inspect', '--source', server.url(db)]);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /without primary key \(4\): .*public\."Order Items"/);
      assert.match(res.stdout, /public\.nokey/);
      assert.match(res.stdout, /public\."select" +table/);
      const order = ['sales.big', 'public."Order Items"', 'public."select"'].map((n) =>
        res.stdout.indexOf(n),
      );
      assert.deepEqual(
        order,
        [...order].sort((a, b) => a - b),
      );
    });
  });
}

describe('connection failures and secrets', () => {
  let server: LocalServer;
  before(async () => {
    server = await startServer(NEW_MAJOR);
    await server.sql(`CREATE ROLE u LOGIN PASSWORD 'secret'`);
  });
  after(async () => server?.destroy());

  test('the password never appears, on success or failure', async () => {
    const good = await runCli([
      'inspect',
      '--source',
      `postgres://u:secret@127.0.0.1:${server.port}/postgres`,
      '--target',
      `postgres://u:secret@127.0.0.1:${server.port}/postgres`,
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, new RegExp(`u@127\\.0\\.0\\.1:${server.port}/postgres`));
    assert.doesNotMatch(good.stdout + good.stderr, /secret/);
    const json = await runCli([
      'inspect',
      '--source',
      `postgres://u:secret@127.0.0.1:${server.port}/postgres`,
      '--json',
    ]);
    assert.equal(json.code, 0);
    assert.doesNotMatch(json.stdout + json.stderr, /secret/);
    const bad = await runCli([
      'inspect',
      '--source',
      `postgres://u:secret@127.0.0.1:${server.port}/nosuchdb`,
      '--target',
      'postgres://u:secret@127.0.0.1:1/x',
    ]);
    assert.notEqual(bad.code, 0);
    assert.doesNotMatch(bad.stdout + bad.stderr, /secret/);
  });

  test('wrong password: one line naming the server and the cause, a hint, exit 4', async () => {
    const res = await runCli(['inspect', '--source', `postgres://u:wrong@127.0.0.1:${server.port}/postgres`]);
    assert.equal(res.code, 4);
    const lines = res.stderr.trim().split('\n');
    assert.equal(
      lines[0],
      `pgconvoy: error: cannot connect to the source u@127.0.0.1:${server.port}/postgres: password authentication failed for user "u"`,
    );
    assert.match(lines[1] ?? '', /hint: check the password/);
    assert.doesNotMatch(res.stderr, /wrong/);
  });

  test('missing database on the target: exit 5 with --create-database hint', async () => {
    const res = await runCli(['inspect', '--source', server.url(), '--target', server.url('nosuchdb')]);
    assert.equal(res.code, 5);
    assert.match(
      res.stderr,
      /cannot connect to the target postgres@127\.0\.0\.1:\d+\/nosuchdb: database "nosuchdb" does not exist/,
    );
    assert.match(res.stderr, /hint: .*--create-database/);
  });

  test('nothing listening: connection refused with a hint', async () => {
    const res = await runCli(['inspect', '--source', 'postgresql://u:secret@127.0.0.1:1/db']);
    assert.equal(res.code, 4);
    assert.match(res.stderr, /cannot connect to the source u@127\.0\.0\.1:1\/db: connection refused/);
    assert.match(res.stderr, /hint: is the server running/);
  });

  test('unknown host: says the name did not resolve', async () => {
    const res = await runCli([
      'inspect',
      '--source',
      'postgresql://u:secret@no-such-host.invalid:5432/db?connect_timeout=3',
    ]);
    assert.equal(res.code, 4);
    assert.match(
      res.stderr,
      /cannot connect to the source u@no-such-host\.invalid:5432\/db: (host name "no-such-host\.invalid" could not be resolved|the server did not answer)/,
    );
  });

  test('libpq environment: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE', async () => {
    const res = await runCli(['inspect', '--json'], {
      env: {
        PGHOST: '127.0.0.1',
        PGPORT: String(server.port),
        PGUSER: 'u',
        PGPASSWORD: 'secret',
        PGDATABASE: 'postgres',
        PGSSLMODE: 'disable',
      },
    });
    assert.equal(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout) as InspectJson;
    assert.equal(report.servers[0]!.connection, `u@127.0.0.1:${server.port}/postgres`);
    assert.doesNotMatch(res.stdout, /secret/);
  });

  test('sslmode=require against a server without TLS fails clearly', async () => {
    const res = await runCli(['inspect', '--source', `${server.url()}?sslmode=require`]);
    assert.equal(res.code, 4);
    assert.match(res.stderr, /does not support TLS/);
  });
});
