/**
 * The write freeze of cutover, proven against real servers (the freeze-loss issue): writers
 * that connect for every insert (every 10 ms) as pgconvoy's own role and as a second
 * superuser, and writers that hold one connection (as the application's role and as that
 * superuser), write from before `start` until after `cutover`. Afterwards:
 * - every insert a writer saw commit is on the target;
 * - the source and the target hold exactly the same rows (an independent comparison: a
 *   write that landed on the source after the freeze point would be on the source only);
 * - every attempt after cutover returned failed with a read-only or connection error;
 * - the same application role still writes to another database of that server.
 * The same with cutover SIGKILLed at 0.3 s, 0.8 s and 1.6 s and run again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { REFUSED, Writer, eventsFixture } from './helpers/insert-writer.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
} from './helpers/servers.js';

const FIXTURE = eventsFixture(1000);

let source: LocalServer;
let target: LocalServer;
before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  await source.sql(
    `CREATE ROLE app LOGIN PASSWORD 'apppw'; CREATE ROLE dba SUPERUSER LOGIN PASSWORD 'dbapw'`,
  );
  await target.sql(`CREATE ROLE app LOGIN PASSWORD 'apppw'`);
});
after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

async function rows(server: LocalServer, db: string): Promise<string[]> {
  const res = await server.sql<{ k: string }>(
    "SELECT writer || ':' || n AS k FROM public.events ORDER BY writer, n",
    db,
  );
  return res.map((r) => r.k);
}

async function scenario(killAfterMs: number | undefined): Promise<string> {
  const db = await createDatabase(source, uniqueName('Freeze'));
  await createDatabase(target, db);
  await source.sql(FIXTURE, db);
  const cfg = (user: string, password: string): pg.ClientConfig => ({
    host: '127.0.0.1',
    port: source.port,
    database: db,
    user,
    password,
  });
  const writers = [
    new Writer('own-role-short', cfg('postgres', 'sandbox'), 'short'),
    new Writer('superuser-short', cfg('dba', 'dbapw'), 'short'),
    new Writer('app-long', cfg('app', 'apppw'), 'long'),
    new Writer('superuser-long', cfg('dba', 'dbapw'), 'long'),
  ];
  const args = ['--source', source.url(db), '--target', target.url(db)];
  for (const w of writers) w.start();
  try {
    const start = await runCli(['start', ...args]);
    assert.equal(start.code, 0, start.stderr);
    await new Promise((r) => setTimeout(r, 500));
    for (const w of writers) assert.ok(w.committed.length > 5, `${w.name} wrote while replicating`);

    if (killAfterMs !== undefined) {
      const killed = await runCli(['cutover', ...args, '--no-verify'], {
        onSpawn: (child) => setTimeout(() => child.kill('SIGKILL'), killAfterMs),
      });
      assert.equal(
        killed.signal,
        'SIGKILL',
        `cutover was killed at ${killAfterMs} ms (it ended by itself: ${killed.stdout})`,
      );
      await new Promise((r) => setTimeout(r, 300));
    }
    const run = await runCli(['cutover', ...args, '--no-verify', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const finishedAt = Date.now();
    const result = JSON.parse(run.stdout) as {
      freezeLsn: string;
      writesBlockedMs: number;
      steps: { step: string; ms: number }[];
    };
    await new Promise((r) => setTimeout(r, 600));
    for (const w of writers) await w.stop();

    // Every insert a writer saw commit is on the target.
    const onTarget = new Set(await rows(target, db));
    for (const w of writers) {
      const missing = w.committed.filter((n) => !onTarget.has(`${w.name}:${n}`));
      assert.deepEqual(missing, [], `${w.name}: every committed insert is on the target`);
    }
    // Nothing landed on the source after the freeze point: the two sides are the same.
    assert.deepEqual(await rows(target, db), await rows(source, db), 'source and target hold the same rows');
    // Every attempt after cutover returned failed, with a refusal, never a silent success.
    for (const w of writers) {
      const late = w.attempts.filter((a) => a.at > finishedAt);
      assert.ok(late.length > 0, `${w.name} kept trying after cutover`);
      const accepted = late.filter((a) => a.ok);
      assert.equal(accepted.length, 0, `${w.name}: no write accepted after the freeze`);
      for (const a of late)
        assert.match(a.error ?? '', REFUSED, `${w.name}: refused as read-only or not allowed`);
    }
    assert.ok(result.writesBlockedMs > 0, `writes blocked ${result.writesBlockedMs} ms`);
    return `writes blocked ${result.writesBlockedMs} ms; ${result.steps.map((x) => `${x.step} ${x.ms} ms`).join(', ')}`;
  } finally {
    for (const w of writers) await w.stop();
  }
}

describe(`cutover freeze ${SYSTEM_MAJOR} → ${NEW_MAJOR} under writers that reconnect for every insert`, () => {
  test('no committed write is lost, no write is accepted after the freeze; other databases keep working', async (t) => {
    t.diagnostic(await scenario(undefined));
    // The freeze is per database: the same application role still connects and writes elsewhere.
    const other = await createDatabase(source, uniqueName('Other'));
    await source.sql('CREATE TABLE public.t (v int); GRANT INSERT ON public.t TO app', other);
    const client = new pg.Client({
      host: '127.0.0.1',
      port: source.port,
      database: other,
      user: 'app',
      password: 'apppw',
    });
    await client.connect();
    try {
      await client.query('INSERT INTO public.t VALUES (1)');
    } finally {
      await client.end();
    }
  });

  for (const ms of [300, 800, 1600])
    test(`cutover SIGKILLed at ${ms} ms, then run again: nothing lost, nothing accepted after the freeze`, async (t) => {
      t.diagnostic(await scenario(ms));
    });
});
