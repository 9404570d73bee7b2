/**
 * Kill points of cutover and rollback (online-trust issue): while an application role writes,
 * `cutover` is SIGKILLed as it enters each of its steps (the freeze, the catch-up, the
 * sequences, the copy of the key-less table, verify), then run again. Afterwards nothing
 * is lost or doubled (the source and the target hold the same rows, compared by SQL, and
 * every insert the writer saw commit is there), sequences are past the source's, and no
 * write was accepted on the source after the rerun finished. Then `rollback` is SIGKILLed
 * at several moments and run again: a write made on the target is on the source, and the
 * source database's CONNECT privilege and settings are exactly what they were before.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { Writer, eventsFixture } from './helpers/insert-writer.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
} from './helpers/servers.js';

const FIXTURE = `${eventsFixture(500)}
CREATE TABLE public.nokey (v text, n integer);
INSERT INTO public.nokey SELECT 'k' || g, g FROM generate_series(1, 300) g;
CREATE SEQUENCE public.ticket START 1000;
SELECT setval('public.ticket', 5000);`;

const ACL_SQL = `
SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT aclexplode(coalesce(datacl, acldefault('d', datdba)))::text AS x
         FROM pg_database WHERE datname = current_database()) e)::text AS acl,
       (SELECT count(*)::int FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
         WHERE d.datname = current_database()) AS settings`;

let source: LocalServer;
let target: LocalServer;
before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  for (const s of [source, target]) await s.sql(`CREATE ROLE app LOGIN PASSWORD 'apppw'`);
});
after(async () => Promise.all([source?.destroy(), target?.destroy()]));

const sorted = async (server: LocalServer, db: string, sql: string) =>
  (await server.sql<{ k: string }>(sql, db)).map((r) => r.k);
const EVENTS = "SELECT writer || ':' || n AS k FROM public.events ORDER BY 1";
const NOKEY = "SELECT v || ':' || n AS k FROM public.nokey ORDER BY 1";

async function waitFor(check: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs the CLI and SIGKILLs it when it prints a line starting with `step` (or after `ms`). */
function runKilled(args: string[], at: { step?: string; ms?: number }) {
  return runCli(args, {
    onSpawn: (child) => {
      if (at.ms !== undefined) setTimeout(() => child.kill('SIGKILL'), at.ms);
      if (at.step !== undefined) {
        let seen = '';
        child.stdout?.on('data', (d: Buffer) => {
          seen += d.toString();
          if (seen.split('\n').some((l) => l.startsWith(`${at.step} …`))) child.kill('SIGKILL');
        });
      }
    },
  });
}

interface Migration {
  db: string;
  args: string[];
  before: { acl: string; settings: number };
}

async function migrationUnderWrites(back: boolean): Promise<Migration & { writer: Writer }> {
  const db = await createDatabase(source, uniqueName('Kill'));
  await createDatabase(target, db);
  await source.sql(FIXTURE, db);
  const [acl] = await source.sql<{ acl: string; settings: number }>(ACL_SQL, db);
  const args = ['--source', source.url(db), '--target', target.url(db)];
  const writer = new Writer(
    'app',
    { host: '127.0.0.1', port: source.port, database: db, user: 'app', password: 'apppw' },
    'short',
  );
  writer.start();
  const start = await runCli(['start', ...args]);
  assert.equal(start.code, 0, start.stdout + start.stderr);
  if (back) {
    const prepared = await runCli(['start-back', ...args]);
    assert.equal(prepared.code, 0, prepared.stderr);
  }
  return { db, args, before: acl!, writer };
}

async function assertEqualAfterCutover(m: Migration & { writer: Writer }, finishedAt: number): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  await m.writer.stop();
  const onTarget = await sorted(target, m.db, EVENTS);
  assert.deepEqual(onTarget, await sorted(source, m.db, EVENTS), 'events: the same rows on both sides');
  const have = new Set(onTarget);
  assert.deepEqual(
    m.writer.committed.filter((n) => !have.has(`app:${n}`)),
    [],
    'every insert the writer saw commit is on the target',
  );
  assert.deepEqual(
    await sorted(target, m.db, NOKEY),
    await sorted(source, m.db, NOKEY),
    'nokey: the same rows',
  );
  const [seq] = await target.sql<{ v: string }>('SELECT last_value::text AS v FROM public.ticket', m.db);
  assert.ok(BigInt(seq!.v) >= 5000n, `the sequence is at least the source's (${seq!.v})`);
  const late = m.writer.attempts.filter((a) => a.at > finishedAt);
  assert.ok(
    late.every((a) => !a.ok),
    'no write accepted on the source after cutover',
  );
}

