/**
 * switch-first against real servers: a PostgreSQL 15 source with wal_level = replica (logical
 * replication impossible) and a 17 target. An application switches to the target right after
 * prepare and writes through move and finish; move is SIGKILLed at each dangerous point of a
 * batch and the target restarted mid-move; the precheck refuses what it cannot keep correct.
 * Every claim is checked with independent SQL (test/helpers/compare.ts).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { tableFacts } from './helpers/compare.js';
import {
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
  type CliResult,
} from './helpers/servers.js';

const FIXTURE = `
CREATE TABLE public.items (id bigserial PRIMARY KEY, val text NOT NULL, n int CHECK (n >= 0),
                           doubled int GENERATED ALWAYS AS (n * 2) STORED);
CREATE TABLE public.logs (k int NOT NULL, msg text);
CREATE TABLE public."Foo Bar" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                               item_id bigint REFERENCES public.items (id), "select" text);
INSERT INTO public.items (val, n) SELECT 'v' || g, g FROM generate_series(1, 3000) g;
INSERT INTO public.logs SELECT g, 'm' || g FROM generate_series(1, 3000) g;
INSERT INTO public."Foo Bar" (item_id, "select") SELECT g, 'x' || g FROM generate_series(1, 600) g;
ANALYZE;`;
const TABLES = ['public.items', 'public.logs', 'public."Foo Bar"'];

let source: LocalServer;
let target: LocalServer;
let template: string;

before(async () => {
  [source, target] = await Promise.all([
    startServer(15, { settings: { wal_level: 'replica' } }),
    startServer(17),
  ]);
  template = await createDatabase(source, uniqueName('sf_template'));
  await source.sql(FIXTURE, template);
});

after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

async function pair(): Promise<{ db: string; args: string[] }> {
  const db = uniqueName('sf');
  await createDatabase(source, db, template);
  await createDatabase(target, db);
  return { db, args: ['--source', source.url(db), '--target', target.url(db)] };
}

function client(server: LocalServer, db: string): Promise<pg.Client> {
  const c = new pg.Client(server.clientConfig(db));
  c.on('error', () => undefined); // a session of a server the test restarts
  return c.connect().then(() => c);
}

/** Waits until a pgconvoy move session on `server` waits for a lock. */
async function waitForLockWait(server: LocalServer, db: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const rows = await server.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'pgconvoy move%' AND wait_event_type = 'Lock'`,
      'postgres',
      [db],
    );
    if (Number(rows[0]!.n) > 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('pgconvoy move never waited for the lock');
}

/** Starts `move`, runs `whileRunning` with the child, SIGKILLs it, and returns its result. */
async function killedMove(
  args: string[],
  whileRunning: (child: ChildProcess) => Promise<void>,
): Promise<CliResult> {
  let child: ChildProcess | undefined;
  const run = runCli(['switch-first', 'move', ...args], { onSpawn: (c) => (child = c) });
  try {
    await whileRunning(child!);
  } finally {
    child!.kill('SIGKILL');
  }
  const result = await run;
  assert.equal(
    result.signal,
    'SIGKILL',
    `move was still running when killed: ${result.stdout}${result.stderr}`,
  );
  return result;
}

async function journalRows(db: string): Promise<{ batch_id: string }[]> {
  return source.sql<{ batch_id: string }>('SELECT DISTINCT batch_id FROM pgconvoy.switch_first_journal', db);
}

async function leftovers(db: string): Promise<Record<string, unknown>> {
  const [t] = await target.sql<Record<string, string>>(
    `SELECT (SELECT count(*) FROM pg_foreign_table) AS foreign_tables, (SELECT count(*) FROM pg_foreign_server) AS servers,
            (SELECT count(*) FROM pg_user_mappings) AS mappings,
            (SELECT count(*) FROM pg_extension WHERE extname = 'postgres_fdw') AS extension,
            (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgconvoy_%') AS schemas`,
    db,
  );
  const [s] = await source.sql<Record<string, string>>(
    `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'pgconvoy') AS journal_schema`,
    db,
  );
  return { ...t, ...s };
}

