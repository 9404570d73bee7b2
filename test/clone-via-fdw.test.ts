import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { FdwClone } from '../src/clone/via-fdw.js';
import { pullRows, pullStatement } from '../src/copy/fdw-pull.js';
import { readColumnCatalog, tableKey } from '../src/copy/table-columns.js';
import { createForeignTables } from '../src/fdw/foreign-tables.js';
import {
  createRemoteServer,
  probeRemoteServer,
  remoteSourceAddress,
  removeRemoteServer,
} from '../src/fdw/remote-server.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { exportSnapshot } from '../src/copy/source-snapshot.js';
import { PgconvoyError } from '../src/errors.js';
import { featureDatabaseSql } from './fixtures/feature-db.js';
import { assertSameData, catalogFacts } from './helpers/compare.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
} from './helpers/servers.js';

const names = { server: 'pgconvoy_test_source', schema: 'pgconvoy_test_tables' };

/** Every postgres_fdw object on the target: what a teardown must leave empty. */
async function fdwObjects(target: LocalServer, db: string): Promise<string[]> {
  const rows = await target.sql<{ o: string }>(
    `SELECT 'extension ' || extname AS o FROM pg_extension WHERE extname = 'postgres_fdw'
     UNION ALL SELECT 'server ' || srvname FROM pg_foreign_server
     UNION ALL SELECT 'mapping ' || srvname FROM pg_user_mappings
     UNION ALL SELECT 'foreign table ' || ftrelid::regclass::text FROM pg_foreign_table
     UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname LIKE 'pgconvoy%'
     ORDER BY 1`,
    db,
  );
  return rows.map((r) => r.o);
}

/** Tables big enough to be cut into chunks: by key (with NULL keys) and, without a key, by ctid. */
const CHUNKED = `
CREATE TABLE public.skewed (id bigint PRIMARY KEY, v text);
INSERT INTO public.skewed SELECT g, md5(g::text) FROM generate_series(1, 40000) g;
INSERT INTO public.skewed SELECT 1000000 + g::bigint * 200000000, md5(g::text) FROM generate_series(1, 2000) g;
CREATE TABLE public."no key" (label text, n numeric);
INSERT INTO public."no key" SELECT md5(g::text), g FROM generate_series(1, 40000) g;
CREATE TABLE public."Foo Bar" (k integer, "a""b" text COLLATE "C");
CREATE INDEX ON public."Foo Bar" (k);
INSERT INTO public."Foo Bar" SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE g END, md5(g::text) FROM generate_series(1, 30000) g;
ANALYZE;`;

const runDir = () => tempDir('pgconvoy-fdw-');

let source: LocalServer;
let target: LocalServer;
const template = uniqueName('fdw_tpl');
const chunkedTemplate = uniqueName('fdw_chunked_tpl');
before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  await createDatabase(source, chunkedTemplate);
  await source.sql(CHUNKED, chunkedTemplate);
  await createDatabase(source, template, chunkedTemplate);
  await source.sql(featureDatabaseSql(400), template);
});
after(async () => Promise.all([source?.destroy(), target?.destroy()]));

function cloneArgs(db: string, ...extra: string[]): string[] {
  return [
    'clone',
    '--via',
    'fdw',
    '--source',
    source.url(db),
    '--target',
    target.url(db),
    '--create-database',
    '--split-tables-larger-than',
    '1MB',
    '--chunk-size',
    '512kB',
    ...extra,
  ];
}

