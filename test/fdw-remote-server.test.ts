import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { createForeignTables } from '../src/fdw/foreign-tables.js';
import {
  createRemoteServer,
  probeRemoteServer,
  remoteSourceAddress,
  removeRemoteServer,
} from '../src/fdw/remote-server.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { NEW_MAJOR, SYSTEM_MAJOR, createDatabase, startServer, uniqueName } from './helpers/servers.js';

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

describe('postgres_fdw remote server (src/fdw)', () => {
  let source: LocalServer;
  let target: LocalServer;
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

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
});
