/**
 * Online migration with the rights a managed service gives (no superuser on either side):
 * on the source, `mig` owns the database and its tables and has REPLICATION (and
 * pg_signal_backend, as cloud admin roles do); on the target, `mig` owns the database and
 * holds pg_create_subscription. Every pgconvoy command runs as `mig`, with scram passwords
 * over TCP. An application role writes from before `start` until after `cutover`.
 * Afterwards every insert it saw commit is on the target, source and target hold the same
 * rows, writes after the freeze fail, and a role of ANOTHER database of the source server
 * still logs in and writes there (the freeze touched nothing outside the migration).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { Writer, eventsFixture } from './helpers/insert-writer.js';
import { NEW_MAJOR, SYSTEM_MAJOR, runCli, startServer } from './helpers/servers.js';

let source: LocalServer;
let target: LocalServer;
const DB = 'mgd';
const OTHER = 'otherdb';

before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  await source.sql(`
    CREATE ROLE mig LOGIN REPLICATION PASSWORD 'migpw';
    GRANT pg_signal_backend TO mig;
    CREATE ROLE app LOGIN PASSWORD 'apppw';
    CREATE ROLE other_app LOGIN PASSWORD 'otherpw';`);
  await source.sql(`CREATE DATABASE ${DB} OWNER mig`);
  await source.sql(`CREATE DATABASE ${OTHER} OWNER other_app`);
  await source.sql(`SET ROLE mig; ${eventsFixture(2000)}`, DB);
  await source.sql('SET ROLE other_app; CREATE TABLE public.t (v int)', OTHER);
  await target.sql(`
    CREATE ROLE mig LOGIN PASSWORD 'migpw' IN ROLE pg_create_subscription;
    CREATE ROLE app LOGIN PASSWORD 'apppw';`);
  await target.sql(`CREATE DATABASE ${DB} OWNER mig`);
  // Nobody here is a superuser but the sandbox's own "postgres", which pgconvoy never uses.
  const supers = await source.sql<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_roles WHERE rolsuper AND rolname <> 'postgres'",
  );
  assert.equal(supers[0]?.n, 0);
});
after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

describe(`online migration ${SYSTEM_MAJOR} → ${NEW_MAJOR} as a non-superuser on both sides`, () => {
  const args = () => ['--source', source.url(DB, 'mig', 'migpw'), '--target', target.url(DB, 'mig', 'migpw')];
  test('precheck names the rights the freeze needs, and the GRANT that gives them', async () => {
    await source.sql(`CREATE ROLE weak LOGIN REPLICATION PASSWORD 'weakpw'`);
    await source.sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO weak', DB);
    const run = await runCli([
      'precheck',
      '--source',
      source.url(DB, 'weak', 'weakpw'),
      '--target',
      target.url(DB, 'mig', 'migpw'),
      '--json',
    ]);
    assert.equal(run.code, 7, run.stdout + run.stderr);
    const rows = (JSON.parse(run.stdout) as { rows: { id: string; status: string; hint?: string }[] }).rows;
    const freeze = rows.find((r) => r.id === 'source.freeze_rights');
    assert.equal(freeze?.status, 'fail');
    assert.match(freeze?.hint ?? '', /ALTER DATABASE "mgd" OWNER TO "weak"/);
    const end = rows.find((r) => r.id === 'source.end_sessions');
    assert.equal(end?.status, 'warn');
    assert.match(end?.hint ?? '', /GRANT pg_signal_backend TO "weak"/);
  });

  test('precheck, start under a writer, status, cutover, verify, teardown', async () => {
    const writer = new Writer(
      'app',
      { host: '127.0.0.1', port: source.port, database: DB, user: 'app', password: 'apppw' },
      'short',
    );
    const precheck = await runCli(['precheck', ...args()]);
    assert.equal(precheck.code, 0, precheck.stdout + precheck.stderr);
    writer.start();
    try {
      const start = await runCli(['start', ...args(), '--no-owner', '--no-privileges']);
      assert.equal(start.code, 0, start.stdout + start.stderr);
      await new Promise((r) => setTimeout(r, 500));
      const status = await runCli(['status', ...args(), '--json']);
      assert.equal(status.code, 0, status.stderr);
      assert.equal(
        (JSON.parse(status.stdout) as { online: { state: { phase: string } } }).online.state.phase,
        'replicating',
      );
      const cutover = await runCli(['cutover', ...args(), '--json']);
      assert.equal(cutover.code, 0, cutover.stdout + cutover.stderr);
      const finishedAt = Date.now();
      const r = JSON.parse(cutover.stdout) as { verify: { ok: boolean }; revokedConnect: string[] };
      assert.equal(r.verify.ok, true);
      assert.deepEqual(r.revokedConnect, ['PUBLIC']);
      await new Promise((res) => setTimeout(res, 400));
      await writer.stop();
      const onTarget = new Set(
        (await target.sql<{ k: string }>("SELECT writer || ':' || n AS k FROM public.events", DB)).map(
          (x) => x.k,
        ),
      );
      assert.deepEqual(
        writer.committed.filter((n) => !onTarget.has(`app:${n}`)),
        [],
        'every insert the application saw commit is on the target',
      );
      const count = async (s: LocalServer) =>
        (await s.sql<{ n: number }>('SELECT count(*)::int AS n FROM public.events', DB))[0]?.n;
      assert.equal(await count(target), await count(source), 'the same rows on both sides');
      const late = writer.attempts.filter((a) => a.at > finishedAt);
      assert.ok(late.length > 0 && late.every((a) => !a.ok), 'writes after the freeze fail');
      assert.ok(
        late.every((a) => a.error === '42501'),
        `refused: ${late.map((a) => a.error).join(',')}`,
      );

      // Outside the migration nothing changed: another database's role logs in and writes.
      const other = new pg.Client({
        host: '127.0.0.1',
        port: source.port,
        database: OTHER,
        user: 'other_app',
        password: 'otherpw',
      });
      await other.connect();
      try {
        await other.query('INSERT INTO public.t VALUES (1)');
      } finally {
        await other.end();
      }
      const verify = await runCli(['verify', ...args()]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      const teardown = await runCli(['teardown', ...args()]);
      assert.equal(teardown.code, 0, teardown.stderr);
    } finally {
      await writer.stop();
    }
  });
});

describe(`start-back and rollback as non-superusers, ${NEW_MAJOR} → ${NEW_MAJOR}`, () => {
  let a: LocalServer;
  let b: LocalServer;
  // No pg_dump newer than 15 here: the schema is made from SQL on both sides (--schema skip).
  const SCHEMA = `CREATE TABLE public.events (id bigserial PRIMARY KEY, writer text NOT NULL, n integer NOT NULL, UNIQUE (writer, n));`;
  before(async () => {
    [a, b] = await Promise.all([startServer(NEW_MAJOR), startServer(NEW_MAJOR)]);
    for (const s of [a, b]) {
      await s.sql(
        `CREATE ROLE mig LOGIN REPLICATION PASSWORD 'migpw' IN ROLE pg_create_subscription, pg_signal_backend`,
      );
      await s.sql(`CREATE DATABASE ${DB} OWNER mig`);
      await s.sql(`SET ROLE mig; ${SCHEMA}`, DB);
    }
    await a.sql(
      `SET ROLE mig; INSERT INTO public.events (writer, n) SELECT 'seed', g FROM generate_series(1, 500) g`,
      DB,
    );
  });
  after(async () => Promise.all([a?.destroy(), b?.destroy()]));

  test('start, start-back, cutover, a write on the target, rollback: the write is on the source', async () => {
    const args = ['--source', a.url(DB, 'mig', 'migpw'), '--target', b.url(DB, 'mig', 'migpw')];
    const start = await runCli(['start', ...args, '--schema', 'skip']);
    assert.equal(start.code, 0, start.stdout + start.stderr);
    const back = await runCli(['start-back', ...args]);
    assert.equal(back.code, 0, back.stdout + back.stderr);
    await a.sql(`SET ROLE mig; INSERT INTO public.events (writer, n) VALUES ('before cutover', 1)`, DB);
    const cutover = await runCli(['cutover', ...args, '--json']);
    assert.equal(cutover.code, 0, cutover.stdout + cutover.stderr);
    const r = JSON.parse(cutover.stdout) as { backReplication: { originNone: boolean } };
    assert.deepEqual(r.backReplication, { originNone: true });
    await b.sql(`SET ROLE mig; INSERT INTO public.events (writer, n) VALUES ('on the target', 1)`, DB);
    const rollback = await runCli(['rollback', ...args]);
    assert.equal(rollback.code, 0, rollback.stdout + rollback.stderr);
    const rows = await a.sql<{ n: number }>(
      "SELECT count(*)::int AS n FROM public.events WHERE writer IN ('before cutover', 'on the target')",
      DB,
    );
    assert.equal(rows[0]?.n, 2, 'the write made on the target is on the source');
    // The source database is open again: a new session writes.
    await a.sql(`SET ROLE mig; INSERT INTO public.events (writer, n) VALUES ('after rollback', 1)`, DB);
    const teardown = await runCli(['teardown', ...args]);
    assert.equal(teardown.code, 0, teardown.stderr);
  });
});
