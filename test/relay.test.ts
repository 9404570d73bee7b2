/**
 * The relay (start --via relay, pgconvoy replicate): pgconvoy streams the slot and applies
 * the changes itself. Against real servers (source 15 → target 17, and 13 → 17), with the
 * CLI as a user runs it:
 * - under a writer (inserts, updates, deletes; a table without a primary key with REPLICA
 *   IDENTITY FULL and duplicate rows; updates that leave a TOASTed value alone), the relay
 *   is SIGKILLed at random moments and restarted with `replicate`; after cutover the target
 *   equals the source by an independent comparison (a change applied twice would show as an
 *   extra row or a failed insert; one lost, as a difference);
 * - TRUNCATE of one and of two tables; a large transaction that aborts is not applied; a
 *   large one streamed in progress (logical_decoding_work_mem = 64kB) with a rolled-back
 *   savepoint arrives without it;
 * - ALTER TABLE … ADD COLUMN on the source stops the relay with the table named; after the
 *   same DDL on the target, `replicate` resumes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { assertSameData } from './helpers/compare.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
  type CliResult,
} from './helpers/servers.js';

const FIXTURE = `
CREATE TABLE public.items (id integer PRIMARY KEY, counter integer NOT NULL DEFAULT 0, note text, big text);
ALTER TABLE public.items ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE public.nokey (v text, n integer);
ALTER TABLE public.nokey REPLICA IDENTITY FULL;
CREATE TABLE public."Odd ""Name""" (id bigserial PRIMARY KEY, "select" text NOT NULL, j json);
INSERT INTO public.items SELECT g, 0, 'n' || g, CASE WHEN g % 4 = 0 THEN repeat(md5(g::text), 200) END FROM generate_series(1, 500) g;
INSERT INTO public.nokey SELECT 'k' || (g % 50), g % 7 FROM generate_series(1, 200) g;
INSERT INTO public."Odd ""Name""" ("select", j) SELECT 's' || g, json_build_object('g', g) FROM generate_series(1, 100) g;`;

let source: LocalServer;
let target: LocalServer;
before(async () => {
  [source, target] = await Promise.all([
    // Small, so that a few hundred kB make a transaction the source streams while in progress.
    startServer(SYSTEM_MAJOR, { settings: { logical_decoding_work_mem: "'64kB'" } }),
    startServer(NEW_MAJOR),
  ]);
});
after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

/** A relay started in the background (start --via relay, or replicate). */
function spawnRelay(args: string[]): { child: Promise<ChildProcess>; done: Promise<CliResult> } {
  let resolveChild!: (c: ChildProcess) => void;
  const child = new Promise<ChildProcess>((r) => (resolveChild = r));
  const done = runCli(args, { onSpawn: resolveChild, timeoutMs: 180_000 });
  return { child, done };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the relay streams the slot; fails with its output when it exits first. */
async function streaming(
  server: LocalServer,
  db: string,
  relay: { done: Promise<CliResult> },
): Promise<void> {
  let exited: CliResult | undefined;
  void relay.done.then((r) => (exited = r));
  await waitFor('the relay to stream', async () => {
    if (exited) throw new Error(`the relay exited (${exited.code}): ${exited.stderr}\n${exited.stdout}`);
    const rows = await server.sql(
      "SELECT 1 FROM pg_stat_replication WHERE application_name = 'pgconvoy relay' AND state = 'streaming' AND pid IN (SELECT active_pid FROM pg_replication_slots WHERE database = $1)",
      'postgres',
      [db],
    );
    return rows.length > 0;
  });
}

/** Random single-row changes, a few per transaction, until stopped. */
class Writer {
  private stopped = false;
  commits = 0;
  done: Promise<void> = Promise.resolve();
  constructor(private readonly config: pg.ClientConfig) {}
  start(): void {
    this.done = this.run();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
  private async run(): Promise<void> {
    const c = new pg.Client(this.config);
    c.on('error', () => undefined); // cutover ends the session
    await c.connect();
    let next = 10_000;
    try {
      while (!this.stopped) {
        await c.query('BEGIN');
        for (let i = 0; i < 3; i++) {
          const r = Math.random();
          const id = 1 + Math.floor(Math.random() * 600);
          if (r < 0.3)
            await c.query('INSERT INTO public.items (id, note) VALUES ($1, $2)', [next++, `w${next}`]);
          else if (r < 0.6)
            await c.query('UPDATE public.items SET counter = counter + 1 WHERE id = $1', [id]);
          else if (r < 0.65) await c.query('UPDATE public.items SET id = id + 100000 WHERE id = $1', [id]);
          else if (r < 0.72) await c.query('DELETE FROM public.items WHERE id = $1', [id]);
          else if (r < 0.82)
            await c.query('INSERT INTO public.nokey VALUES ($1, $2)', [`k${id % 50}`, id % 7]);
          else if (r < 0.9)
            await c.query(
              'UPDATE public.nokey SET n = n + 1 WHERE ctid = (SELECT ctid FROM public.nokey WHERE v = $1 LIMIT 1)',
              [`k${id % 50}`],
            );
          else if (r < 0.95)
            await c.query(
              'DELETE FROM public.nokey WHERE ctid = (SELECT ctid FROM public.nokey WHERE v = $1 LIMIT 1)',
              [`k${id % 50}`],
            );
          else
            await c.query(`INSERT INTO public."Odd ""Name""" ("select", j) VALUES ($1, $2)`, [
              `w${id}`,
              JSON.stringify({ id }),
            ]);
        }
        await c.query('COMMIT');
        this.commits++;
        await new Promise((r) => setTimeout(r, 2));
      }
    } catch {
      // cutover froze the source: the writer's session ends (what committed is on the source)
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}

async function prepare(sourceDb: LocalServer, tag: string): Promise<{ db: string; args: string[] }> {
  const db = await createDatabase(sourceDb, uniqueName(tag));
  await createDatabase(target, db);
  await sourceDb.sql(FIXTURE, db);
  return { db, args: ['--source', sourceDb.url(db), '--target', target.url(db)] };
}

test('15 → 17 under a writer: the relay SIGKILLed at random moments and restarted, then cutover; target equals source', async () => {
  const { db, args } = await prepare(source, 'Relay');
  const writer = new Writer({
    host: '127.0.0.1',
    port: source.port,
    database: db,
    user: 'postgres',
    password: 'sandbox',
  });
  writer.start();
  try {
    let relay = spawnRelay(['start', '--via', 'relay', ...args]);
    await streaming(source, db, relay);
    for (let kill = 0; kill < 4; kill++) {
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1500));
      (await relay.child).kill('SIGKILL');
      const killed = await relay.done;
      assert.equal(killed.signal, 'SIGKILL', killed.stderr);
      relay = spawnRelay(['replicate', ...args]);
      await streaming(source, db, relay);
    }
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(writer.commits > 50, `the writer committed ${writer.commits} transactions`);
    const cutover = await runCli(['cutover', '--verify', 'counts', ...args]);
    assert.equal(cutover.code, 0, cutover.stderr + cutover.stdout);
    await writer.stop();
    const ended = await relay.done;
    assert.equal(ended.code, 0, ended.stderr);
    assert.match(ended.stdout, /cutover is done/);
  } finally {
    await writer.stop().catch(() => undefined);
  }
  await assertSameData(source, db, target, db);
});

/** Waits until the relay has committed on the target everything the source has written so far. */
async function caughtUp(server: LocalServer, db: string): Promise<void> {
  const lsn = (await server.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l', db))[0]!.l;
  await waitFor(`the relay to apply up to ${lsn}`, async () => {
    const rows = await target.sql<{ ok: boolean }>(
      'SELECT applied_lsn::pg_lsn >= $1::pg_lsn AS ok FROM pgconvoy.relay_progress',
      db,
      [lsn],
    );
    return rows[0]?.ok === true;
  });
}

test('15 → 17: large transactions streamed in progress (one aborted, one with a rolled-back savepoint), TRUNCATE of one and of two tables, ADD COLUMN stops the relay and replicate resumes after the same DDL on the target', async () => {
  const { db, args } = await prepare(source, 'RelayDdl');
  let relay = spawnRelay(['start', '--via', 'relay', ...args]);
  await streaming(source, db, relay);
  // Far above logical_decoding_work_mem (64kB): the source streams these while in progress.
  await source.sql(
    `BEGIN;
     INSERT INTO public.items SELECT g, 0, repeat('a', 200) FROM generate_series(100000, 103000) g;
     ROLLBACK;`,
    db,
  );
  await source.sql(
    `BEGIN;
     INSERT INTO public.items SELECT g, 1, repeat('b', 200) FROM generate_series(200000, 203000) g;
     SAVEPOINT s;
     INSERT INTO public."Odd ""Name""" ("select", j) SELECT 'gone' || g, '{}' FROM generate_series(1, 3000) g;
     UPDATE public.items SET note = 'gone' WHERE id <= 50;
     ROLLBACK TO SAVEPOINT s;
     INSERT INTO public."Odd ""Name""" ("select", j) VALUES ('after savepoint', '[1]');
     UPDATE public.items SET counter = counter + 7, big = big WHERE id <= 500;
     COMMIT;`,
    db,
  );
  await caughtUp(source, db);
  await waitFor('the source to count its streamed transactions', async () => {
    const rows = await source.sql<{ n: string }>(
      `SELECT s.stream_txns::text AS n FROM pg_stat_replication_slots s
       JOIN pg_replication_slots r USING (slot_name) WHERE r.database = $1`,
      'postgres',
      [db],
    );
    return Number(rows[0]?.n ?? 0) >= 2;
  });
  const gone = await target.sql<{ n: string }>(
    `SELECT (SELECT count(*) FROM public.items WHERE id BETWEEN 100000 AND 103000 OR note = 'gone')
          + (SELECT count(*) FROM public."Odd ""Name""" WHERE "select" LIKE 'gone%') AS n`,
    db,
  );
  assert.equal(gone[0]?.n, '0', 'nothing of the aborted transaction or the rolled-back savepoint');
  await assertSameData(source, db, target, db);

  await source.sql(`TRUNCATE public.nokey; INSERT INTO public.nokey VALUES ('after truncate', 1)`, db);
  await source.sql(
    `TRUNCATE public.items, public."Odd ""Name""" RESTART IDENTITY;
     INSERT INTO public."Odd ""Name""" ("select") VALUES ('first after truncate');
     INSERT INTO public.items (id) VALUES (1)`,
    db,
  );
  await caughtUp(source, db);
  await assertSameData(source, db, target, db);

  await source.sql(
    `ALTER TABLE public.nokey ADD COLUMN extra integer; INSERT INTO public.nokey VALUES ('ddl', 2, 42)`,
    db,
  );
  const stopped = await relay.done;
  assert.equal(stopped.code, 7, stopped.stderr);
  assert.match(stopped.stderr, /"public"\."nokey".*column "extra" is on the source but not on the target/);
  assert.match(stopped.stderr, /ALTER TABLE/);
  await target.sql('ALTER TABLE public.nokey ADD COLUMN extra integer', db);
  relay = spawnRelay(['replicate', ...args]);
  await streaming(source, db, relay);
  await caughtUp(source, db);
  const ddlRow = await target.sql<{ extra: number }>("SELECT extra FROM public.nokey WHERE v = 'ddl'", db);
  assert.deepEqual(ddlRow, [{ extra: 42 }]);

  const cutover = await runCli(['cutover', '--verify', 'counts', ...args]);
  assert.equal(cutover.code, 0, cutover.stderr + cutover.stdout);
  const ended = await relay.done;
  assert.equal(ended.code, 0, ended.stderr);
  await assertSameData(source, db, target, db);
});

test('13 → 17: protocol 1 (no streaming): a large transaction, updates that leave TOAST alone, TRUNCATE, cutover', async () => {
  const old = await startServer(OLD_MAJOR);
  try {
    const { db, args } = await prepare(old, 'Relay13');
    const relay = spawnRelay(['start', '--via', 'relay', ...args]);
    await streaming(old, db, relay);
    await old.sql(
      `INSERT INTO public.items SELECT g, 0, 'big' FROM generate_series(5000, 25000) g;
       UPDATE public.items SET counter = counter + 1 WHERE id <= 500;
       DELETE FROM public.nokey WHERE ctid IN (SELECT ctid FROM public.nokey WHERE v = 'k1' LIMIT 1);
       TRUNCATE public."Odd ""Name""";`,
      db,
    );
    await caughtUp(old, db);
    const cutover = await runCli(['cutover', '--verify', 'counts', ...args]);
    assert.equal(cutover.code, 0, cutover.stderr + cutover.stdout);
    assert.equal((await relay.done).code, 0);
    await assertSameData(old, db, target, db);
  } finally {
    await old.destroy();
  }
});

test('15 → 17: a column left out of the copy (--exclude-column) is left out of the changes the relay applies', async () => {
  const { db, args } = await prepare(source, 'RelayExcluded');
  const relay = spawnRelay(['start', '--via', 'relay', '--exclude-column', 'public.items.note', ...args]);
  await streaming(source, db, relay);
  await source.sql(
    `INSERT INTO public.items (id, counter, note) VALUES (90001, 5, 'secret');
     UPDATE public.items SET note = 'secret too', counter = counter + 1 WHERE id <= 10;
     DELETE FROM public.items WHERE id = 11`,
    db,
  );
  await caughtUp(source, db);
  const rows = await target.sql<{ notes: string; counters: string; n: string }>(
    `SELECT count(note)::text AS notes, sum(counter)::text AS counters, count(*)::text AS n FROM public.items`,
    db,
  );
  const expected = await source.sql<{ counters: string; n: string }>(
    'SELECT sum(counter)::text AS counters, count(*)::text AS n FROM public.items',
    db,
  );
  assert.deepEqual(rows, [{ notes: '0', ...expected[0] }], 'the other columns arrive; note never does');
  (await relay.child).kill('SIGTERM');
  const stopped = await relay.done;
  assert.equal(stopped.code, 0, stopped.stderr);
  const teardown = await runCli(['teardown', ...args]);
  assert.equal(teardown.code, 0, teardown.stderr + teardown.stdout);
});

test('15 → 17: a restart whose slot trails the ledger (killed after the target commit, before the status update) applies nothing twice', async () => {
  const { db, args } = await prepare(source, 'RelayTrail');
  const slotSql = 'SELECT slot_name FROM pg_replication_slots WHERE database = $1';
  const stop = async (relay: ReturnType<typeof spawnRelay>) => {
    (await relay.child).kill('SIGTERM');
    const r = await relay.done;
    assert.equal(r.code, 0, r.stderr);
  };
  let relay = spawnRelay(['start', '--via', 'relay', ...args]);
  await streaming(source, db, relay);
  await stop(relay);
  // The slot as it stood before the next transactions: restored after they are applied, it
  // is the slot of a relay killed between its target commit and its standby status update.
  const slot = (await source.sql<{ slot_name: string }>(slotSql, 'postgres', [db]))[0]!.slot_name;
  await source.sql("SELECT pg_copy_logical_replication_slot($1, 'relay_trail_copy')", db, [slot]);
  relay = spawnRelay(['replicate', ...args]);
  await streaming(source, db, relay);
  // No key: applied twice, these rows would be there twice.
  await source.sql(`INSERT INTO public.nokey SELECT 'twice?', g FROM generate_series(1, 20) g`, db);
  await source.sql(
    `INSERT INTO public.nokey VALUES ('twice?', 21); UPDATE public.items SET counter = counter + 1`,
    db,
  );
  await caughtUp(source, db);
  await stop(relay);
  await source.sql('SELECT pg_drop_replication_slot($1)', db, [slot]);
  await source.sql("SELECT pg_copy_logical_replication_slot('relay_trail_copy', $1)", db, [slot]);
  await source.sql("SELECT pg_drop_replication_slot('relay_trail_copy')", db);
  relay = spawnRelay(['replicate', ...args]);
  await streaming(source, db, relay);
  await source.sql(`INSERT INTO public.nokey VALUES ('after restart', 1)`, db);
  await caughtUp(source, db);
  const twice = await target.sql<{ n: string }>(
    "SELECT count(*)::text AS n FROM public.nokey WHERE v = 'twice?'",
    db,
  );
  assert.equal(twice[0]?.n, '21', 'each row once');
  await assertSameData(source, db, target, db);
  await stop(relay);
  const teardown = await runCli(['teardown', ...args]);
  assert.equal(teardown.code, 0, teardown.stderr + teardown.stdout);
});
