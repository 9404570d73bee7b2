/**
 * How copy workers hold the source (online-trust issue, items 3 and 6), made deterministic
 * with a lock on the TARGET that stops the one worker on its second table:
 * - a table copied early is not locked on the source for the rest of the copy: the
 *   application's ALTER TABLE with lock_timeout = 2s succeeds while the copy still runs;
 * - in an online start, a lost slot snapshot (its exporting session ended) stops `start`
 *   with the hint instead of copying the rest from a newer snapshot.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
} from './helpers/servers.js';

// "early" is the largest table, so the single worker copies it first; "held" is locked on
// the target (SHARE: reads pass, COPY waits), so the worker stops there; "late" comes last.
const TABLES = `
CREATE TABLE public.early (id int PRIMARY KEY, pad text);
CREATE TABLE public.held (id int PRIMARY KEY, pad text);
CREATE TABLE public.late (id int PRIMARY KEY, pad text);`;
const ROWS = `
INSERT INTO public.early SELECT g, repeat('e', 200) FROM generate_series(1, 20000) g;
-- Over SMALL_JOB_BYTES (copy-worker.ts): public.held is a job of its own, not grouped with
-- public.late, so late needs a source transaction of its own after the snapshot is gone.
INSERT INTO public.held SELECT g, repeat('h', 100) FROM generate_series(1, 15000) g;
INSERT INTO public.late SELECT g, 'l' FROM generate_series(1, 100) g;
ANALYZE;`;

let source: LocalServer;
let target: LocalServer;
before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
});
after(async () => Promise.all([source?.destroy(), target?.destroy()]));

async function client(server: LocalServer, db: string): Promise<pg.Client> {
  const c = new pg.Client(server.clientConfig(db));
  await c.connect();
  return c;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until some session on the target waits for a lock on public.held. */
const copyIsHeld = (db: string) =>
  until('the copy to wait on public.held', async () => {
    const rows = await target.sql<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = 'public.held'::regclass`,
      db,
    );
    return (rows[0]?.n ?? 0) > 0;
  });

describe('copy workers and their source sessions', () => {
  test('a table copied early is not locked on the source for the rest of the copy (ALTER TABLE with lock_timeout succeeds)', async () => {
    const db = await createDatabase(source, uniqueName('locks'));
    await createDatabase(target, db);
    await source.sql(TABLES + ROWS, db);
    await target.sql(TABLES, db);
    const holder = await client(target, db);
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE public.held IN SHARE MODE');
    const clone = runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--schema',
      'skip',
      '--jobs',
      '1',
    ]);
    try {
      await copyIsHeld(db);
      const app = await client(source, db);
      try {
        await app.query("SET lock_timeout = '2s'");
        await app.query('ALTER TABLE public.early ADD COLUMN note text');
      } finally {
        await app.end();
      }
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    const run = await clone;
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });

  test('an online start whose slot snapshot is lost stops with the hint and reports no success', async () => {
    const db = await createDatabase(source, uniqueName('snap'));
    await createDatabase(target, db);
    await source.sql(TABLES + ROWS, db);
    const start = runCli(['start', '--source', source.url(db), '--target', target.url(db), '--jobs', '1']);
    // start applies the schema itself: lock public.held as soon as it exists, while the
    // worker copies public.early.
    const holder = await client(target, db);
    await until('public.held on the target', async () => {
      const r = await holder.query<{ ok: boolean }>("SELECT to_regclass('public.held') IS NOT NULL AS ok");
      return r.rows[0]?.ok === true;
    });
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE public.held IN SHARE MODE');
    let run;
    try {
      const early = start.then((r) => {
        throw new Error(`start ended before the copy reached public.held: ${r.stdout}${r.stderr}`);
      });
      await Promise.race([copyIsHeld(db), early]);
      // The session that exported the slot's snapshot ends (a network blip, an admin).
      const ended = await source.sql<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE backend_type = 'walsender' AND application_name = 'pgconvoy slot'`,
      );
      assert.equal(ended[0]?.n, 1, 'the exporting session was found and ended');
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
      run = await start;
    }
    assert.notEqual(run.code, 0, `start must fail: ${run.stdout}`);
    assert.match(run.stderr, /snapshot .* could not be imported any more/);
    assert.match(run.stderr, /teardown/);
    const late = await target.sql<{ n: number }>('SELECT count(*)::int AS n FROM public.late', db);
    assert.equal(late[0]?.n, 0, 'nothing copied from another snapshot');
    const phase = await target.sql<{ phase: string }>('SELECT phase FROM pgconvoy.online_state', db);
    assert.equal(phase[0]?.phase, 'copying', 'the migration did not go on to replicate');
    await runCli(['teardown', '--source', source.url(db), '--target', target.url(db)]);
  });
});
