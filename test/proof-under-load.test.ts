/**
 * The proof under load (online-trust issue): the application's role writes from several
 * connections from before `start` until after the freeze: inserts, updates of rows with
 * TOASTed values (most leave that column alone), deletes that cascade, writes to a
 * partitioned table (rows moving between partitions too) and to a table without a primary
 * key, values drawn from sequences; each writer logs every transaction it saw commit.
 * After `cutover`:
 * - every logged transaction is on the target, read back by SQL (not pgconvoy's verify), and
 *   every table and partition holds the same rows on both sides (test/helpers/compare.ts);
 * - every write attempted after the freeze was in place failed on the source, with a
 *   read-only, connection or permission error;
 * - cutover's own verify and a later `pgconvoy verify` pass, though the source's materialized
 *   view is stale (refreshed before start, never since);
 * - every sequence on the target is at least the source's;
 * - the writes-blocked time is printed;
 * - every online command (start, start-back, cutover, rollback, teardown) left its log in the
 *   run directory: private (0600), with its steps, and without a password.
 * The scenario takes the online mode as a parameter: a second mode is one more line below.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { assertSameData, sequenceValues } from './helpers/compare.js';
import { REFUSED } from './helpers/insert-writer.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
  type CliResult,
} from './helpers/servers.js';
import {
  APP_FIXTURE,
  APP_ROLE,
  AppWriter,
  READINGS_FIXTURE,
  assertTargetHoldsLog,
  type Attempt,
} from './online-writer.js';

/** How `start` replicates: a subscription on the target (PostgreSQL's), or pgconvoy's relay. */
export type Via = 'subscription' | 'relay';

const WRITERS = 3;

interface CutoverJson {
  writesBlockedMs: number;
  freezeLsn: string;
  verify: { ok: boolean; notes?: string[] };
  steps: { step: string; ms: number }[];
}

