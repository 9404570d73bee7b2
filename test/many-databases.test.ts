/**
 * Many databases at once (--database, --all-databases): one process per database, the same
 * command with that database on both sides. Against a 15 source and a 17 target holding only
 * this file's databases: clone, verify, then an online start → cutover → teardown of two
 * databases together, and a missing database that fails alone.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { argsForDatabase, childArgs } from '../src/cli/many-databases.js';
import { NEW_MAJOR, SYSTEM_MAJOR, createDatabase, runCli, startServer, tempDir } from './helpers/servers.js';

const DATABASES = ['many_a', 'Many B'];
const rows = (db: string) => (db === 'many_a' ? 700 : 300);

interface PerDatabaseJson {
  ok: boolean;
  databases: { database: string; exitCode: number; result: { ok?: boolean } }[];
}

describe('the options of one database’s process', () => {
  test('--database, --source and --target are ours; the rest is passed on', () => {
    assert.deepEqual(
      childArgs([
        '--source',
        'postgresql://a@h/x',
        '--target=host=t',
        '--database',
        'a',
        '--database=b',
        '--all-databases',
        '--databases-at-once',
        '2',
        '--jobs',
        '4',
        '--json',
      ]),
      ['--jobs', '4', '--json'],
    );
  });

  test('clone gets a run dir of its own; the other server’s address names the database', () => {
    assert.deepEqual(argsForDatabase('clone', ['--run-dir', '/r', '--jobs', '2'], 'Many B', undefined), [
      '--run-dir',
      '/r/Many_B',
      '--jobs',
      '2',
    ]);
    assert.deepEqual(argsForDatabase('clone', ['--run-dir=/r'], 'a', undefined), ['--run-dir=/r/a']);
    assert.deepEqual(argsForDatabase('clone', [], 'a', '/from/config'), ['--run-dir', '/from/config/a']);
    assert.deepEqual(argsForDatabase('verify', [], 'a', '/from/config'), []);
    assert.deepEqual(
      argsForDatabase('start', ['--source-from-target', 'host=old.internal dbname=x'], 'a', undefined),
      ['--source-from-target', "host='old.internal' dbname='a'"],
    );
    assert.throws(
      () => argsForDatabase('start', ['--source-from-target=host=h password=secret'], 'a', undefined),
      /must not hold a password/,
    );
  });
});

describe(`many databases at once, ${SYSTEM_MAJOR} → ${NEW_MAJOR}`, () => {
  let source: LocalServer;
  let target: LocalServer;
  /** `--source` and `--target` naming the servers (their `postgres` database). */
  const servers = () => ['--source', source.url('postgres'), '--target', target.url('postgres')];
  const count = async (server: LocalServer, db: string) =>
    Number((await server.sql<{ n: string }>('SELECT count(*) AS n FROM public.items', db))[0]?.n);

  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    for (const db of DATABASES) {
      await createDatabase(source, db);
      await source.sql(
        `CREATE TABLE public.items (id int PRIMARY KEY, v text);
         INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, ${rows(db)}) g`,
        db,
      );
    }
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('clone then verify several databases: each in full, each with its own run dir', async () => {
    const runDir = tempDir();
    const clone = await runCli([
      'clone',
      ...servers(),
      '--database',
      'many_a',
      '--database',
      'Many B',
      '--create-database',
      '--run-dir',
      runDir,
    ]);
    assert.equal(clone.code, 0, clone.stderr + clone.stdout);
    assert.match(clone.stdout, /^\[many_a\] clone complete: /m);
    assert.match(clone.stdout, /^\[Many B\] clone complete: /m);
    assert.match(clone.stdout, /^clone: 2 of 2 database\(s\) ok$/m);
    assert.doesNotMatch(clone.stdout + clone.stderr, /sandbox/, 'no password');
    for (const db of DATABASES) {
      assert.equal(await count(target, db), rows(db), db);
      assert.ok(existsSync(path.join(runDir, db.replace(' ', '_'), 'migration_jobs_status.tsv')), db);
    }

    const verify = await runCli(['verify', ...servers(), '--all-databases', '--json']);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    const report = JSON.parse(verify.stdout) as PerDatabaseJson;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.databases.map((d) => [d.database, d.exitCode, d.result.ok]),
      [
        ['Many B', 0, true],
        ['many_a', 0, true],
      ],
    );
  });

  test('a database that is not there fails alone, and the exit code says so', async () => {
    const res = await runCli(['verify', ...servers(), '--database', 'many_a', '--database', 'nosuch']);
    assert.equal(res.code, 4, res.stderr + res.stdout);
    assert.match(res.stdout, /^\[many_a\] OK: target matches source/m);
    assert.match(
      res.stderr,
      /^\[nosuch\] pgconvoy: error: cannot connect to the source .*database "nosuch" does not exist/m,
    );
    assert.match(res.stdout, /^verify: 1 of 2 database\(s\) ok; not ok: nosuch \(exit 4\)$/m);
  });

  test('online: start, cutover and teardown of two databases together', async () => {
    for (const db of DATABASES) await target.sql(`DROP DATABASE "${db}" WITH (FORCE)`);
    const both = ['--database', 'many_a', '--database', 'Many B'];
    const start = await runCli(['start', ...servers(), ...both, '--create-database']);
    assert.equal(start.code, 0, start.stderr + start.stdout);
    assert.match(start.stdout, /^start: 2 of 2 database\(s\) ok$/m);
    // Written after start: must arrive by replication.
    for (const db of DATABASES) await source.sql(`INSERT INTO public.items VALUES (100000, 'late')`, db);

    const cutover = await runCli(['cutover', ...servers(), ...both, '--json']);
    assert.equal(cutover.code, 0, cutover.stderr + cutover.stdout);
    const result = JSON.parse(cutover.stdout) as PerDatabaseJson;
    assert.deepEqual(
      result.databases.map((d) => [d.database, d.exitCode, d.result.ok]),
      [
        ['many_a', 0, true],
        ['Many B', 0, true],
      ],
    );
    for (const db of DATABASES) assert.equal(await count(target, db), rows(db) + 1, db);

    const teardown = await runCli(['teardown', ...servers(), ...both]);
    assert.equal(teardown.code, 0, teardown.stderr + teardown.stdout);
    for (const server of [source, target]) {
      const [left] = await server.sql<{ slots: number; subs: number }>(
        `SELECT (SELECT count(*)::int FROM pg_replication_slots) AS slots,
                (SELECT count(*)::int FROM pg_subscription) AS subs`,
      );
      assert.deepEqual(left, { slots: 0, subs: 0 }, `nothing left on the ${server.major} server`);
    }
    for (const db of DATABASES) {
      const [pubs] = await source.sql<{ n: number }>('SELECT count(*)::int AS n FROM pg_publication', db);
      assert.equal(pubs?.n, 0, `no publication left in ${db}`);
    }
  });

  test('Ctrl-C stops every database cleanly (exit 130); the same command then finishes them', async () => {
    const dbs = ['int_a', 'int_b'];
    for (const db of dbs) {
      await createDatabase(source, db);
      await source.sql(
        `CREATE TABLE public.items (id int PRIMARY KEY, v text);
         INSERT INTO public.items SELECT g, repeat('v', 200) FROM generate_series(1, 400000) g`,
        db,
      );
    }
    const args = ['clone', ...servers(), '--database', 'int_a', '--database', 'int_b', '--create-database'];
    const runDir = tempDir();
    const first = await runCli([...args, '--run-dir', runDir], {
      onSpawn: (child) => {
        let seen = '';
        child.stderr?.on('data', (d: Buffer) => {
          seen += d.toString();
          // Both databases are copying (progress lines go to stderr): interrupt them.
          if (/\[int_a\] copy: .* started/.test(seen) && /\[int_b\] copy: .* started/.test(seen)) {
            seen = '';
            child.kill('SIGINT');
          }
        });
      },
    });
    assert.equal(first.code, 130, first.stderr + first.stdout);
    assert.match(first.stderr, /interrupted \(SIGINT\); waiting for every database to stop/);
    // Each names the command to run again: the one given, for every database.
    assert.match(
      first.stderr,
      /^\[int_a\] {3}hint: run the same command again to resume: pgconvoy clone --source \S+ .*--database int_a --database int_b/m,
    );
    assert.doesNotMatch(first.stdout + first.stderr, /sandbox/, 'no password');
    assert.match(
      first.stdout,
      /^clone: 0 of 2 database\(s\) ok; not ok: int_a \(exit 130\), int_b \(exit 130\)$/m,
    );

    const again = await runCli([...args, '--run-dir', runDir]);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    for (const db of dbs) assert.equal(await count(target, db), 400_000, db);
  });
});
