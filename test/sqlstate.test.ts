import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgconvoyError } from '../src/errors.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { SQLSTATE, isLostConnection, isTransient, sqlstateOf } from '../src/sqlstate.js';
import { SYSTEM_MAJOR, createDatabase, startServer, uniqueName } from './helpers/servers.js';

/** Every error below comes from a real server (RAISE … USING ERRCODE where a state is hard to provoke). */
describe('SQLSTATE classification', () => {
  let server: LocalServer;
  let db: string;
  const clients: pg.Client[] = [];
  const connect = async () => {
    const c = new pg.Client({ connectionString: server.url(db) });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  const failure = async (c: pg.Client, sql: string): Promise<unknown> => {
    try {
      await c.query(sql);
    } catch (err) {
      return err;
    }
    assert.fail(`no error from ${sql}`);
  };
  const raised = async (code: string) =>
    failure(await connect(), `DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '${code}'; END $$`);

  before(async () => {
    server = await startServer(SYSTEM_MAJOR);
    db = await createDatabase(server, uniqueName('sqlstate'));
    await server.sql(
      `CREATE TABLE public.t (id int PRIMARY KEY, n int); INSERT INTO public.t VALUES (1, 0), (2, 0);
       CREATE ROLE nobody LOGIN PASSWORD 'nobody'; GRANT CONNECT ON DATABASE "${db}" TO nobody;`,
      db,
    );
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await server?.destroy();
  });

  test('transient: connection terminated by the administrator (57P01)', async () => {
    const victim = await connect();
    const pid = (await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const killer = await connect();
    await killer.query('SELECT pg_terminate_backend($1)', [pid]);
    const err = await failure(victim, 'SELECT 1');
    assert.ok(isTransient(err), String(err));
    assert.ok(isLostConnection(err), String(err));
  });

  test('transient: a session whose socket is gone (no SQLSTATE)', async () => {
    const c = await connect();
    await c.end();
    const err = await failure(c, 'SELECT 1');
    assert.equal(sqlstateOf(err), undefined);
    assert.ok(isTransient(err), String(err));
  });

  test('transient: deadlock (40P01)', async () => {
    const [a, b] = [await connect(), await connect()];
    await a.query('BEGIN');
    await b.query('BEGIN');
    await a.query('UPDATE public.t SET n = n + 1 WHERE id = 1');
    await b.query('UPDATE public.t SET n = n + 1 WHERE id = 2');
    const results = await Promise.allSettled([
      a.query('UPDATE public.t SET n = n + 1 WHERE id = 2'),
      b.query('UPDATE public.t SET n = n + 1 WHERE id = 1'),
    ]);
    await Promise.all([a.query('ROLLBACK'), b.query('ROLLBACK')]);
    const err: unknown = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason;
    assert.equal(sqlstateOf(err), SQLSTATE.deadlockDetected);
    assert.ok(isTransient(err));
    assert.ok(!isLostConnection(err), 'a deadlock does not lose the session');
  });

  test('transient: serialization failure (40001)', async () => {
    const [a, b] = [await connect(), await connect()];
    await a.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await a.query('SELECT * FROM public.t');
    await b.query('UPDATE public.t SET n = n + 1 WHERE id = 1');
    const err = await failure(a, 'UPDATE public.t SET n = n + 1 WHERE id = 1');
    await a.query('ROLLBACK');
    assert.equal(sqlstateOf(err), SQLSTATE.serializationFailure);
    assert.ok(isTransient(err));
  });

  test('transient: lock not available (55P03)', async () => {
    const [a, b] = [await connect(), await connect()];
    await a.query('BEGIN');
    await a.query('SELECT * FROM public.t FOR UPDATE');
    const err = await failure(b, 'SELECT * FROM public.t FOR UPDATE NOWAIT');
    await a.query('ROLLBACK');
    assert.equal(sqlstateOf(err), SQLSTATE.lockNotAvailable);
    assert.ok(isTransient(err));
  });

  test('transient: every other busy or lost-server state', async () => {
    for (const code of [
      SQLSTATE.crashShutdown,
      SQLSTATE.cannotConnectNow,
      SQLSTATE.tooManyConnections,
      SQLSTATE.configurationLimitExceeded,
      '08006',
      '08P01',
    ]) {
      const err = await raised(code);
      assert.equal(sqlstateOf(err), code);
      assert.ok(isTransient(err), code);
    }
    assert.ok(isLostConnection(await raised(SQLSTATE.crashShutdown)));
    assert.ok(!isLostConnection(await raised(SQLSTATE.tooManyConnections)));
  });

  test('not transient: permission denied, syntax, missing table, bad data, canceled', async () => {
    const nobody = new pg.Client({ connectionString: server.url(db, 'nobody', 'nobody') });
    await nobody.connect();
    clients.push(nobody);
    const c = await connect();
    const cases: [unknown, string][] = [
      [await failure(nobody, 'SELECT * FROM public.t'), SQLSTATE.insufficientPrivilege],
      [await failure(c, 'SELEC 1'), SQLSTATE.syntaxError],
      [await failure(c, 'SELECT * FROM public.nosuch'), SQLSTATE.undefinedTable],
      [await failure(c, "SELECT 'x'::int"), '22P02'],
      [await failure(c, 'INSERT INTO public.t VALUES (1, 0)'), '23505'],
      [await failure(c, 'SET statement_timeout = 1; SELECT pg_sleep(1)'), SQLSTATE.queryCanceled],
    ];
    await c.query('RESET statement_timeout');
    for (const [err, code] of cases) {
      assert.equal(sqlstateOf(err), code);
      assert.ok(!isTransient(err), `${code} is not transient`);
      assert.ok(!isLostConnection(err), `${code} does not lose the session`);
    }
  });

  test("psql's SQLSTATE (kept by apply-sql) and its words for a lost connection", () => {
    const fromPsql = (sqlstate: string | undefined, psqlOutput: string) =>
      new PgconvoyError('applying x failed', {
        code: 'SCHEMA_APPLY_FAILED',
        details: { psqlOutput, ...(sqlstate ? { sqlstate } : {}) },
      });
    assert.ok(isLostConnection(fromPsql(SQLSTATE.adminShutdown, 'FATAL:  57P01: terminating connection')));
    assert.ok(isLostConnection(fromPsql(undefined, 'psql: server closed the connection unexpectedly')));
    assert.ok(!isLostConnection(fromPsql('42P07', 'ERROR:  42P07: relation "t" already exists')));
    assert.equal(sqlstateOf(fromPsql('42P07', '')), '42P07');
  });
});
