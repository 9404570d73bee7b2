import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConnection } from '../src/connect/resolve.js';
import { EXIT } from '../src/defaults.js';
import { PgconvoyError } from '../src/errors.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  applySchemaSection,
  dumpSchema,
  finalItems,
  findPgTools,
  itemsForTable,
  schemaSql,
  type PgTools,
  type SchemaDump,
} from '../src/schema/index.js';
import { childConninfo, childEnv } from '../src/schema/run-tool.js';
import { featureDatabaseSql } from './fixtures/feature-db.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  startServer,
  uniqueName,
} from './helpers/servers.js';

const USER_RELATIONS = `
SELECT n.nspname || '.' || c.relname AS name, c.relkind::text AS relkind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind = ANY($1::text[])
ORDER BY 1`;

const USER_INDEXES = `
SELECT schemaname || '.' || tablename || ' ' || indexdef AS def
FROM pg_catalog.pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`;

const USER_CONSTRAINTS = `
SELECT c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_catalog.pg_get_constraintdef(c.oid) AS def
FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.contype = ANY($1::"char"[]) ORDER BY 1`;

const TABLES_AND_COUNTS = `
SELECT format('%I.%I', n.nspname, c.relname) AS name
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p')`;

function defs(rows: { def: string }[]): string[] {
  return rows.map((r) => r.def);
}

