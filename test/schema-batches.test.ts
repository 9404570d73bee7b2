/**
 * Many tables on a target whose lock table cannot hold them all in one transaction, and
 * pgconvoy killed (SIGKILL) in the middle of its schema and index steps: every step is
 * atomic with its ledger mark, so the same command finishes and the result equals the source.
 *
 * To kill at a known statement, the test makes pgconvoy's psql wait there: a session of the
 * test holds an uncommitted DROP ROLE of the role that owns a table halfway through the
 * schema (ALTER … OWNER TO waits for it), or an advisory lock that an index expression takes.
 * psql outlives pgconvoy and goes on once the lock is let go: whatever it still reads, it must
 * not commit (a rerun would race it, and a script cut short would commit half a step).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
} from './helpers/servers.js';
import { catalogFacts } from './helpers/compare.js';
import { runTool } from '../src/schema/run-tool.js';
import { findPgTools } from '../src/schema/pg-tools.js';

const SCHEMAS = 20;
const TABLES = 8;
const GATE_LOCK = 4242;

/** 20 schemas × 8 tables, each with a serial primary key, a foreign key to the one before and an index on it. */
function manyTablesSql(): string {
  let sql = `CREATE FUNCTION public.gate(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_catalog.pg_advisory_lock_shared(${GATE_LOCK}); PERFORM pg_catalog.pg_advisory_unlock_shared(${GATE_LOCK}); RETURN x; END $$;\n`;
  for (let s = 1; s <= SCHEMAS; s++) {
    sql += `CREATE SCHEMA s${s};\n`;
    for (let t = 1; t <= TABLES; t++) {
      const fk = t > 1 ? `, parent_id int REFERENCES s${s}.t${t - 1} (id)` : '';
      sql += `CREATE TABLE s${s}.t${t} (id serial PRIMARY KEY, v text${fk});\n`;
      if (t > 1) sql += `CREATE INDEX ON s${s}.t${t} (parent_id);\n`;
      sql += `INSERT INTO s${s}.t${t} (v${t > 1 ? ', parent_id' : ''}) SELECT 'v' || g${t > 1 ? ', g' : ''} FROM generate_series(1, 3) g;\n`;
    }
  }
  // Halfway through the schema: a table whose owner the test can make pgconvoy wait for.
  sql += `ALTER TABLE s10.t4 OWNER TO late_owner;\n`;
  // An index whose build the test can make wait.
  sql += `CREATE INDEX gated_idx ON s15.t5 (public.gate(id));\n`;
  return sql;
}

async function holdOpen(server: LocalServer, db: string, sql: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: server.url(db) });
  await client.connect();
  await client.query(sql);
  return client;
}

/** Resolves once a session named `app` waits for a lock on the target (pgconvoy's psql is stuck there). */
async function waitingSession(server: LocalServer, app: string): Promise<void> {
  for (const deadline = Date.now() + 90_000; Date.now() < deadline;) {
    const rows = await server.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
      'postgres',
      [app],
    );
    if (rows[0]!.n !== '0') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${app} session ever waited`);
}

/** Resolves once no pgconvoy session is left on the target (psql went on alone after the kill). */
async function sessionsGone(server: LocalServer): Promise<void> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    const rows = await server.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'pgconvoy%'`,
    );
    if (rows[0]!.n === '0') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('pgconvoy sessions still on the target');
}

/** Runs clone, kills it with SIGKILL once `app` waits for the lock `blocker` holds, then lets the lock go. */
async function killWhileWaiting(args: string[], target: LocalServer, app: string, blocker: pg.Client) {
  let child: ChildProcess | undefined;
  const run = runCli(args, { onSpawn: (c) => (child = c) });
  try {
    await waitingSession(target, app);
  } finally {
    child!.kill('SIGKILL');
    await blocker.query('ROLLBACK').finally(() => blocker.end());
  }
  const first = await run;
  await sessionsGone(target);
  return first;
}

async function stepNames(target: LocalServer, db: string): Promise<string[]> {
  const rows = await target.sql<{ name: string }>(`SELECT name FROM pgconvoy.steps ORDER BY name`, db);
  return rows.map((r) => r.name);
}