describe('switch-first', () => {
  test('an application switched right after prepare writes through move and finish: every row once, updates and deletes kept', async () => {
    const { db, args } = await pair();
    const runDir = tempDir();
    const prep = await runCli([
      'switch-first',
      'prepare',
      ...args,
      '--accept',
      '*:foreign-keys',
      '--run-dir',
      runDir,
    ]);
    assert.equal(prep.code, 0, prep.stderr);
    assert.match(prep.stdout, /the application may switch to the target now/);
    // The password is in no output and no file of the run directory.
    const secret = new URL(source.url(db)).password;
    assert.ok(!(prep.stdout + prep.stderr).includes(secret));
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) =>
        statSync(path.join(dir, f)).isDirectory() ? files(path.join(dir, f)) : [path.join(dir, f)],
      );
    for (const f of files(runDir)) assert.ok(!readFileSync(f).includes(secret), `password in ${f}`);

    // The target shows every source row already, and its sequence is past the source's.
    const [seen] = await target.sql<{ n: string; seq: string }>(
      `SELECT (SELECT count(*) FROM public.items) AS n, (SELECT last_value FROM public.items_id_seq) AS seq`,
      db,
    );
    assert.equal(Number(seen!.n), 3000);
    assert.ok(Number(seen!.seq) > 3000);

    // The model of what the application wrote, from the source's rows.
    const items = new Map<number, string>();
    for (let i = 1; i <= 3000; i++) items.set(i, `v${i}`);
    const logs = new Map<number, string>();
    for (let i = 1; i <= 3000; i++) logs.set(i, `m${i}`);
    const app = await client(target, db);
    // A write the foreign key (not enforced on the target during the move) would have refused.
    await app.query(`INSERT INTO public."Foo Bar" (item_id, "select") VALUES (999999, 'orphan')`);
    let stop = false;
    let ops = 0;
    // Statements that saw a row twice, or missed a row the model says is there.
    const seenWrong: string[] = [];
    const writer = (async () => {
      let i = 0;
      while (!stop) {
        i++;
        const pick = i % 6;
        const id = 1 + ((i * 7919) % 3600);
        if (pick === 0) {
          const r = await app.query<{ id: string }>(
            'INSERT INTO public.items (val, n) VALUES ($1, $2) RETURNING id',
            [`new${i}`, i],
          );
          items.set(Number(r.rows[0]!.id), `new${i}`);
        } else if (pick === 1) {
          const r = await app.query('UPDATE public.items SET val = $1 WHERE id = $2', [`upd${i}`, id]);
          if (r.rowCount !== (items.has(id) ? 1 : 0)) seenWrong.push(`update items ${id}: ${r.rowCount}`);
          if (r.rowCount === 1) items.set(id, `upd${i}`);
        } else if (pick === 2 && id > 600) {
          const r = await app.query('DELETE FROM public.items WHERE id = $1', [id]);
          if (r.rowCount !== (items.has(id) ? 1 : 0)) seenWrong.push(`delete items ${id}: ${r.rowCount}`);
          if (r.rowCount === 1) items.delete(id);
        } else if (pick === 3) {
          await app.query('INSERT INTO public.logs (k, msg) VALUES ($1, $2)', [100000 + i, `new${i}`]);
          logs.set(100000 + i, `new${i}`);
        } else if (pick === 4) {
          const r = await app.query('UPDATE public.logs SET msg = $1 WHERE k = $2', [`upd${i}`, id]);
          if (r.rowCount !== (logs.has(id) ? 1 : 0)) seenWrong.push(`update logs ${id}: ${r.rowCount}`);
          if (r.rowCount === 1) logs.set(id, `upd${i}`);
        } else if (pick === 5) {
          const r = await app.query('DELETE FROM public.logs WHERE k = $1', [id]);
          if (r.rowCount !== (logs.has(id) ? 1 : 0)) seenWrong.push(`delete logs ${id}: ${r.rowCount}`);
          if (r.rowCount === 1) logs.delete(id);
        }
        ops++;
      }
    })();
    try {
      const move = await runCli(['switch-first', 'move', ...args, '--batch-rows', '97', '--jobs', '2']);
      assert.equal(move.code, 0, move.stderr);
      assert.match(
        move.stdout,
        /foreign key public\."Foo Bar" "Foo Bar_item_id_fkey": violated \(\(item_id\)=\(999999\)\)/,
      );
      const refused = await runCli(['switch-first', 'finish', ...args]);
      assert.equal(refused.code, 6, refused.stderr);
      assert.match(refused.stderr, /public\."Foo Bar" "Foo Bar_item_id_fkey": \(item_id\)=\(999999\)/);
      await app.query('DELETE FROM public."Foo Bar" WHERE item_id = 999999');
      const finish = await runCli(['switch-first', 'finish', ...args]);
      assert.equal(finish.code, 0, finish.stderr);
      assert.match(finish.stdout, /finished: the target holds every row/);
    } finally {
      stop = true;
      await writer;
      await app.end();
    }
    assert.ok(ops > 100, `the application wrote during the move (${ops} statements)`);
    assert.deepEqual(seenWrong, [], 'every statement saw each row exactly once, moved or not');

    const gotItems = await target.sql<{ id: string; val: string; doubled: number; n: number }>(
      'SELECT id, val, n, doubled FROM public.items ORDER BY id',
      db,
    );
    assert.equal(gotItems.length, items.size, 'items: every row exactly once');
    assert.deepEqual(
      gotItems.map((r) => [Number(r.id), r.val]),
      [...items].sort((a, b) => a[0] - b[0]),
    );
    assert.ok(gotItems.every((r) => r.doubled === r.n * 2));
    const gotLogs = await target.sql<{ k: number; msg: string }>(
      'SELECT k, msg FROM public.logs ORDER BY k, msg',
      db,
    );
    assert.deepEqual(
      gotLogs.map((r) => [r.k, r.msg]),
      [...logs].sort((a, b) => a[0] - b[0]),
      'logs (no key): every row exactly once',
    );
    for (const t of TABLES)
      assert.equal((await tableFacts(source, db, t)).rows, 0, `${t} empty on the source`);
    const [fk] = await target.sql<{ v: boolean }>(
      `SELECT convalidated AS v FROM pg_constraint WHERE conname = 'Foo Bar_item_id_fkey'`,
      db,
    );
    assert.equal(fk?.v, true);
    assert.deepEqual(await leftovers(db), {
      foreign_tables: '0',
      servers: '0',
      mappings: '0',
      extension: '0',
      schemas: '0',
      journal_schema: '0',
    });
  });

  test('SIGKILL at every point of a batch and a target restart mid-move: no row lost or doubled', async () => {
    const { db, args } = await pair();
    const facts = await Promise.all(TABLES.map((t) => tableFacts(source, db, t)));
    const prep = await runCli([
      'switch-first',
      'prepare',
      ...args,
      '--accept',
      '*:foreign-keys',
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(prep.code, 0, prep.stderr);
    const one = [...args, '--jobs', '1', '--batch-rows', '100', '--lock-timeout', '60000'];

    // 1. Waiting for the target table lock (the application holds it).
    const app = await client(target, db);
    await app.query('BEGIN');
    await app.query('LOCK TABLE public.items, public.logs, public."Foo Bar" IN ACCESS SHARE MODE');
    await killedMove(one, () => waitForLockWait(target, db));
    await app.query('ROLLBACK');

    // 2. Inside the source transaction, its DELETE waiting for a row lock.
    const srcApp = await client(source, db);
    await srcApp.query('BEGIN');
    await srcApp.query('SELECT 1 FROM public.items FOR UPDATE');
    await srcApp.query('SELECT 1 FROM public.logs FOR UPDATE');
    await killedMove(one, () => waitForLockWait(source, db));
    await srcApp.query('ROLLBACK');

    // 3. Between the source's commit and the target's: the batch is only in the journal.
    const ledgerHold = await client(target, db);
    await ledgerHold.query('BEGIN');
    await ledgerHold.query('LOCK TABLE pgconvoy.switch_first_batches IN EXCLUSIVE MODE');
    await killedMove(one, () => waitForLockWait(target, db));
    await ledgerHold.query('ROLLBACK');
    const inFlight = await journalRows(db);
    assert.equal(inFlight.length, 1, 'a batch was journaled when pgconvoy died');
    const status = await runCli(['switch-first', 'status', ...args]);
    assert.match(status.stdout, /journaled/);

    // 4. After the target's commit, before the journal entry is dropped (this replays batch 3).
    await ledgerHold.query('BEGIN');
    await ledgerHold.query('LOCK TABLE pgconvoy.switch_first_batches IN EXCLUSIVE MODE');
    const journalHold = await client(source, db);
    await killedMove(one, async () => {
      await waitForLockWait(target, db);
      await journalHold.query('BEGIN');
      await journalHold.query('LOCK TABLE pgconvoy.switch_first_journal IN SHARE MODE');
      await ledgerHold.query('ROLLBACK');
      await waitForLockWait(source, db);
    });
    // Read before the journal's lock goes: the killed session's DELETE, waiting for it, would
    // still run then (harmless: the batch is in on the target).
    const stillJournaled = await journalRows(db);
    await journalHold.query('ROLLBACK');
    const [marked] = await target.sql<{ n: string }>(
      'SELECT count(*) AS n FROM pgconvoy.switch_first_batches WHERE batch_id = $1',
      db,
      [inFlight[0]!.batch_id],
    );
    assert.equal(marked!.n, '1', 'the journaled batch was in on the target when pgconvoy died');
    assert.deepEqual(stillJournaled, inFlight, 'and still in the journal');

    // 5. At whatever point of a batch it is in once ten more batches are in (no lock held by the test).
    const batchesIn = async () =>
      Number(
        (await target.sql<{ n: string }>('SELECT count(*) AS n FROM pgconvoy.switch_first_batches', db))[0]!
          .n,
      );
    const before = await batchesIn();
    await killedMove([...args, '--batch-rows', '50'], async (child) => {
      while (child.exitCode === null && (await batchesIn()) < before + 10)
        await new Promise((r) => setTimeout(r, 20));
    });

    // The target restarts mid-move: the move reconnects and completes.
    const move = runCli(['switch-first', 'move', ...args, '--batch-rows', '20', '--jobs', '2']);
    let moveEnded = false;
    void move.then(() => (moveEnded = true));
    const restartAt = (await batchesIn()) + 40;
    while (!moveEnded && (await batchesIn()) < restartAt) await new Promise((r) => setTimeout(r, 20));
    await target.restart('immediate');
    const result = await move;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /retrying/, 'the restart happened during the move');
    const finish = await runCli(['switch-first', 'finish', ...args]);
    assert.equal(finish.code, 0, finish.stderr);

    for (const [i, t] of TABLES.entries()) {
      assert.deepEqual(await tableFacts(target, db, t), facts[i], `${t}: same rows, each once`);
      assert.equal((await tableFacts(source, db, t)).rows, 0, `${t} empty on the source`);
    }
    await Promise.all([app.end(), srcApp.end(), ledgerHold.end(), journalHold.end()]);
  });

  test('the precheck refuses a unique constraint across both sides, naming it; teardown undoes a prepare', async () => {
    const { db, args } = await pair();
    await source.sql(
      'CREATE TABLE public.users (id serial PRIMARY KEY, email text UNIQUE); INSERT INTO public.users (email) VALUES ($$a@b$$)',
      db,
    );
    const refused = await runCli([
      'switch-first',
      'prepare',
      ...args,
      '--accept',
      '*:foreign-keys',
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(refused.code, 7, refused.stderr);
    assert.match(refused.stderr, /public\.users \[unique\]: unique index "users_email_key" on \(email\)/);
    assert.match(refused.stderr, /--accept 'public\.users:unique'/);
    const [created] = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`,
      db,
    );
    assert.equal(created!.n, '0', 'nothing created on the target');

    const prep = await runCli([
      'switch-first',
      'prepare',
      ...args,
      '--accept',
      '*:foreign-keys',
      '--accept',
      'public.users:unique',
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(prep.code, 0, prep.stderr);
    const down = await runCli(['switch-first', 'teardown', ...args]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await leftovers(db), {
      foreign_tables: '0',
      servers: '0',
      mappings: '0',
      extension: '0',
      schemas: '0',
      journal_schema: '0',
    });
    assert.equal((await tableFacts(source, db, 'public.items')).rows, 3000, 'the source keeps its rows');
  });
});