async function rowCount(server: LocalServer, db: string): Promise<number> {
  const tables = await server.sql<{ name: string }>(TABLES_AND_COUNTS, db);
  let total = 0;
  for (const t of tables) {
    const [row] = await server.sql<{ n: string }>(`SELECT count(*) AS n FROM ${t.name}`, db);
    total += Number(row?.n);
  }
  return total;
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<PgconvoyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PgconvoyError, `expected a PgconvoyError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('schema stage', () => {
  const servers = new Map<number, LocalServer>();
  const featureDb = new Map<number, string>();
  const tools = new Map<number, PgTools>();
  let target: LocalServer;
  let scratch: string;

  const runDir = () => mkdtempSync(path.join(scratch, 'run-'));
  const sourceSpec = (major: number, db: string) =>
    resolveConnection(servers.get(major)?.url(db), 'source', {});
  const targetSpec = (db: string) => resolveConnection(target.url(db), 'target', {});

  before(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-schema-test-'));
    const started = await Promise.all([SYSTEM_MAJOR, OLD_MAJOR, NEW_MAJOR].map((m) => startServer(m)));
    for (const s of started) servers.set(s.major, s);
    target = servers.get(NEW_MAJOR) as LocalServer;
    await Promise.all(
      [SYSTEM_MAJOR, OLD_MAJOR].map(async (major) => {
        const server = servers.get(major) as LocalServer;
        const db = await createDatabase(server, uniqueName('feature'));
        await server.sql(featureDatabaseSql(200), db);
        featureDb.set(major, db);
        tools.set(major, findPgTools({ sourceMajor: major, pathEnv: process.env.PATH ?? '' }));
      }),
    );
  });
  after(async () => {
    await Promise.all([...servers.values()].map((s) => s.destroy()));
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  for (const sourceMajor of [SYSTEM_MAJOR, OLD_MAJOR]) {
    test(`source ${sourceMajor} → target ${NEW_MAJOR}: pre-data, then each table's indexes, then the rest`, async () => {
      const source = servers.get(sourceMajor) as LocalServer;
      const sourceDb = featureDb.get(sourceMajor) as string;
      const pgTools = tools.get(sourceMajor) as PgTools;
      const dir = runDir();
      const dump = await dumpSchema({
        source: sourceSpec(sourceMajor, sourceDb),
        tools: pgTools,
        runDir: dir,
        excludeSchemas: ['pgconvoy'],
      });

      // The three files, split by pg_dump's sections.
      for (const file of ['schema.dump', 'schema.sql', 'schema_no_indexes.sql', 'schema_indexes_only.sql'])
        assert.ok(existsSync(path.join(dir, file)), file);
      const pre = readFileSync(dump.files.preData, 'utf8');
      const post = readFileSync(dump.files.postData, 'utf8');
      const whole = readFileSync(dump.files.whole, 'utf8');
      for (const sql of [
        'CREATE TABLE public."Order Items" (',
        'CREATE TABLE public."select" (',
        'CREATE TABLE public."MixedCase" (',
        'CREATE TABLE public.measurements_2023 (',
        'CREATE SEQUENCE public.invoice_no',
        'CREATE MATERIALIZED VIEW sales.revenue_by_status AS',
        'GRANT ALL ON nothing;',
      ])
        assert.ok(pre.includes(sql), `schema_no_indexes.sql has ${sql}`);
      assert.match(pre, /WITH NO DATA;/);
      assert.doesNotMatch(pre, /CREATE (UNIQUE )?INDEX/);
      assert.doesNotMatch(pre, /FOREIGN KEY|CREATE TRIGGER|PRIMARY KEY/);
      for (const sql of [
        'CREATE INDEX orders_customer_idx ON sales.orders USING btree (customer_id);',
        'CREATE INDEX orders_attrs_idx ON sales.orders USING gin (attrs);',
        'ADD CONSTRAINT "Order Items_pkey" PRIMARY KEY (order_id, line_no);',
        'ADD CONSTRAINT customers_email_key UNIQUE (email);',
        'FOREIGN KEY (referred_by) REFERENCES sales.customers(id);',
        'CREATE TRIGGER orders_count AFTER INSERT ON sales.orders',
        'ALTER INDEX public.measurements_city_idx ATTACH PARTITION public.measurements_2023_city_id_idx;',
      ])
        assert.ok(post.includes(sql), `schema_indexes_only.sql has ${sql}`);
      assert.doesNotMatch(post, /CREATE TABLE|CREATE FUNCTION/);
      assert.ok(whole.includes('CREATE TABLE public."Order Items" ('));
      assert.ok(whole.includes('CREATE INDEX orders_customer_idx'));

      // Classification of the post-data items.
      const byName = (name: string) => {
        const item = dump.postData.find((i) => i.objectName === name);
        assert.ok(item, `post-data item ${name}`);
        return item;
      };
      assert.deepEqual(
        (({ kind, table, phase }) => ({ kind, table, phase }))(byName('orders_customer_idx')),
        { kind: 'index', table: { schema: 'sales', name: 'orders' }, phase: 'table' },
      );
      assert.deepEqual((({ kind, table, phase }) => ({ kind, table, phase }))(byName('Order Items_pkey')), {
        kind: 'constraint',
        table: { schema: 'public', name: 'Order Items' },
        phase: 'table',
      });
      assert.equal(byName('orders_customer_id_fkey').kind, 'fk-constraint');
      assert.equal(byName('orders_customer_id_fkey').phase, 'final');
      assert.deepEqual(byName('orders_customer_id_fkey').table, { schema: 'sales', name: 'orders' });
      assert.equal(byName('orders_count').kind, 'trigger');
      assert.equal(byName('orders_count').phase, 'final');
      assert.equal(byName('measurements_city_idx').phase, 'final', 'index on the partitioned parent');
      assert.equal(byName('measurements_2023_city_id_idx').phase, 'table');
      assert.deepEqual(byName('measurements_2023_city_id_idx').table, {
        schema: 'public',
        name: 'measurements_2023',
      });
      const attaches = dump.postData.filter((i) => i.kind === 'index-attach');
      assert.deepEqual(attaches.map((a) => [a.phase, a.table?.name]).sort(), [
        ['final', 'measurements_2023'],
        ['final', 'measurements_2024'],
      ]);
      assert.deepEqual(
        dump.postData.filter((i) => i.kind === 'other').map((i) => i.label),
        [],
      );
      assert.ok(
        dump.postData.every((i) => i.table !== undefined),
        'every post-data item has its table',
      );

      // pre-data: every table, no index, no foreign key, no row.
      const targetDb = await createDatabase(target, uniqueName('target'));
      const spec = targetSpec(targetDb);
      await applySchemaSection({
        target: spec,
        tools: pgTools,
        dump,
        entries: 'pre-data',
        singleTransaction: true,
        sessionSettings: { maintenance_work_mem: '64MB' },
      });
      assert.deepEqual(
        await target.sql(USER_RELATIONS, targetDb, [['r', 'p', 'm', 'v', 'S']]),
        await source.sql(USER_RELATIONS, sourceDb, [['r', 'p', 'm', 'v', 'S']]),
      );
      assert.deepEqual(await target.sql(USER_INDEXES, targetDb), []);
      assert.deepEqual(await target.sql(USER_CONSTRAINTS, targetDb, [['f', 'p', 'u']]), []);
      const [fn] = await target.sql<{ src: string }>(
        `SELECT prosrc AS src FROM pg_catalog.pg_proc WHERE proname = 'count_order'`,
        targetDb,
      );
      assert.match(
        fn?.src ?? '',
        /The word GRANT inside a body must survive the schema copy: GRANT ALL ON nothing;/,
      );
      assert.equal(await rowCount(target, targetDb), 0, 'the schema stage copies no rows');
      const [mv] = await target.sql<{ populated: boolean }>(
        `SELECT relispopulated AS populated FROM pg_catalog.pg_class WHERE relname = 'revenue_by_status'`,
        targetDb,
      );
      assert.equal(mv?.populated, false);

      // One table's own items: that table gets its indexes, the others none yet.
      const orders = itemsForTable(dump, { schema: 'sales', name: 'orders' });
      assert.deepEqual(orders.map((i) => i.objectName).sort(), [
        'orders_attrs_idx',
        'orders_customer_idx',
        'orders_pkey',
      ]);
      await applySchemaSection({
        target: spec,
        tools: pgTools,
        dump,
        entries: orders,
        singleTransaction: false,
      });
      assert.deepEqual(
        (await target.sql<{ def: string }>(USER_INDEXES, targetDb)).map((r) => r.def.split(' ')[0]),
        ['sales.orders', 'sales.orders', 'sales.orders'],
      );

      // Every other table's items, then the final ones: the target's indexes and constraints are the source's.
      const rest = dump.postData.filter((i) => i.phase === 'table' && !orders.includes(i));
      await applySchemaSection({
        target: spec,
        tools: pgTools,
        dump,
        entries: rest,
        singleTransaction: false,
      });
      const sqlText = await schemaSql({ tools: pgTools, dump, entries: finalItems(dump) });
      assert.match(sqlText, /FOREIGN KEY \(customer_id\) REFERENCES sales\.customers\(id\)/);
      assert.doesNotMatch(sqlText, /CREATE INDEX orders_customer_idx/);
      await applySchemaSection({
        target: spec,
        tools: pgTools,
        dump,
        entries: finalItems(dump),
        singleTransaction: true,
      });
      assert.deepEqual(
        defs(await target.sql(USER_INDEXES, targetDb)),
        defs(await source.sql(USER_INDEXES, sourceDb)),
      );
      const kinds = [['f', 'p', 'u', 'c', 'x']];
      const targetConstraints = defs(await target.sql(USER_CONSTRAINTS, targetDb, kinds));
      assert.deepEqual(targetConstraints, defs(await source.sql(USER_CONSTRAINTS, sourceDb, kinds)));
      assert.equal(targetConstraints.filter((d) => d.includes('FOREIGN KEY')).length, 3);
      const triggers = await target.sql<{ tgname: string }>(
        `SELECT tgname FROM pg_catalog.pg_trigger WHERE NOT tgisinternal`,
        targetDb,
      );
      assert.deepEqual(
        triggers.map((t) => t.tgname),
        ['orders_count'],
      );
      assert.equal(await rowCount(target, targetDb), 0);
    });
  }

  test('the password reaches pg_dump and pg_restore only through the environment', () => {
    const spec = sourceSpec(SYSTEM_MAJOR, 'postgres');
    assert.equal(spec.password, 'sandbox');
    const conninfo = childConninfo(spec, 'pgconvoy test');
    assert.ok(!conninfo.includes('sandbox'), conninfo);
    assert.match(conninfo, /port='\d+'/);
    assert.equal(childEnv(spec, { maintenance_work_mem: '1GB' }).PGPASSWORD, 'sandbox');
    assert.equal(childEnv(spec, { maintenance_work_mem: '1GB' }).PGOPTIONS, '-c maintenance_work_mem=1GB');
  });

  test('finding pg_dump: the newest suitable one, skipping the pg_wrapper', () => {
    const found = findPgTools({ sourceMajor: OLD_MAJOR, pathEnv: process.env.PATH ?? '' });
    assert.equal(found.major, SYSTEM_MAJOR);
    assert.equal(found.pgDump, `/usr/lib/postgresql/${SYSTEM_MAJOR}/bin/pg_dump`);
    assert.equal(found.pgRestore, `/usr/lib/postgresql/${SYSTEM_MAJOR}/bin/pg_restore`);
    const empty = mkdtempSync(path.join(scratch, 'empty-'));
    const viaPgBin = findPgTools({
      sourceMajor: SYSTEM_MAJOR,
      pgBin: `/usr/lib/postgresql/${SYSTEM_MAJOR}/bin`,
      pathEnv: '',
      systemRoot: empty,
    });
    assert.equal(viaPgBin.dir, `/usr/lib/postgresql/${SYSTEM_MAJOR}/bin`);
  });

  test('no pg_dump at all → NO_PG_DUMP with what to install', () => {
    const emptyBin = mkdtempSync(path.join(scratch, 'bin-'));
    const emptyRoot = mkdtempSync(path.join(scratch, 'root-'));
    mkdirSync(path.join(emptyRoot, '15', 'bin'), { recursive: true });
    try {
      findPgTools({ sourceMajor: SYSTEM_MAJOR, pgBin: emptyBin, pathEnv: '', systemRoot: emptyRoot });
      assert.fail('expected NO_PG_DUMP');
    } catch (err) {
      assert.ok(err instanceof PgconvoyError);
      assert.equal(err.code, 'NO_PG_DUMP');
      assert.equal(err.exitCode, EXIT.config, 'a missing tool is not a bad argument');
      assert.match(err.message, /needs pg_dump 15 or newer; found no pg_dump \(looked in /);
      assert.ok(err.message.includes(emptyBin), err.message);
      assert.equal(
        err.hint,
        'install postgresql-client-15 (or newer), or pass --pg-bin DIR naming a directory with pg_dump and pg_restore 15+',
      );
    }
  });

  test(`a PostgreSQL ${NEW_MAJOR} source with only pg_dump ${SYSTEM_MAJOR} → NO_PG_DUMP naming ${NEW_MAJOR}`, async () => {
    const [row] = await target.sql<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
    const sourceMajor = Math.floor(Number(row?.v) / 10000);
    assert.equal(sourceMajor, NEW_MAJOR);
    try {
      findPgTools({ sourceMajor, pathEnv: process.env.PATH ?? '' });
      assert.fail('expected NO_PG_DUMP');
    } catch (err) {
      assert.ok(err instanceof PgconvoyError);
      assert.equal(err.code, 'NO_PG_DUMP');
      assert.equal(
        err.message,
        `the source is PostgreSQL ${NEW_MAJOR}, which needs pg_dump ${NEW_MAJOR} or newer; ` +
          `found only pg_dump ${SYSTEM_MAJOR} in /usr/lib/postgresql/${SYSTEM_MAJOR}/bin`,
      );
      assert.match(err.hint ?? '', new RegExp(`postgresql-client-${NEW_MAJOR}`));
    }
  });

  test('a conflicting object on the target: the statement and the error, and nothing half-applied', async () => {
    const pgTools = tools.get(SYSTEM_MAJOR) as PgTools;
    const dump = await dumpSchema({
      source: sourceSpec(SYSTEM_MAJOR, featureDb.get(SYSTEM_MAJOR) as string),
      tools: pgTools,
      runDir: runDir(),
      excludeSchemas: [],
    });
    const targetDb = await createDatabase(target, uniqueName('conflict'));
    await target.sql(`CREATE TABLE public."MixedCase" (something_else text)`, targetDb);
    const apply = () =>
      applySchemaSection({
        target: targetSpec(targetDb),
        tools: pgTools,
        dump,
        entries: 'pre-data',
        singleTransaction: true,
      });
    const err = await rejectsWith(apply(), 'SCHEMA_APPLY_FAILED');
    assert.equal(err.exitCode, EXIT.target);
    assert.match(err.message, /failed at TABLE "public\.MixedCase"/);
    assert.match(err.message, /ERROR: relation "MixedCase" already exists/);
    assert.match(
      err.message,
      /the statement was: CREATE TABLE public\."MixedCase" \( "Id" integer NOT NULL, "Value" text \);/,
    );
    assert.match(err.message, /rolled back/);
    assert.match(err.hint ?? '', /already has an object of that name/);
    const [left] = await target.sql<{ customers: string | null; sales: number }>(
      `SELECT to_regclass('sales.customers')::text AS customers,
              (SELECT count(*)::int FROM pg_catalog.pg_namespace WHERE nspname = 'sales') AS sales`,
      targetDb,
    );
    assert.deepEqual(left, { customers: null, sales: 0 });

    // Once the conflict is gone, the same step runs from a clean target.
    await target.sql(`DROP TABLE public."MixedCase"`, targetDb);
    await apply();
    const [now] = await target.sql<{ customers: string | null }>(
      `SELECT to_regclass('sales.customers')::text AS customers`,
      targetDb,
    );
    assert.equal(now?.customers, 'sales.customers');
  });

  test('a role that owns objects but does not exist on the target', async () => {
    const source = servers.get(SYSTEM_MAJOR) as LocalServer;
    const pgTools = tools.get(SYSTEM_MAJOR) as PgTools;
    const role = uniqueName('App Owner');
    const reader = uniqueName('reader');
    const db = await createDatabase(source, uniqueName('owned'));
    await source.sql(
      `CREATE ROLE "${role}"; CREATE ROLE "${reader}";
       CREATE TABLE public.owned (id int PRIMARY KEY); ALTER TABLE public.owned OWNER TO "${role}";
       CREATE TABLE public.shared (id int); GRANT SELECT ON public.shared TO "${reader}";`,
      db,
    );
    const dump = await dumpSchema({
      source: sourceSpec(SYSTEM_MAJOR, db),
      tools: pgTools,
      runDir: runDir(),
      excludeSchemas: [],
    });
    const targetDb = await createDatabase(target, uniqueName('noroles'));
    const apply = (noOwner: boolean, noPrivileges: boolean) =>
      applySchemaSection({
        target: targetSpec(targetDb),
        tools: pgTools,
        dump,
        entries: 'pre-data',
        singleTransaction: true,
        noOwner,
        noPrivileges,
      });

    const owner = await rejectsWith(apply(false, false), 'SCHEMA_APPLY_FAILED');
    assert.ok(owner.message.includes(`ERROR: role "${role}" does not exist`), owner.message);
    assert.ok(owner.message.includes(`OWNER TO "${role}"`), owner.message);
    assert.equal(
      owner.hint,
      `the role "${role}" does not exist on the target: create the roles first (pg_dumpall --roles-only | psql) or pass --no-owner`,
    );

    const grant = await rejectsWith(apply(true, false), 'SCHEMA_APPLY_FAILED');
    assert.ok(grant.message.includes(`role "${reader}" does not exist`), grant.message);
    assert.ok(grant.message.includes(`GRANT SELECT ON TABLE public.shared TO ${reader};`), grant.message);
    assert.match(grant.hint ?? '', /or pass --no-privileges$/);
    const [none] = await target.sql<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_catalog.pg_class WHERE relname IN ('owned', 'shared')`,
      targetDb,
    );
    assert.equal(none?.n, 0, 'single transaction: nothing applied');

    await apply(true, true);
    const owners = await target.sql<{ relname: string; owner: string }>(
      `SELECT relname, relowner::regrole::text AS owner FROM pg_catalog.pg_class
       WHERE relname IN ('owned', 'shared') ORDER BY 1`,
      targetDb,
    );
    assert.deepEqual(owners, [
      { relname: 'owned', owner: 'postgres' },
      { relname: 'shared', owner: 'postgres' },
    ]);
  });

  test('pg_dump failing: its message, the source named, no password', async () => {
    const err = await rejectsWith(
      dumpSchema({
        source: sourceSpec(SYSTEM_MAJOR, 'no such db'),
        tools: tools.get(SYSTEM_MAJOR) as PgTools,
        runDir: runDir(),
        excludeSchemas: [],
      }),
      'SCHEMA_DUMP_FAILED',
    );
    assert.equal(err.exitCode, EXIT.source);
    assert.match(
      err.message,
      /^pg_dump --schema-only failed for the source postgres@127\.0\.0\.1:\d+\/no such db \(exit code 1\): /,
    );
    assert.match(err.message, /database "no such db" does not exist/);
    assert.ok(!err.message.includes('sandbox'));
    assert.ok(err.hint);
  });

  test('the ledger schema is left out of the dump', async () => {
    const source = servers.get(SYSTEM_MAJOR) as LocalServer;
    const db = await createDatabase(source, uniqueName('ledger'));
    await source.sql(
      `CREATE SCHEMA pgconvoy; CREATE TABLE pgconvoy.jobs (id int); CREATE TABLE public.kept (id int);`,
      db,
    );
    const dump: SchemaDump = await dumpSchema({
      source: sourceSpec(SYSTEM_MAJOR, db),
      tools: tools.get(SYSTEM_MAJOR) as PgTools,
      runDir: runDir(),
      excludeSchemas: ['pgconvoy'],
    });
    const whole = readFileSync(dump.files.whole, 'utf8');
    assert.match(whole, /CREATE TABLE public\.kept/);
    assert.doesNotMatch(whole, /pgconvoy/);
  });
});