describe(`cutover and rollback killed at every step, ${SYSTEM_MAJOR} → ${NEW_MAJOR}, under writes`, () => {
  for (const step of ['write freeze', 'catch up', 'sequences', 'tables without replica identity', 'verify'])
    test(`cutover killed as it enters "${step}", then run again`, async () => {
      const m = await migrationUnderWrites(false);
      try {
        const killed = await runKilled(['cutover', ...m.args], { step });
        assert.equal(killed.signal, 'SIGKILL', `killed at "${step}" (it ended by itself: ${killed.stdout})`);
        const rerun = await runCli(['cutover', ...m.args]);
        assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
        assert.match(rerun.stdout, /resuming a cutover that stopped midway/);
        await assertEqualAfterCutover(m, Date.now());
      } finally {
        await m.writer.stop();
      }
    });

  test('a rollback and a second cutover started while cutover runs are refused, naming it; the cutover finishes', async () => {
    const m = await migrationUnderWrites(false);
    // The cutover is held right after it takes the migration's lock: this session keeps the
    // ledger's online state locked until the other two commands have answered (or 20 s).
    const hold = new pg.Client({ connectionString: target.url(m.db) });
    await hold.connect();
    try {
      await hold.query('BEGIN');
      await hold.query('LOCK TABLE pgconvoy.online_state IN ACCESS EXCLUSIVE MODE');
      const cutover = runCli(['cutover', ...m.args]);
      await waitFor(async () => {
        const { rows } = await hold.query(
          `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE l.locktype = 'advisory' AND l.granted AND l.objid = 0 AND l.objsubid = 2
              AND a.application_name = 'pgconvoy cutover'`,
        );
        return rows.length > 0;
      }, 'the cutover takes the migration lock');
      const others = Promise.all([runCli(['rollback', ...m.args]), runCli(['cutover', ...m.args])]);
      // Released when both have answered, or after 20 s: a command that waited on the table
      // instead of being refused then goes on, and its output shows what it did.
      const released = Promise.race([others, new Promise((r) => setTimeout(r, 20_000))]).then(() =>
        hold.query('COMMIT'),
      );
      const [rollback, second] = await others;
      await released;
      for (const [name, r] of [
        ['rollback', rollback],
        ['cutover', second],
      ] as const) {
        assert.equal(r.code, 7, `${name}: ${r.stdout}${r.stderr}`);
        assert.match(
          r.stderr,
          /another pgconvoy command is working on this online migration \("pgconvoy cutover", target pid \d+/,
        );
        assert.match(r.stderr, /wait until it ends/);
      }
      const done = await cutover;
      assert.equal(done.code, 0, done.stdout + done.stderr);
      await assertEqualAfterCutover(m, Date.now());
      const [state] = await target.sql<{ phase: string }>('SELECT phase FROM pgconvoy.online_state', m.db);
      assert.equal(state?.phase, 'done');
    } finally {
      await hold.end().catch(() => undefined);
      await m.writer.stop();
    }
  });

  test('rollback killed at 150 ms, 400 ms and 900 ms, then run again: the target write is on the source, the database as it was', async () => {
    const m = await migrationUnderWrites(true);
    try {
      const cutover = await runCli(['cutover', ...m.args]);
      assert.equal(cutover.code, 0, cutover.stdout + cutover.stderr);
      await assertEqualAfterCutover(m, Date.now());
    } finally {
      await m.writer.stop();
    }
    await target.sql("INSERT INTO public.events (writer, n) VALUES ('on the target', 1)", m.db);
    await target.sql("INSERT INTO public.nokey VALUES ('on the target', 1)", m.db);
    for (const ms of [150, 400, 900]) {
      const killed = await runKilled(['rollback', ...m.args], { ms });
      if (killed.signal !== 'SIGKILL') break; // it finished before the kill: the rerun below checks it
    }
    const rollback = await runCli(['rollback', ...m.args]);
    assert.equal(rollback.code, 0, rollback.stdout + rollback.stderr);
    assert.deepEqual(await sorted(source, m.db, EVENTS), await sorted(target, m.db, EVENTS));
    assert.deepEqual(await sorted(source, m.db, NOKEY), await sorted(target, m.db, NOKEY));
    const [now] = await source.sql<{ acl: string; settings: number }>(ACL_SQL, m.db);
    assert.deepEqual(now, m.before, "the source database's CONNECT and settings are what they were");
    const teardown = await runCli(['teardown', ...m.args]);
    assert.equal(teardown.code, 0, teardown.stderr);
  });
});
