/**
 * Online migration end to end, against real servers, with the CLI as a user runs it: an
 * application writes to the source (its own role) from before `start` until `cutover` ends
 * its session and refuses it a new one. Afterwards every change it saw commit is on the
 * target, every table is equal on both sides (also the ones without a primary key), and the
 * sequences are at least the source's. Then: rollback brings the target's later writes back
 * to the source and opens the source database again exactly as it was (15 → 17), or teardown removes back-replication
 * (13 → 17); either way no slot, publication or subscription is left, and a second teardown
 * removes nothing. Last, a source without wal_level = logical: start refuses with the hint,
 * and `--fallback offline` copies it offline.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { replicationObjects, sequenceValues, tableFacts, userTables } from './helpers/compare.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
  allowLeftovers,
} from './helpers/servers.js';
import { APP_FIXTURE, APP_ROLE, AppWriter, ITEMS, assertTargetHoldsLog, md5 } from './online-writer.js';

allowLeftovers('the start, cutover, rollback and teardown of one migration are separate tests');

const ROLE = APP_ROLE;
const FIXTURE = APP_FIXTURE;

let target: LocalServer;
before(async () => {
  target = await startServer(NEW_MAJOR);
  await target.sql(ROLE);
});
after(async () => target?.destroy());

/** Every table equal on both sides: row count and a checksum over all rows' text. */
async function assertAllTablesEqual(source: LocalServer, db: string): Promise<number> {
  const tables = await userTables(source, db);
  assert.deepEqual(await userTables(target, db), tables, 'the same tables on both sides');
  for (const t of tables) {
    const [s, d] = await Promise.all([tableFacts(source, db, t), tableFacts(target, db, t)]);
    assert.deepEqual(d, s, `${t}: same rows on the target as on the source`);
  }
  return tables.length;
}

interface Scenario {
  source: LocalServer;
  db: string;
  writer: AppWriter;
  args: string[];
}