describe(`clone --via fdw (${SYSTEM_MAJOR} → ${NEW_MAJOR})`, () => {
  test('every table arrives equal, chunked ones (key ranges with NULL keys, ctid ranges) included; nothing of postgres_fdw is left', async () => {
    const db = await createDatabase(source, uniqueName('fdw_clone'), template);
    const res = await runCli(cloneArgs(db, '--jobs', '3', '--run-dir', runDir()));
    assert.equal(res.code, 0, res.stderr + res.stdout);
    assert.match(res.stderr, /the target server reads the source through postgres_fdw/);
    assert.match(res.stderr, /public\.skewed: \d+ chunks by key-range/);
    assert.match(res.stderr, /public\."no key": \d+ chunks by block-range/);
    assert.match(res.stderr, /public\."Foo Bar": \d+ chunks by key-range/);
    assert.match(res.stderr, /locked against writes/);
    await assertSameData(source, db, target, db);
    const [s, t] = await Promise.all([catalogFacts(source, db), catalogFacts(target, db)]);
    assert.deepEqual(t, s, 'indexes, constraints, triggers, sequences, views, large objects');
    assert.deepEqual(await fdwObjects(target, db), ['schema pgconvoy'], 'only the ledger stays');
    const locks = await source.sql(
      `SELECT 1 FROM pg_locks WHERE mode = 'ShareLock' AND locktype = 'relation'`,
    );
    assert.equal(locks.length, 0, 'the write locks ended with the copy');
  });

  test('creates extension, server, mapping and foreign tables with exact columns; removal leaves nothing', async () => {
    const sdb = await createDatabase(source, uniqueName('fdw_src'));
    const tdb = await createDatabase(target, uniqueName('fdw_tgt'));
    const ddl = `CREATE SCHEMA "Sales";
       CREATE TABLE public."Foo Bar" (id int PRIMARY KEY, "a""b" text COLLATE "C" NOT NULL, v numeric(10,2));
       CREATE TABLE "Sales"."Foo Bar" (k bigint);`;
    await source.sql(
      `${ddl}
       INSERT INTO public."Foo Bar" VALUES (1, 'x', 1.5), (2, 'y''z', NULL);
       INSERT INTO "Sales"."Foo Bar" SELECT g FROM generate_series(1, 10) g;`,
      sdb,
    );
    await target.sql(ddl, tdb);
    const sourceSpec = resolveConnection(source.url(sdb), 'source', {});
    const t = await openClient(resolveConnection(target.url(tdb), 'target', {}));
    const s = await openClient(sourceSpec);
    try {
      const setup = await createRemoteServer(t, names, remoteSourceAddress(sourceSpec), 'a test');
      assert.equal(setup.extensionCreatedByPgconvoy, true);
      // again: idempotent, and the extension is still known as pgconvoy's
      assert.equal(
        (await createRemoteServer(t, names, remoteSourceAddress(sourceSpec), 'a test'))
          .extensionCreatedByPgconvoy,
        true,
      );
      const probe = await probeRemoteServer(t, names);
      assert.equal(probe.status, 'reached');
      const tables = await createForeignTables(t, s, names, [
        { schema: 'public', name: 'Foo Bar' },
        { schema: 'Sales', name: 'Foo Bar' },
        { schema: 'public', name: 'missing' },
      ]);
      assert.equal(tables.length, 2);
      const [foo, sales] = tables;
      assert.notEqual(foo!.foreign.name, sales!.foreign.name, 'same name in two schemas: two foreign tables');
      const q = (ft: typeof foo) =>
        `${pg.escapeIdentifier(ft!.foreign.schema)}.${pg.escapeIdentifier(ft!.foreign.name)}`;
      const rows = await t.query(`SELECT id, "a""b" AS ab, v::text FROM ${q(foo)} ORDER BY id`);
      assert.deepEqual(rows.rows, [
        { id: 1, ab: 'x', v: '1.50' },
        { id: 2, ab: "y'z", v: null },
      ]);
      const cols = await t.query<{ def: string }>(
        `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || coalesce(' ' || collname, '') || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum) AS def
           FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation AND c.collname <> 'default'
          WHERE attrelid = $1::regclass AND attnum > 0`,
        [q(foo)],
      );
      assert.equal(cols.rows[0]!.def, 'id integer not null, a"b text C not null, v numeric(10,2)');
      const sum = await t.query(`SELECT sum(k)::int AS s FROM ${q(sales)} WHERE k >= 3 AND k < 6`);
      assert.deepEqual(sum.rows, [{ s: 12 }]);
      // postgres_fdw's remote sessions run with row_security off (a filtered read fails instead)
      await t.query(
        `CREATE FOREIGN TABLE ${names.schema}.settings (name text, setting text) SERVER ${names.server}
         OPTIONS (schema_name 'pg_catalog', table_name 'pg_settings')`,
      );
      const remote = await t.query(
        `SELECT name, setting FROM ${names.schema}.settings WHERE name IN ('row_security', 'statement_timeout') ORDER BY 1`,
      );
      assert.deepEqual(remote.rows, [
        { name: 'row_security', setting: 'off' },
        { name: 'statement_timeout', setting: '0' },
      ]);
      const sessions = await source.sql<{ application_name: string }>(
        `SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgconvoy fdw'`,
        'postgres',
        [sdb],
      );
      assert.equal(sessions.length, 1, 'the target server reads the source as "pgconvoy fdw"');

      const removal = await removeRemoteServer(t, names);
      assert.equal(removal.extension, 'dropped');
      assert.deepEqual(await fdwObjects(target, tdb), []);
      assert.equal((await removeRemoteServer(t, names)).extension, 'absent', 'removing twice is harmless');
    } finally {
      await Promise.all([t.end(), s.end()]);
    }
  });

  test('a pull reads a column of another type on the target through its text form, as text COPY does', async () => {
    const sdb = await createDatabase(source, uniqueName('fdw_types'));
    const tdb = await createDatabase(target, uniqueName('fdw_types'));
    await source.sql(
      `CREATE TABLE public.t (id int4, at timestamp, n numeric);
       INSERT INTO public.t VALUES (1, '2024-02-29 23:59:59.123456', 1.50), (2147483647, NULL, -0.0);`,
      sdb,
    );
    await target.sql('CREATE TABLE public.t (id int8, at timestamptz, n numeric)', tdb);
    const sourceSpec = resolveConnection(source.url(sdb), 'source', {});
    const [t, s] = await Promise.all([
      openClient(resolveConnection(target.url(tdb), 'target', {})),
      openClient(sourceSpec),
    ]);
    try {
      await createRemoteServer(t, names, remoteSourceAddress(sourceSpec), 'a test');
      const [foreign] = await createForeignTables(t, s, names, [{ schema: 'public', name: 't' }]);
      const [sourceColumns, targetColumns] = await Promise.all([readColumnCatalog(s), readColumnCatalog(t)]);
      const key = tableKey({ schema: 'public', name: 't' });
      const options = {
        table: { schema: 'public', name: 't' },
        foreign: foreign!.foreign,
        columns: ['id', 'at', 'n'],
        sourceColumns: sourceColumns.get(key)!,
        targetColumns: targetColumns.get(key)!,
        chunk: { kind: 'block-range' as const, fromBlock: 0 },
      };
      assert.match(pullStatement(options), /"at"::pg_catalog\.text::timestamp with time zone/);
      // The ctid range goes to the source (postgres_fdw ships ctid), not filtered on the target.
      const plan = await t.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (VERBOSE, COSTS OFF) ${pullStatement(options).replace(/^INSERT INTO [^\n]*\n/, '')}`,
      );
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
      assert.match(text, /Remote SQL: SELECT .* WHERE \(\(ctid >= '\(0,0\)'/);
      assert.doesNotMatch(text, /^\s*Filter:/m);
      await t.query(`SET TimeZone = 'UTC'`);
      assert.deepEqual(await pullRows(t, options), { rows: 2 });
      const rows = await t.query(`SELECT id::text, at::text, n::text FROM public.t ORDER BY id`);
      assert.deepEqual(rows.rows, [
        { id: '1', at: '2024-02-29 23:59:59.123456+00', n: '1.50' },
        { id: '2147483647', at: null, n: '0.0' },
      ]);
      await removeRemoteServer(t, names);
    } finally {
      await Promise.all([t.end(), s.end()]);
    }
  });

  test('the password stays out of the statement text; a wrong one is reported by the probe, redacted', async () => {
    const sdb = await createDatabase(source, uniqueName('fdw_pw'));
    const tdb = await createDatabase(target, uniqueName('fdw_pw'));
    const secret = 'S3cret-Pw-Xyz';
    await source.sql(`CREATE ROLE fdw_reader LOGIN PASSWORD '${secret}'`).catch(() => undefined);
    // log every statement on the target: the password must not be in any of them
    await target.sql(`ALTER DATABASE "${tdb}" SET log_statement = 'all'`);
    const wrong = resolveConnection(source.url(sdb, 'fdw_reader', 'not-the-password'), 'source', {});
    const t = await openClient(resolveConnection(target.url(tdb), 'target', {}));
    try {
      await createRemoteServer(t, names, remoteSourceAddress(wrong), 'a test');
      const probe = await probeRemoteServer(t, names);
      assert.equal(probe.status, 'unreachable');
      assert.match(probe.status === 'unreachable' ? probe.message : '', /password authentication failed/);
      const right = resolveConnection(source.url(sdb, 'fdw_reader', secret), 'source', {});
      await createRemoteServer(t, names, remoteSourceAddress(right), 'a test');
      assert.equal(
        (await probeRemoteServer(t, names)).status,
        'reached',
        'the new password replaced the old one',
      );
      await removeRemoteServer(t, names);
    } finally {
      await t.end();
    }
    assert.ok(!target.logTail(10_000).includes(secret), 'the password is not in the target server log');
    assert.deepEqual(await fdwObjects(target, tdb), []);
  });

  test('SIGKILL in the middle of a pull: the same command finishes, every table equal, no row twice', async () => {
    const db = await createDatabase(source, uniqueName('fdw_kill'), chunkedTemplate);
    const args = cloneArgs(db, '--jobs', '1', '--run-dir', runDir());
    let started = 0;
    const first = await runCli(args, {
      onSpawn: (child) => {
        child.stderr!.on('data', (d: Buffer) => {
          started += (d.toString().match(/ started /g) ?? []).length;
          if (started >= 3) child.kill('SIGKILL');
        });
      },
    });
    assert.equal(first.signal, 'SIGKILL');
    const states = Object.fromEntries(
      (
        await target.sql<{ state: string; n: string }>(
          'SELECT state, count(*) AS n FROM pgconvoy.jobs GROUP BY state',
          db,
        )
      ).map((r) => [r.state, Number(r.n)]),
    );
    assert.ok(
      (states.done ?? 0) >= 1 && (states.pending ?? 0) >= 1,
      `killed mid-copy: ${JSON.stringify(states)}`,
    );
    const second = await runCli(args);
    assert.equal(second.code, 0, second.stderr);
    await assertSameData(source, db, target, db);
    for (const [table, key] of [
      ['public.skewed', 'id'],
      ['public."Foo Bar"', 'coalesce(k, -1), "a""b"'],
    ] as const) {
      const dup = await target.sql<{ n: string }>(
        `SELECT count(*) - count(DISTINCT (${key})) AS n FROM ${table}`,
        db,
      );
      assert.equal(dup[0]!.n, '0', `no duplicate in ${table}`);
    }
    assert.deepEqual(await fdwObjects(target, db), ['schema pgconvoy']);
  });

  test('a source the target server cannot reach: stops before the schema, says so, leaves no fdw object', async () => {
    const db = await createDatabase(source, uniqueName('fdw_unreach'), chunkedTemplate);
    const res = await runCli([
      ...cloneArgs(db, '--run-dir', runDir()),
      '--source-from-target',
      `host=127.0.0.1 port=1 dbname=${db} user=postgres`,
    ]);
    assert.equal(res.code, 7, res.stderr);
    assert.match(res.stderr, /the target server cannot read the source through postgres_fdw/);
    assert.match(res.stderr, /--source-from-target/);
    assert.deepEqual(await fdwObjects(target, db), ['schema pgconvoy']);
    const tables = await target.sql(
      `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`,
      db,
    );
    assert.equal(tables.length, 0, 'no schema applied');
  });

  test('the snapshot session keeps writers out of the tables it locks, and says who blocks it', async () => {
    const db = await createDatabase(source, uniqueName('fdw_lock'));
    await source.sql('CREATE TABLE public.t (id int)', db);
    const spec = resolveConnection(source.url(db), 'source', {});
    const table = { schema: 'public', name: 't' };
    const snapshot = await exportSnapshot(spec, { lockAgainstWrites: [table], lockTimeoutMs: 5000 });
    try {
      const writer = new pg.Client(source.clientConfig(db));
      await writer.connect();
      try {
        await writer.query(`SET lock_timeout = '200ms'`);
        await assert.rejects(writer.query('INSERT INTO public.t VALUES (1)'), /lock timeout/);
        assert.deepEqual((await writer.query('SELECT count(*)::int AS n FROM public.t')).rows, [{ n: 0 }]);
      } finally {
        await writer.end();
      }
    } finally {
      await snapshot.close();
    }
    // A writer in flight: the lock waits, then names it.
    const writer = new pg.Client(source.clientConfig(db));
    await writer.connect();
    try {
      await writer.query(`SET application_name = 'the app'; BEGIN; INSERT INTO public.t VALUES (2)`);
      await assert.rejects(
        exportSnapshot(spec, { lockAgainstWrites: [table], lockTimeoutMs: 300 }),
        (err: unknown) =>
          err instanceof PgconvoyError &&
          err.code === 'LOCK_TIMEOUT' &&
          /\(the app\) holds RowExclusiveLock on public\.t/.test(err.message),
      );
    } finally {
      await writer.end();
    }
  });

  test('an inheritance parent is refused (postgres_fdw would read its children too); its children are not', async () => {
    const db = await createDatabase(source, uniqueName('fdw_inh'));
    const tdb = await createDatabase(target, uniqueName('fdw_inh'));
    await source.sql(
      `CREATE TABLE public.parent (id int); CREATE TABLE public.child () INHERITS (public.parent);
       INSERT INTO public.parent VALUES (1); INSERT INTO public.child VALUES (2);`,
      db,
    );
    const sourceSpec = resolveConnection(source.url(db), 'source', {});
    const [t, s] = await Promise.all([
      openClient(resolveConnection(target.url(tdb), 'target', {})),
      openClient(sourceSpec),
    ]);
    try {
      const fdw = await FdwClone.connect(t, {
        source: sourceSpec,
        sourceFromTarget: undefined,
        ledgerSchema: 'pgconvoy',
        onInfo: () => undefined,
        onWarning: () => undefined,
      });
      assert.equal((await fdw.foreignTables(t, s, [{ schema: 'public', name: 'child' }])).size, 1);
      await assert.rejects(
        fdw.foreignTables(t, s, [{ schema: 'public', name: 'parent' }]),
        (err: unknown) =>
          err instanceof PgconvoyError &&
          err.code === 'FDW_INHERITED_TABLE' &&
          /cannot copy public\.parent: inheritance parent/.test(err.message),
      );
      await fdw.remove(resolveConnection(target.url(tdb), 'target', {}));
    } finally {
      await Promise.all([t.end(), s.end()]);
    }
    assert.deepEqual(await fdwObjects(target, tdb), []);
  });
});
