/**
 * --lock-wait-timeout (pg_dump's option, on clone and start): a session of the application
 * holds a lock on a source table that pgconvoy's step must wait for; with a short timeout the
 * step gives up instead of queueing (and queueing the application behind it), and the message
 * names the table and the session that holds the lock, with what to do (exit 4, LOCK_TIMEOUT).
 * - clone: pg_dump's ACCESS SHARE waits behind an ACCESS EXCLUSIVE lock on a partitioned
 *   table (the parent only: the inventory reads the partitions' sizes, not the parent's);
 * - clone: the inventory's read of a table's size waits behind ACCESS EXCLUSIVE on a table;
 * - start: the publication's SHARE UPDATE EXCLUSIVE waits behind a running VACUUM's kind of
 *   lock, which pg_dump and the precheck's reads do not wait for.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { SYSTEM_MAJOR, createDatabase, runCli, startServer, tempDir, uniqueName } from './helpers/servers.js';

let server: LocalServer;
before(async () => {
  server = await startServer(SYSTEM_MAJOR);
});
after(async () => server?.destroy());

/** A source and a target database, and an open transaction on the source that holds `lock` (on public."Orders", or public."Events", partitioned). */
async function lockedSource(lock: string): Promise<{ args: string[]; holder: pg.Client }> {
  const source = await createDatabase(server, uniqueName('LockSrc'));
  const target = await createDatabase(server, uniqueName('LockDst'));
  await server.sql(
    `CREATE TABLE public."Orders" (id integer PRIMARY KEY, v text);
     INSERT INTO public."Orders" SELECT g, g::text FROM generate_series(1, 100) g;
     CREATE TABLE public."Events" (id integer, region integer) PARTITION BY LIST (region);
     CREATE TABLE public.events_1 PARTITION OF public."Events" FOR VALUES IN (1);`,
    source,
  );
  const holder = new pg.Client({
    host: '127.0.0.1',
    port: server.port,
    database: source,
    user: 'postgres',
    password: 'sandbox',
    application_name: 'nightly job',
  });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query(`LOCK TABLE ${lock} MODE`);
  return {
    args: ['--source', server.url(source), '--target', server.url(target), '--run-dir', tempDir()],
    holder,
  };
}

describe('--lock-wait-timeout', () => {
  test('clone: pg_dump gives up after the timeout and names the table and the session holding it', async () => {
    const { args, holder } = await lockedSource('ONLY public."Events" IN ACCESS EXCLUSIVE');
    try {
      const started = Date.now();
      const run = await runCli(['clone', ...args, '--lock-wait-timeout', '1s']);
      assert.ok(Date.now() - started < 30_000, 'it did not wait for the default 60 s');
      assert.equal(run.code, 4, run.stdout + run.stderr);
      assert.match(
        run.stderr,
        /pg_dump waited 1 s \(--lock-wait-timeout\) for a lock on table public\."Events" of the source, in vain/,
      );
      assert.match(
        run.stderr,
        /hint: .*pid \d+ holds AccessExclusiveLock on public\."Events" \(user postgres, application "nightly job", idle in transaction, transaction open \d+ s: LOCK TABLE ONLY public\."Events" IN ACCESS EXCLUSIVE MODE\)\. Let it finish or end it/,
      );
      assert.match(run.stderr, /--lock-wait-timeout more time/);
    } finally {
      await holder.end();
    }
  });

  test('clone: reading the table sizes gives up after the timeout and names the session holding the lock', async () => {
    const { args, holder } = await lockedSource('public."Orders" IN ACCESS EXCLUSIVE');
    try {
      const run = await runCli(['clone', ...args, '--lock-wait-timeout', '1s']);
      assert.equal(run.code, 4, run.stdout + run.stderr);
      assert.match(
        run.stderr,
        /waited 1 s \(--lock-wait-timeout\) for a lock on a table of the source to read its size, in vain/,
      );
      assert.match(
        run.stderr,
        /pid \d+ holds AccessExclusiveLock on public\."Orders" \(user postgres, application "nightly job"/,
      );
    } finally {
      await holder.end();
    }
  });

  test('start: the publication gives up after the timeout and names the table and the session holding it', async () => {
    const { args, holder } = await lockedSource('public."Orders" IN SHARE UPDATE EXCLUSIVE');
    try {
      const run = await runCli(['start', ...args, '--lock-wait-timeout', '800ms']);
      assert.equal(run.code, 4, run.stdout + run.stderr);
      assert.match(
        run.stderr,
        /waited 0\.8 s \(--lock-wait-timeout\) for a lock on the tables of publication "pgconvoy_\w+" on the source, in vain/,
      );
      assert.match(
        run.stderr,
        /pid \d+ holds ShareUpdateExclusiveLock on public\."Orders" \(user postgres, application "nightly job"/,
      );
    } finally {
      await holder.end();
    }
  });

  test('a time that is not one is refused before anything runs', async () => {
    const run = await runCli([
      'clone',
      '--source',
      'host=x',
      '--target',
      'host=y',
      '--lock-wait-timeout',
      'soon',
    ]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      /--lock-wait-timeout.*expected a time of 1 ms or more, e\.g\. 30s, 2min or 500 \(milliseconds\)/,
    );
  });
});