/** Per table of the test's schemas: row count and a checksum of its rows, one query per schema (few locks). */
async function tableDigests(server: LocalServer, db: string): Promise<{ t: string; d: string }[]> {
  const perTable =
    "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))), '-') AS d FROM ONLY %I.%I x";
  const all: { t: string; d: string }[] = [];
  for (let s = 1; s <= SCHEMAS; s++) {
    const rows = await server.sql<{ t: string; d: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS t,
              (xpath('/row/d/text()', query_to_xml(format($1, n.nspname, c.relname), false, true, '')))[1]::text AS d
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname = $2 ORDER BY 1`,
      db,
      [perTable, `s${s}`],
    );
    all.push(...rows);
  }
  return all;
}

async function assertSameAsSource(source: LocalServer, target: LocalServer, db: string): Promise<void> {
  const expected = await tableDigests(source, db);
  assert.equal(expected.length, SCHEMAS * TABLES);
  assert.deepEqual(await tableDigests(target, db), expected);
  assert.deepEqual(await catalogFacts(target, db), await catalogFacts(source, db));
}

describe('clone: many tables, a small lock table, kills in the schema and index steps', () => {
  let source: LocalServer;
  let small: LocalServer;
  let roomy: LocalServer;
  const template = uniqueName('many_tpl');
  const cloneArgs = (target: LocalServer, db: string, create = true) => [
    'clone',
    '--source',
    source.url(db),
    '--target',
    target.url(db),
    ...(create ? ['--create-database'] : []),
    '--jobs',
    '2',
    '--index-jobs',
    '1',
    '--run-dir',
    tempDir('pgconvoy-run-'),
  ];
  before(async () => {
    [source, small, roomy] = await Promise.all([
      startServer(SYSTEM_MAJOR),
      // 10 locks × 20 process slots: the schema (160 tables, 160 sequences) does not fit one transaction.
      // PostgreSQL 15 like the pg_dump here, to be the source of the last test too.
      startServer(SYSTEM_MAJOR, {
        settings: {
          max_locks_per_transaction: 10,
          max_connections: 15,
          autovacuum_max_workers: 1,
          max_worker_processes: 2,
          max_wal_senders: 1,
          max_replication_slots: 1,
        },
      }),
      startServer(NEW_MAJOR),
    ]);
    for (const server of [source, small, roomy]) await server.sql('CREATE ROLE late_owner');
    await createDatabase(source, template);
    await source.sql(manyTablesSql(), template);
  });
  after(async () => Promise.all([source?.destroy(), small?.destroy(), roomy?.destroy()]));

  test('killed in the middle of the schema batches on a small lock table: the rerun resumes and completes', async () => {
    const db = await createDatabase(source, uniqueName('batches'), template);
    // The schema waits at s10.t4's owner, half its batches in.
    const blocker = await holdOpen(small, 'postgres', 'BEGIN; DROP ROLE late_owner');
    const first = await killWhileWaiting(cloneArgs(small, db), small, 'pgconvoy schema', blocker);
    assert.equal(first.signal, 'SIGKILL');
    const progress = await small.sql<{ units: number; of: number }>(
      `SELECT (detail->>'units')::int AS units, (detail->>'of')::int AS of FROM pgconvoy.steps WHERE name = 'schema:progress'`,
      db,
    );
    assert.ok(
      progress[0] && progress[0].units > 0 && progress[0].units < progress[0].of,
      JSON.stringify(progress),
    );
    assert.ok(!(await stepNames(small, db)).includes('schema'), 'the schema step is not done');

    const second = await runCli(cloneArgs(small, db));
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout + second.stderr, /item\(s\) were already in/);
    await assertSameAsSource(source, small, db);
  });

  test('killed inside the one-transaction schema: nothing of it commits, the rerun completes', async () => {
    const db = await createDatabase(source, uniqueName('onetx'), template);
    const blocker = await holdOpen(roomy, 'postgres', 'BEGIN; DROP ROLE late_owner');
    const first = await killWhileWaiting(cloneArgs(roomy, db), roomy, 'pgconvoy schema', blocker);
    assert.equal(first.signal, 'SIGKILL');
    const tables = await roomy.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 's%' AND c.relkind = 'r'`,
      db,
    );
    assert.equal(tables[0]!.n, '0', 'no table of the schema committed without its mark');

    const second = await runCli(cloneArgs(roomy, db));
    assert.equal(second.code, 0, second.stderr);
    await assertSameAsSource(source, roomy, db);
  });

  test("killed while a table's indexes are built: the rerun builds them once and completes", async () => {
    const db = await createDatabase(source, uniqueName('index'), template);
    await createDatabase(roomy, db);
    const blocker = await holdOpen(roomy, db, `BEGIN; SELECT pg_advisory_xact_lock(${GATE_LOCK})`);
    const first = await killWhileWaiting(cloneArgs(roomy, db, false), roomy, 'pgconvoy index', blocker);
    assert.equal(first.signal, 'SIGKILL');
    assert.ok(!(await stepNames(roomy, db)).includes('post-data'));
    const gated = await roomy.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'gated_idx'`,
      db,
    );
    assert.equal(gated[0]!.n, '0', 'the build psql went on with after pgconvoy died did not commit');

    const second = await runCli(cloneArgs(roomy, db, false));
    assert.equal(second.code, 0, second.stderr);
    await assertSameAsSource(source, roomy, db);
  });

  test('a source whose lock table one pg_dump transaction would overflow is refused before anything is written', async () => {
    const db = await createDatabase(small, uniqueName('toomany'));
    // 600 tables, created 20 per transaction (the server could not create them at once either).
    for (let i = 0; i < 30; i++) {
      const sql = Array.from({ length: 20 }, (_, k) => `CREATE TABLE t${i * 20 + k} (id int);`).join('');
      await small.sql(sql, db);
    }
    const tools = findPgTools({ sourceMajor: SYSTEM_MAJOR, pathEnv: '' });
    const dump = await runTool(
      tools.pgDump,
      ['--schema-only', '--file=/dev/null', `--dbname=${small.url(db)}`],
      {},
    );
    assert.notEqual(dump.code, 0, 'pg_dump itself runs out of locks there');
    assert.match(dump.stderr, /out of shared memory|max_locks_per_transaction/);

    const res = await runCli([
      'clone',
      '--source',
      small.url(db),
      '--target',
      roomy.url(db),
      '--create-database',
      '--run-dir',
      tempDir('pgconvoy-run-'),
    ]);
    assert.equal(res.code, 4, res.stderr);
    assert.match(
      res.stderr,
      /the source's lock table is too small: pg_dump would lock 600 tables and views in one transaction/,
    );
    assert.match(
      res.stderr,
      /hint: nothing was written; set max_locks_per_transaction to at least \d+ on the source .*restart/,
    );
    const created = await roomy.sql<{ n: string }>(
      'SELECT count(*) AS n FROM pg_database WHERE datname = $1',
      'postgres',
      [db],
    );
    assert.equal(created[0]!.n, '0', 'the target database was not even created');
  });
});