/** Until `stop()`: when the target's ledger first shows the freeze in place (cutover records its LSN right after). */
function watchFreeze(
  target: LocalServer,
  db: string,
): { frozenAt: () => number | undefined; stop: () => Promise<void> } {
  let frozenAt: number | undefined;
  let stopped = false;
  const client = new pg.Client({
    host: '127.0.0.1',
    port: target.port,
    database: db,
    user: 'postgres',
    password: 'sandbox',
  });
  const done = (async () => {
    await client.connect();
    while (!stopped && frozenAt === undefined) {
      const r = await client.query<{ lsn: string | null }>(
        'SELECT cutover_lsn AS lsn FROM pgconvoy.online_state',
      );
      if (r.rows[0]?.lsn) frozenAt = Date.now();
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    frozenAt: () => frozenAt,
    stop: async () => {
      stopped = true;
      await done;
      await client.end();
    },
  };
}

/** Each command's log: one file, 0600, its steps as `expected` says, and no password of the sandbox. */
function assertCommandLogs(runDir: string, expected: Record<string, RegExp>): void {
  const dir = path.join(runDir, 'logs');
  const files = readdirSync(dir);
  for (const [command, steps] of Object.entries(expected)) {
    const mine = files.filter((f) => new RegExp(`^${command}-\\d{4}-.*\\.log$`).test(f));
    assert.equal(mine.length, 1, `one log of ${command} in ${dir}: ${files.join(', ')}`);
    const file = path.join(dir, mine[0]!);
    assert.equal(statSync(file).mode & 0o777, 0o600, `${file} is private`);
    const text = readFileSync(file, 'utf8');
    assert.match(
      text,
      new RegExp(`^\\S+ pgconvoy ${command} --source `),
      `${command}: the command line first`,
    );
    assert.match(text, steps, `${command}: its steps`);
    assert.doesNotMatch(text, /sandbox/, `${command}: no password`);
  }
}

/** Waits until start --via relay has copied and its relay streams the slot; fails if start exits first. */
async function relayStreaming(
  source: LocalServer,
  target: LocalServer,
  db: string,
  start: Promise<CliResult>,
): Promise<void> {
  let exited: CliResult | undefined;
  void start.then((r) => (exited = r));
  for (let i = 0; ; i++) {
    if (exited) assert.fail(`start --via relay exited (${exited.code}): ${exited.stdout}${exited.stderr}`);
    assert.ok(i < 1200, 'the relay streams within 2 minutes');
    const phase = await target
      .sql<{ phase: string }>('SELECT phase FROM pgconvoy.online_state', db)
      .catch(() => []);
    const streaming = await source.sql(
      "SELECT 1 FROM pg_stat_replication WHERE application_name = 'pgconvoy relay' AND state = 'streaming'",
    );
    if (phase[0]?.phase === 'replicating' && streaming.length > 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function proofUnderLoad(via: Via): void {
  describe(`proof under load, ${SYSTEM_MAJOR} → ${NEW_MAJOR}, start --via ${via}`, () => {
    let source: LocalServer;
    let target: LocalServer;
    before(async () => {
      [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
      await Promise.all([source.sql(APP_ROLE), target.sql(APP_ROLE)]);
    });
    after(async () => Promise.all([source?.destroy(), target?.destroy()]));

    test('every committed transaction is on the target, nothing is accepted after the freeze, verify passes', async (t) => {
      const db = await createDatabase(source, uniqueName('Proof'));
      await createDatabase(target, db);
      await source.sql(APP_FIXTURE + READINGS_FIXTURE, db);
      const app = resolveConnection(source.url(db, 'app_writer', 'writer'), 'source', {});
      const writers = Array.from(
        { length: WRITERS },
        (_, index) =>
          new AppWriter(app, { share: { index, count: WRITERS }, partitioned: true, persist: true }),
      );
      const runDir = tempDir();
      const args = ['--source', source.url(db), '--target', target.url(db), '--run-dir', runDir];
      const viaArgs = via === 'subscription' ? [] : ['--via', via];
      for (const w of writers) w.start(300_000);
      try {
        await Promise.all(writers.map((w) => w.waitForCommits(30)));
        // With a relay, start copies and then applies in the foreground until cutover is done.
        const start = runCli(['start', ...args, ...viaArgs], { timeoutMs: 300_000 });
        if (via === 'relay') await relayStreaming(source, target, db, start);
        else {
          const started = await start;
          assert.equal(started.code, 0, started.stdout + started.stderr);
        }
        const back = await runCli(['start-back', ...args]);
        assert.equal(back.code, 0, back.stdout + back.stderr);
        await Promise.all(writers.map((w) => w.waitForCommits(150)));

        const freeze = watchFreeze(target, db);
        const run = await runCli(['cutover', ...args, '--json']);
        await freeze.stop();
        assert.equal(run.code, 0, run.stdout + run.stderr);
        const frozenAt = freeze.frozenAt();
        assert.ok(frozenAt !== undefined, 'the ledger showed the freeze while cutover ran');
        const result = JSON.parse(run.stdout) as CutoverJson;
        if (via === 'relay') {
          const relay = await start;
          assert.equal(
            relay.code,
            0,
            `the relay ends by itself after cutover: ${relay.stdout}${relay.stderr}`,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
        for (const w of writers) await w.stop();

        // Nothing accepted after the freeze: every attempt begun since was refused.
        for (const [i, w] of writers.entries()) {
          const late: Attempt[] = w.attempts.filter((a) => a.at > frozenAt);
          assert.ok(late.length > 0, `writer ${i} kept trying after the freeze`);
          assert.deepEqual(
            late.filter((a) => a.ok),
            [],
            `writer ${i}: no write accepted after the freeze`,
          );
          for (const a of late)
            assert.match(a.error ?? '', REFUSED, `writer ${i}: refused, not failed otherwise`);
        }
        const commits = writers.reduce((n, w) => n + w.commits, 0);
        assert.ok(commits >= WRITERS * 180, `the writers committed ${commits} transactions`);

        // Every logged transaction is on the target, and both sides hold the same rows.
        const src = await openClient(resolveConnection(source.url(db), 'source', {}));
        try {
          for (const w of writers) await w.settle(src);
        } finally {
          await src.end();
        }
        await assertTargetHoldsLog(target, db, writers);
        await assertSameData(source, db, target, db);

        // Sequences: the target is at least where the source is.
        const [sv, tv] = await Promise.all([sequenceValues(source, db), sequenceValues(target, db)]);
        assert.deepEqual([...tv.keys()], [...sv.keys()], 'the same sequences');
        for (const [name, v] of sv)
          assert.ok((tv.get(name) ?? -1n) >= v, `sequence ${name}: target ≥ source (${v})`);

        // The source's materialized view is stale, and neither verify fails on it.
        const [view] = await source.sql<{ stale: boolean }>(
          'SELECT (SELECT n FROM shop.order_count) <> (SELECT count(*) FROM shop.orders) AS stale',
          db,
        );
        assert.equal(view?.stale, true, "the source's materialized view is stale");
        assert.equal(result.verify.ok, true, "cutover's verify passed");
        const verify = await runCli(['verify', ...args.slice(0, 4)]);
        assert.equal(verify.code, 0, verify.stdout + verify.stderr);
        assert.match(verify.stdout, /shop\.order_count/, 'the stale view is named as a note');

        assert.ok(result.writesBlockedMs > 0, `writes blocked ${result.writesBlockedMs} ms`);
        // The way back, then clean up; each command's log is in the run directory.
        const rollback = await runCli(['rollback', ...args]);
        assert.equal(rollback.code, 0, rollback.stdout + rollback.stderr);
        const teardown = await runCli(['teardown', ...args]);
        assert.equal(teardown.code, 0, teardown.stdout + teardown.stderr);
        assertCommandLogs(runDir, {
          start:
            via === 'relay'
              ? /publication .* on the source[\s\S]*"type":"phase","phase":"copy","state":"done"/
              : /publication .* on the source[\s\S]*"type":"phase","phase":"copy","state":"done"[\s\S]*done in \d+ ms: \{/,
          'start-back': /done in \d+ ms: \{"publication":"pgconvoy_back_/,
          cutover:
            /"step":"write freeze","state":"done"[\s\S]*"step":"catch up"[\s\S]*done in \d+ ms: .*"writesBlockedMs":\d+/,
          rollback: /done in \d+ ms: .*"phase":"rolled-back"/,
          teardown: /done in \d+ ms: \[/,
        });
        t.diagnostic(
          `writes blocked ${result.writesBlockedMs} ms; ${commits} transactions; steps: ${result.steps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`,
        );
      } finally {
        for (const w of writers) await w.stop().catch(() => undefined);
      }
    });
  });
}

proofUnderLoad('subscription');
proofUnderLoad('relay');