function onlineTests(sourceMajor: number, ending: 'rollback' | 'teardown'): void {
  describe(`online migration ${sourceMajor} → ${NEW_MAJOR} under writes`, () => {
    const s = {} as Scenario;
    before(async () => {
      s.source = await startServer(sourceMajor);
      await s.source.sql(ROLE);
      s.db = await createDatabase(s.source, uniqueName('Online-Src'));
      await createDatabase(target, s.db);
      await s.source.sql(FIXTURE, s.db);
      s.args = ['--source', s.source.url(s.db), '--target', target.url(s.db)];
      s.writer = new AppWriter(resolveConnection(s.source.url(s.db, 'app_writer', 'writer'), 'source', {}));
    });
    after(async () => {
      await s.writer?.stop().catch(() => undefined);
      await s.source?.destroy();
    });

    test('start copies from the slot snapshot while the application writes, then replicates', async () => {
      s.writer.start(120_000);
      await s.writer.waitForCommits(100);
      const run = await runCli(['start', ...s.args, '--jobs', '3', '--run-dir', tempDir(), '--json']);
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as {
        mode: string;
        published: { name: string }[];
        copiedAtCutover: { table: { name: string }; reason: string }[];
      };
      assert.equal(result.mode, 'online');
      assert.deepEqual(result.published.map((t) => t.name).sort(), ['Ferry Items', 'orders', 'select']);
      assert.deepEqual(
        result.copiedAtCutover.map((t) => t.table.name),
        ['nokey'],
      );

      const again = await runCli(['start', ...s.args, '--run-dir', tempDir()]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /^already replicating into this target/);

      await s.writer.waitForCommits(200);
      await s.source.sql("SELECT lo_from_bytea(424242, 'a large object made after start')", s.db);
      const status = await runCli(['status', ...s.args.slice(2), '--source', s.source.url(s.db), '--json']);
      assert.equal(status.code, 0, status.stderr);
      const online = (
        JSON.parse(status.stdout) as {
          online: {
            state: { phase: string };
            direction: string;
            replication: {
              lagBytes: number;
              slot: { active: boolean; retainedWalBytes: number };
              subscription: { applyErrorCount: number };
            };
            warnings: string[];
          };
        }
      ).online;
      assert.equal(online.state.phase, 'replicating');
      assert.equal(online.direction, 'forward');
      assert.equal(online.replication.slot.active, true, 'the subscription streams from the slot');
      assert.ok(online.replication.lagBytes >= 0 && online.replication.slot.retainedWalBytes >= 0);
      assert.equal(
        online.replication.subscription.applyErrorCount,
        0,
        'no apply error (a duplicate row would be one)',
      );
      assert.deepEqual(online.warnings, []);
      const text = await runCli(['status', '--target', target.url(s.db)]);
      assert.match(text.stdout, /online phase: replicating/);
      assert.match(text.stdout, /pass --source to see the replication lag/);
    });

    if (ending === 'teardown') {
      test('cutover refuses while the source has DDL that start did not see, and changes nothing', async () => {
        await s.source.sql(
          'ALTER TABLE public."select" ADD COLUMN extra integer; CREATE TABLE public.later (id int)',
          s.db,
        );
        const refused = await runCli(['cutover', ...s.args]);
        assert.equal(refused.code, 7, refused.stderr);
        assert.match(
          refused.stderr,
          /the source's schema differs from the target's \(DDL is not replicated\): table public\.later missing on target \(id integer\); column public\."select"\.extra missing on target \(integer\)/,
        );
        await s.writer.waitForCommits(50);
        assert.equal(s.writer.stopReason, undefined, 'the application still writes');
        await s.source.sql('ALTER TABLE public."select" DROP COLUMN extra; DROP TABLE public.later', s.db);
      });
    }

    test('cutover freezes writes, catches up, and the target holds every committed change', async () => {
      const back = await runCli(['start-back', ...s.args]);
      assert.equal(back.code, 0, back.stderr);
      assert.match(back.stdout, /^back-replication prepared: publication "pgconvoy_back_/);
      await s.writer.waitForCommits(300);
      // A row lock on the target holds the apply worker back on a change made just before
      // cutover: cutover must wait for it, not read the target too early.
      const holder = await openClient(resolveConnection(target.url(s.db), 'target', {}));
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM public."select" WHERE id = 1 FOR UPDATE');
      await s.source.sql(
        `UPDATE public."select" SET "MixedCase" = 'changed just before cutover' WHERE id = 1`,
        s.db,
      );
      const analyzedAt = async () =>
        (
          await target.sql<{ t: string | null }>(
            `SELECT last_analyze::text AS t FROM pg_stat_user_tables WHERE relname = 'nokey'`,
            s.db,
          )
        )[0]?.t ?? null;
      const nokeyBefore = await analyzedAt();
      const cutover = runCli(['cutover', ...s.args, '--json']);
      await s.writer.done;
      await new Promise((r) => setTimeout(r, 1500));
      await holder.query('ROLLBACK');
      await holder.end();
      const run = await cutover;
      assert.equal(run.code, 0, run.stderr);
      const r = JSON.parse(run.stdout) as {
        writesBlockedMs: number;
        revokedConnect: string[];
        verify: { ok: boolean };
        backReplication: { originNone: boolean };
        targetConninfo: string;
        copiedTables: { table: { name: string }; rows: number }[];
        steps: { step: string; ms: number }[];
      };
      assert.ok(
        r.steps.some((x) => x.step === 'refresh materialized views'),
        'the target refreshed its materialized views after catch-up',
      );
      const views = await target.sql<{ n: string }>('SELECT n::text FROM shop.order_count', s.db);
      const [orders] = await target.sql<{ n: string }>('SELECT count(*)::text AS n FROM shop.orders', s.db);
      assert.equal(views[0]?.n, orders?.n, "the target's view is fresh");
      const catchUp = r.steps.find((x) => x.step === 'catch up');
      assert.ok((catchUp?.ms ?? 0) >= 500, `cutover waited for the held-back change (${catchUp?.ms} ms)`);
      const changed = await target.sql<{ v: string }>(
        'SELECT "MixedCase" AS v FROM public."select" WHERE id = 1',
        s.db,
      );
      assert.equal(changed[0]?.v, 'changed just before cutover');
      const lo = await target.sql<{ v: string }>("SELECT convert_from(lo_get(424242), 'UTF8') AS v", s.db);
      assert.equal(lo[0]?.v, 'a large object made after start', 'large objects are copied at cutover');
      assert.deepEqual(r.revokedConnect, ['PUBLIC'], "the application's role connected through PUBLIC");
      assert.ok(
        r.writesBlockedMs > 0 && r.writesBlockedMs < 60_000,
        `writes blocked ${r.writesBlockedMs} ms`,
      );
      assert.equal(r.verify.ok, true);
      // ANALYZE at cutover does only what needs it, but no table is left without statistics.
      const unanalyzed = await target.sql<{ t: string }>(
        `SELECT format('%I.%I', schemaname, relname) AS t FROM pg_stat_user_tables
         WHERE schemaname <> 'pgconvoy' AND last_analyze IS NULL AND last_autoanalyze IS NULL`,
        s.db,
      );
      assert.deepEqual(
        unanalyzed.map((r) => r.t),
        [],
        'every table has statistics',
      );
      const nokeyAfter = await analyzedAt();
      assert.ok(
        nokeyAfter !== null && nokeyAfter !== nokeyBefore,
        'the table copied at cutover is analyzed again',
      );
      assert.deepEqual(r.backReplication, { originNone: false }, 'origin = none needs a 16+ source');
      assert.doesNotMatch(r.targetConninfo, /sandbox/, 'no password in what to point the application at');
      assert.deepEqual(
        r.copiedTables.map((t) => t.table.name),
        ['nokey'],
      );

      assert.match(s.writer.stopReason ?? '', /permission denied for database/, 'the writer was shut out');
      assert.ok(s.writer.commits >= 600, `the writer committed ${s.writer.commits} transactions`);
      const src = await openClient(resolveConnection(s.source.url(s.db), 'source', {}));
      try {
        await s.writer.settle(src);
      } finally {
        await src.end();
      }
      await assertTargetHoldsLog(target, s.db, [s.writer]);
      assert.equal(await assertAllTablesEqual(s.source, s.db), 4);
      const [sv, tv] = await Promise.all([sequenceValues(s.source, s.db), sequenceValues(target, s.db)]);
      assert.deepEqual([...tv.keys()], [...sv.keys()]);
      for (const [name, v] of sv) assert.equal(tv.get(name), v, `sequence ${name} equal`);
      assert.deepEqual(
        await replicationObjects(s.source, s.db),
        { slots: 0, subs: 1, pubs: 0 },
        'forward gone; the back subscription on the source',
      );
      assert.deepEqual(
        await replicationObjects(target, s.db),
        { slots: 1, subs: 0, pubs: 1 },
        'the back slot and publication on the target',
      );
    });

    if (ending === 'rollback') {
      test('rollback: writes made on the target after cutover reach the source, the database opens exactly as it was', async () => {
        const app = await openClient(
          resolveConnection(target.url(s.db, 'app_writer', 'writer'), 'target', {}),
        );
        try {
          for (let i = 1; i <= 30; i++)
            await app.query(`INSERT INTO ${ITEMS} (note, big) VALUES ($1, $2)`, [
              `after${i}`,
              i % 3 === 0 ? md5(String(i)).repeat(100) : null,
            ]);
          const some = [...s.writer.items.keys()].slice(0, 2);
          await app.query(`UPDATE ${ITEMS} SET counter = counter + 100 WHERE id = $1`, [some[0]]);
          await app.query(`DELETE FROM ${ITEMS} WHERE id = $1`, [some[1]]);
          await app.query(
            "INSERT INTO shop.orders (item_id, qty, tag) SELECT id, 1, 'after' FROM public.\"Ferry Items\" WHERE note LIKE 'after%'",
          );
          await app.query("INSERT INTO public.nokey VALUES ('after-a', 1), ('after-b', 2)");
          await app.query("SELECT nextval('public.ticket_seq') FROM generate_series(1, 3)");
          await target.sql("SELECT lo_from_bytea(434343, 'made on the target')", s.db);
        } finally {
          await app.end();
        }
        const status = await runCli(['status', ...s.args, '--json']);
        const online = (
          JSON.parse(status.stdout) as { online: { state: { phase: string }; direction: string } }
        ).online;
        assert.deepEqual([online.state.phase, online.direction], ['done', 'back']);

        const run = await runCli(['rollback', ...s.args]);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /CONNECT given back to PUBLIC/);
        const [acl] = await s.source.sql<{ same: boolean; ro: number }>(
          `SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT aclexplode(coalesce(datacl, acldefault('d', datdba)))::text AS x FROM pg_database WHERE datname = current_database()) e)
                = (SELECT array_agg(x ORDER BY x) FROM (SELECT aclexplode(acldefault('d', datdba))::text AS x FROM pg_database WHERE datname = current_database()) e) AS same,
                  (SELECT count(*)::int FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()) AS ro`,
          s.db,
        );
        assert.deepEqual(
          acl,
          { same: true, ro: 0 },
          'the privileges and settings the database had before the freeze',
        );
        assert.match(run.stdout, /phase done → rolled-back/);
        const moved = await s.source.sql<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${ITEMS} WHERE note LIKE 'after%'`,
          s.db,
        );
        assert.equal(moved[0]?.n, 30, 'the rows written on the target are on the source');
        const los = await s.source.sql<{ oid: string }>(
          'SELECT oid::text FROM pg_largeobject_metadata ORDER BY oid',
          s.db,
        );
        assert.deepEqual(
          los.map((r) => r.oid),
          ['424242', '434343'],
          'large objects copied back',
        );
        await assertAllTablesEqual(s.source, s.db);
        const [sv, tv] = await Promise.all([sequenceValues(s.source, s.db), sequenceValues(target, s.db)]);
        for (const [name, v] of tv)
          assert.ok((sv.get(name) ?? -1n) >= v, `source sequence ${name} >= target`);

        const back = await openClient(
          resolveConnection(s.source.url(s.db, 'app_writer', 'writer'), 'source', {}),
        );
        try {
          // The identity sequence was synced back: a new row does not collide with one made on the target.
          await back.query(`INSERT INTO ${ITEMS} (note) VALUES ('back on the source')`);
        } finally {
          await back.end();
        }
        const after = await runCli(['status', ...s.args, '--json']);
        assert.equal(
          (JSON.parse(after.stdout) as { online: { state: { phase: string } } }).online.state.phase,
          'rolled-back',
        );
      });
    }

    test('teardown leaves no slot, publication or subscription; a second one is a no-op', async () => {
      if (ending === 'teardown') {
        const refused = await runCli(['teardown', ...s.args]);
        assert.equal(refused.code, 7, 'teardown keeps the way back unless forced');
        assert.match(refused.stderr, /back-replication from the target to the source is running/);
        assert.match(refused.stderr, /--force/);
      }
      const run = await runCli([
        'teardown',
        ...s.args,
        '--json',
        ...(ending === 'teardown' ? ['--force'] : []),
      ]);
      assert.equal(run.code, 0, run.stderr);
      const removed = (JSON.parse(run.stdout) as { removed: { side: string; kind: string }[] }).removed;
      assert.deepEqual(
        removed.map((x) => `${x.side} ${x.kind}`),
        ending === 'rollback' ? [] : ['source subscription', 'target slot', 'target publication'],
      );
      assert.deepEqual(await replicationObjects(s.source, s.db), { slots: 0, subs: 0, pubs: 0 });
      assert.deepEqual(await replicationObjects(target, s.db), { slots: 0, subs: 0, pubs: 0 });
      const second = await runCli(['teardown', ...s.args]);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, /^nothing to remove: /);
      if (ending === 'teardown') {
        // A write on the target after back-replication was torn down: rollback cannot prove
        // the source has it, and says so instead of reporting success.
        await target.sql("INSERT INTO public.nokey VALUES ('after teardown', 1)", s.db);
        const rollback = await runCli(['rollback', ...s.args]);
        assert.equal(rollback.code, 7, rollback.stdout + rollback.stderr);
        assert.match(
          rollback.stderr,
          /back-replication .* is gone: nothing proves that the source has the writes/,
        );
        assert.match(rollback.stderr, /--force/);
      }
    });
  });
}

onlineTests(SYSTEM_MAJOR, 'rollback');
onlineTests(OLD_MAJOR, 'teardown');

describe('a start killed during its initial copy', () => {
  test('start again refuses with the teardown hint; after teardown it empties and copies again', async () => {
    const source = await startServer(SYSTEM_MAJOR);
    try {
      await source.sql(ROLE);
      const db = await createDatabase(source, uniqueName('Killed'));
      await createDatabase(target, db);
      await source.sql(FIXTURE, db);
      const args = ['--source', source.url(db), '--target', target.url(db), '--run-dir', tempDir()];
      // A bigger first table makes room for the test to step in before the last one is copied.
      await source.sql(
        `INSERT INTO ${ITEMS} (note, big) SELECT 'more' || g, repeat(md5(g::text), 10) FROM generate_series(1, 20000) g`,
        db,
      );
      const locker = await openClient(resolveConnection(target.url(db), 'target', {}));
      try {
        let child: import('node:child_process').ChildProcess | undefined;
        const first = runCli(['start', ...args, '--jobs', '1'], { onSpawn: (c) => (child = c) });
        // As soon as the schema is on the target, a lock there keeps the last table's load
        // (TRUNCATE + COPY, largest table first) waiting.
        for (let i = 0; ; i++) {
          const t = await locker.query<{ t: string | null }>(
            `SELECT pg_catalog.to_regclass('public."select"')::text AS t`,
          );
          if (t.rows[0]?.t) break;
          assert.ok(i < 3000, 'the schema reaches the target');
          await new Promise((r) => setTimeout(r, 5));
        }
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE public."select" IN ACCESS SHARE MODE');
        for (let i = 0; ; i++) {
          const done = await target.sql<{ n: number }>(
            "SELECT count(*)::int AS n FROM pgconvoy.jobs WHERE state = 'done'",
            db,
          );
          // The three small tables are one job group (one transaction, copy-worker.ts), which
          // the lock holds back: only the largest table commits before the kill.
          if (done[0]?.n === 1) break;
          assert.ok(i < 500, 'the largest table is copied while the small ones wait');
          await new Promise((r) => setTimeout(r, 20));
        }
        const slots = await source.sql<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_replication_slots',
          db,
        );
        assert.equal(slots[0]?.n, 1, 'the slot exists');
        child?.kill('SIGKILL');
        const killed = await first;
        assert.equal(killed.signal, 'SIGKILL');
        await locker.query('ROLLBACK');
      } finally {
        await locker.end();
      }
      const again = await runCli(['start', ...args]);
      assert.equal(again.code, 1, again.stderr);
      assert.match(again.stderr, /an earlier pgconvoy start stopped during its initial copy/);
      assert.match(
        again.stderr,
        /hint: run pgconvoy teardown with the same --source and --target, then run pgconvoy start again/,
      );

      const down = await runCli(['teardown', ...args.slice(0, 4), '--json']);
      assert.equal(down.code, 0, down.stderr);
      const removed = (JSON.parse(down.stdout) as { removed: { side: string; kind: string }[] }).removed;
      assert.deepEqual(
        removed.map((x) => `${x.side} ${x.kind}`),
        ['source slot', 'source publication'],
      );
      const fresh = await runCli(['start', ...args]);
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.match(fresh.stdout, /online migration started/);
      assert.match(fresh.stderr, /emptied 1 table\(s\) the interrupted copy had filled; copying again/);
      await source.sql(`INSERT INTO ${ITEMS} (note) VALUES ('after the restart')`, db);
      const cut = await runCli(['cutover', ...args.slice(0, 4), '--verify', 'counts', '--json']);
      assert.equal(cut.code, 0, cut.stderr);
      assert.equal(await assertAllTablesEqual(source, db), 4);
      // --verify counts: exact counts for replicated tables, checksums for those copied at cutover.
      const r = JSON.parse(cut.stdout) as {
        verify: { ok: boolean; tables: { name: string; method: string }[] };
        copiedTables: { table: { name: string } }[];
      };
      assert.equal(r.verify.ok, true);
      const copied = new Set(r.copiedTables.map((t) => t.table.name));
      assert.ok(copied.size > 0, 'a table was copied at cutover');
      for (const t of r.verify.tables) assert.equal(t.method === 'count', !copied.has(t.name), t.name);
    } finally {
      await source.destroy();
    }
  });
});

describe('a source without wal_level = logical', () => {
  test('start refuses with the hint; --fallback offline copies offline', async () => {
    const replica = await startServer(SYSTEM_MAJOR, { settings: { wal_level: 'replica' } });
    try {
      await replica.sql(ROLE);
      const db = await createDatabase(replica, uniqueName('Fallback'));
      await createDatabase(target, db);
      await replica.sql(FIXTURE, db);
      const args = ['--source', replica.url(db), '--target', target.url(db), '--run-dir', tempDir()];
      const refused = await runCli(['start', ...args]);
      assert.equal(refused.code, 7, refused.stderr);
      assert.match(
        refused.stderr,
        /online migration is blocked: source wal_level: replica: logical replication needs wal_level = logical/,
      );
      assert.match(refused.stderr, /ALTER SYSTEM SET wal_level = logical/);
      assert.match(refused.stderr, /--fallback offline/);

      const offline = await runCli(['start', ...args, '--fallback', 'offline']);
      assert.equal(offline.code, 0, offline.stderr);
      assert.match(offline.stdout, /copied OFFLINE \(--fallback offline\)/);
      assert.equal(await assertAllTablesEqual(replica, db), 4);
      assert.deepEqual(await replicationObjects(replica, db), { slots: 0, subs: 0, pubs: 0 });
      const state = await target.sql<{ t: string | null }>(
        "SELECT to_regclass('pgconvoy.online_state')::text AS t",
        db,
      );
      const rows = state[0]?.t
        ? await target.sql<{ n: number }>('SELECT count(*)::int AS n FROM pgconvoy.online_state', db)
        : [{ n: 0 }];
      assert.equal(rows[0]?.n, 0, 'no online state: it was an offline copy');
    } finally {
      await replica.destroy();
    }
  });
});
