/**
 * The proof that online migration loses nothing and duplicates nothing: while a writer keeps
 * inserting, updating (also rows with out-of-line TOASTed values, with updates that leave
 * that column alone) and deleting on the source, a publication and a slot with an exported
 * snapshot are made, the table is copied inside that snapshot, and a subscription replays
 * the slot from its consistent point. After catch-up the target must equal the source.
 * Then teardown removes every object of both directions, and a second teardown nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection, type ConnectionSpec } from '../src/connect/resolve.js';
import { PgconvoyError } from '../src/errors.js';
import { qualifiedName, quoteLiteral } from '../src/util/sql.js';
import { replicationNames } from '../src/replicate/names.js';
import { createPublication } from '../src/replicate/publication.js';
import { createSlotWithSnapshot } from '../src/replicate/slot.js';
import {
  createSubscription,
  enableSubscription,
  subscriptionConninfo,
} from '../src/replicate/subscription.js';
import { probeSourceFromTarget } from '../src/replicate/reachability.js';
import { replicationStatus, waitForCatchUp } from '../src/replicate/status.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
  allowLeftovers,
} from './helpers/servers.js';

allowLeftovers('the slot and publication of one test are removed by the teardown test that follows');

const TABLE = { schema: 'public', name: 'Ferry Items' };
const QTABLE = qualifiedName(TABLE.schema, TABLE.name);
const INITIAL_ROWS = 3000;

const SCHEMA = `
CREATE TABLE ${QTABLE} (id bigint PRIMARY KEY, counter integer NOT NULL DEFAULT 0, note text, big text);
ALTER TABLE ${QTABLE} ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE public.nokey (v text);`;

const FIXTURE = `${SCHEMA}
INSERT INTO ${QTABLE}
SELECT g, 0, 'n' || g, CASE WHEN g % 5 = 0 THEN repeat(md5(g::text), 100) END
FROM generate_series(1, ${INITIAL_ROWS}) g;
INSERT INTO public.nokey SELECT 'v' || g FROM generate_series(1, 10) g;`;

const CHECKSUM = `
SELECT count(*)::int AS n, count(DISTINCT id)::int AS distinct_ids,
       count(big)::int AS toasted, md5(string_agg(t::text, '|' ORDER BY id)) AS hash
FROM ${QTABLE} t`;

interface Checksum {
  n: number;
  distinct_ids: number;
  toasted: number;
  hash: string;
}

/** A bounded writer on the source: inserts, updates (mostly leaving the TOASTed column alone), deletes. */
class Writer {
  ops = 0;
  private stopRequested = false;
  private nextId = INITIAL_ROWS + 1;
  readonly done: Promise<void>;

  constructor(
    private readonly client: pg.Client,
    maxOps: number,
    maxMs: number,
  ) {
    this.done = this.run(maxOps, Date.now() + maxMs);
  }

  stop(): Promise<void> {
    this.stopRequested = true;
    return this.done;
  }

  /** Resolves once the writer has done `n` more operations (or ended). */
  async waitForOps(n: number, timeoutMs = 20_000): Promise<void> {
    const goal = this.ops + n;
    const deadline = Date.now() + timeoutMs;
    while (this.ops < goal && !this.stopRequested && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(this.ops >= goal, `the writer did ${n} operations in time`);
  }

  private randomId(): number {
    return 1 + Math.floor(Math.random() * (this.nextId - 1));
  }

  private async run(maxOps: number, deadline: number): Promise<void> {
    const c = this.client;
    while (!this.stopRequested && this.ops < maxOps && Date.now() < deadline) {
      const r = Math.random();
      if (r < 0.3) {
        const id = this.nextId++;
        await c.query(
          `INSERT INTO ${QTABLE} (id, note, big) VALUES ($1::bigint, $2::text, CASE WHEN $1::bigint % 4 = 0 THEN repeat(md5($2::text), 100) END)`,
          [id, `w${id}`],
        );
      } else if (r < 0.65) {
        // Rows with a TOASTed value; the update leaves `big` alone (sent as "unchanged TOAST").
        const id = Math.max(5, this.randomId() - (this.randomId() % 5));
        await c.query(`UPDATE ${QTABLE} SET counter = counter + 1, note = note || '+' WHERE id = $1`, [id]);
      } else if (r < 0.75) {
        await c.query(`UPDATE ${QTABLE} SET big = repeat(md5(random()::text), 90) WHERE id = $1`, [
          this.randomId(),
        ]);
      } else if (r < 0.88) {
        await c.query(`DELETE FROM ${QTABLE} WHERE id = $1`, [this.randomId()]);
      } else {
        const id = this.nextId++;
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${QTABLE} (id, note) VALUES ($1, 'tx')`, [id]);
        await c.query(`UPDATE ${QTABLE} SET counter = counter + 10 WHERE id = $1`, [this.randomId()]);
        await c.query(`DELETE FROM ${QTABLE} WHERE id = $1`, [this.randomId()]);
        await c.query('COMMIT');
      }
      this.ops++;
    }
  }
}

/** Copies the table inside the exported snapshot, as a copy worker will. */
async function copyInSnapshot(
  source: ConnectionSpec,
  target: ConnectionSpec,
  snapshot: string,
): Promise<void> {
  const src = await openClient(source, { applicationName: 'pgconvoy test copy' });
  const tgt = await openClient(target, { applicationName: 'pgconvoy test copy' });
  try {
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
    await tgt.query('BEGIN');
    await pipeline(
      src.query(copyTo(`COPY ${QTABLE} TO STDOUT`)),
      tgt.query(copyFrom(`COPY ${QTABLE} FROM STDIN`)),
    );
    await tgt.query('COMMIT');
    await src.query('COMMIT');
  } finally {
    await src.end();
    await tgt.end();
  }
}

let target: LocalServer;
before(async () => {
  target = await startServer(NEW_MAJOR);
});
after(async () => target?.destroy());

for (const sourceMajor of [SYSTEM_MAJOR, OLD_MAJOR]) {
  describe(`online replication ${sourceMajor} → ${NEW_MAJOR}`, () => {
    let source: LocalServer;
    let db: string;
    let sourceSpec: ConnectionSpec;
    let targetSpec: ConnectionSpec;
    before(async () => {
      source = await startServer(sourceMajor);
      db = await createDatabase(source, uniqueName('Repl-Src'));
      await createDatabase(target, db);
      await source.sql(FIXTURE, db);
      await target.sql(SCHEMA, db);
      sourceSpec = resolveConnection(source.url(db), 'source', {});
      targetSpec = resolveConnection(target.url(db), 'target', {});
    });
    after(async () => source?.destroy());

    test('copy inside the exported snapshot, then replay from the slot: target equals source', async () => {
      const names = replicationNames(db);
      assert.match(names.slot, /^pgconvoy_repl_src_\d+_\d+_[0-9a-f]{8}$/);
      const toasted = await source.sql<{ toast_bytes: string }>(
        `SELECT pg_relation_size(reltoastrelid) AS toast_bytes FROM pg_class WHERE oid = '${QTABLE}'::regclass`,
        db,
      );
      assert.ok(Number(toasted[0]?.toast_bytes) > 100_000, 'the big values really are stored out of line');

      const writerClient = await openClient(sourceSpec, { applicationName: 'pgconvoy test writer' });
      const src = await openClient(sourceSpec, { applicationName: 'pgconvoy test' });
      const tgt = await openClient(targetSpec, { applicationName: 'pgconvoy test' });
      const writer = new Writer(writerClient, 50_000, 90_000);
      try {
        await writer.waitForOps(50);

        const pub = await createPublication(src, names.publication, [
          TABLE,
          { schema: 'public', name: 'nokey' },
        ]);
        assert.equal(pub.created, true);
        assert.deepEqual(pub.published, [TABLE]);
        assert.deepEqual(pub.skipped, [
          {
            table: { schema: 'public', name: 'nokey' },
            reason: 'no primary key or replica identity: copied at cutover',
          },
        ]);
        const again = await createPublication(src, names.publication, [
          TABLE,
          { schema: 'public', name: 'nokey' },
        ]);
        assert.equal(again.created, false, 'a second createPublication changes nothing');
        const pubTables = await source.sql<{ tablename: string }>(
          'SELECT tablename FROM pg_publication_tables WHERE pubname = $1',
          db,
          [names.publication],
        );
        assert.deepEqual(
          pubTables.map((r) => r.tablename),
          ['Ferry Items'],
        );

        const slot = await createSlotWithSnapshot(sourceSpec, names.slot);
        let slotClosed = false;
        try {
          assert.match(slot.consistentPoint, /^[0-9A-F]+\/[0-9A-F]+$/);
          await assert.rejects(createSlotWithSnapshot(sourceSpec, names.slot), (err: unknown) => {
            assert.ok(err instanceof PgconvoyError);
            assert.equal(err.code, 'SLOT_EXISTS');
            return true;
          });
          // Changes committed after the consistent point must come from the slot, not the copy.
          await writer.waitForOps(100);
          await copyInSnapshot(sourceSpec, targetSpec, slot.snapshotName);
          await slot.close();
          slotClosed = true;
        } finally {
          if (!slotClosed) await slot.close();
        }
        const copied = (await target.sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${QTABLE}`, db))[0];
        assert.ok((copied?.n ?? 0) > INITIAL_ROWS / 2, 'the copy brought the rows of the snapshot');

        const sub = {
          name: names.subscription,
          sourceConninfo: subscriptionConninfo(sourceSpec),
          publication: names.publication,
          slotName: names.slot,
        };
        assert.deepEqual(await createSubscription(tgt, sub), { created: true });
        assert.deepEqual(await createSubscription(tgt, sub), { created: false });
        await enableSubscription(tgt, names.subscription);

        await writer.waitForOps(300);
        await writer.stop();
        assert.ok(writer.ops >= 450, `the writer did ${writer.ops} operations`);

        const lsn = (await src.query<{ lsn: string }>('SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn'))
          .rows[0]?.lsn;
        const status = await waitForCatchUp(src, tgt, names, lsn, { timeoutMs: 60_000 });
        assert.equal(status.slot?.active, true, 'the subscription streams from the slot');
        assert.equal(status.subscription?.enabled, true);
        assert.notEqual(status.subscription?.workerPid, null);
        assert.equal(
          status.subscription?.applyErrorCount,
          0,
          'no apply error (a duplicate row would be one)',
        );
        assert.ok((status.slot?.retainedWalBytes ?? -1) >= 0);

        const want = (await source.sql<Checksum>(CHECKSUM, db))[0];
        const got = (await target.sql<Checksum>(CHECKSUM, db))[0];
        assert.ok(want && got);
        assert.equal(got.n, want.n, 'same row count');
        assert.equal(got.distinct_ids, got.n, 'no duplicate on the target');
        assert.ok(want.toasted > 0);
        assert.deepEqual(got, want, 'same rows, same values (md5 over ordered rows)');

        const later = await replicationStatus(src, tgt, names);
        assert.ok((later.lagBytes ?? -1) >= 0);
        assert.match(later.errorsNote, /log/);
      } finally {
        await writer.stop();
        await writerClient.end();
        await src.end();
        await tgt.end();
      }
    });

    test('a slot that cannot become consistent times out cleanly; a publication follows its table list', async () => {
      // An open transaction holding an xid: the slot waits for it to end.
      const blocker = await openClient(sourceSpec, { applicationName: 'pgconvoy test blocker' });
      try {
        await blocker.query('BEGIN');
        await blocker.query('SELECT pg_catalog.txid_current()');
        await assert.rejects(
          createSlotWithSnapshot(sourceSpec, 'pgconvoy_timeout_probe', { timeoutMs: 1000 }),
          (err: unknown) => {
            assert.ok(err instanceof PgconvoyError);
            assert.equal(err.code, 'SLOT_TIMEOUT');
            assert.match(err.hint ?? '', /long-running or prepared transactions/);
            return true;
          },
        );
      } finally {
        await blocker.end();
      }
      const slots = await source.sql<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'pgconvoy_timeout_probe'",
      );
      assert.equal(slots[0]?.n, 0, 'the half-made slot is gone');

      const src = await openClient(sourceSpec, { applicationName: 'pgconvoy test' });
      try {
        const tables = async () =>
          (
            await src.query<{ t: string }>(
              "SELECT schemaname || '.' || tablename AS t FROM pg_catalog.pg_publication_tables WHERE pubname = 'pgconvoy_scratch' ORDER BY 1",
            )
          ).rows.map((r) => r.t);
        await createPublication(src, 'pgconvoy_scratch', []);
        assert.deepEqual(await tables(), []);
        const set = await createPublication(src, 'pgconvoy_scratch', [TABLE]);
        assert.equal(set.created, false);
        assert.deepEqual(await tables(), ['public.Ferry Items']);
        await createPublication(src, 'pgconvoy_scratch', []);
        assert.deepEqual(await tables(), []);
      } finally {
        await src.query('DROP PUBLICATION IF EXISTS pgconvoy_scratch');
        await src.end();
      }
    });

    test('teardown removes both directions on both servers; a second run removes nothing', async () => {
      const names = replicationNames(db);
      // Back-replication objects, as rollback would make them.
      await target.sql(`CREATE PUBLICATION "${names.backPublication}"`, db);
      await target.sql(`SELECT pg_create_logical_replication_slot('${names.backSlot}', 'pgoutput')`, db);
      await source.sql(
        `CREATE SUBSCRIPTION "${names.backSubscription}" CONNECTION ${quoteLiteral(subscriptionConninfo(targetSpec))}
         PUBLICATION "${names.backPublication}" WITH (connect = false)`,
        db,
      );

      const res = await runCli([
        'teardown',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--json',
      ]);
      assert.equal(res.code, 0, res.stderr);
      const removed = (JSON.parse(res.stdout) as { removed: { side: string; kind: string; name: string }[] })
        .removed;
      assert.deepEqual(
        removed.map((r) => `${r.side} ${r.kind} ${r.name}`),
        [
          `target subscription ${names.subscription}`,
          `source subscription ${names.backSubscription}`,
          `source slot ${names.slot}`,
          `target slot ${names.backSlot}`,
          `source publication ${names.publication}`,
          `target publication ${names.backPublication}`,
        ],
      );
      for (const server of [source, target]) {
        const left = await server.sql<{ slots: number; subs: number; pubs: number }>(
          `SELECT (SELECT count(*)::int FROM pg_replication_slots) AS slots,
                  (SELECT count(*)::int FROM pg_subscription) AS subs,
                  (SELECT count(*)::int FROM pg_publication) AS pubs`,
          db,
        );
        assert.deepEqual(
          left[0],
          { slots: 0, subs: 0, pubs: 0 },
          `nothing left on the ${server.major} server`,
        );
      }

      const second = await runCli(['teardown', '--source', source.url(db), '--target', target.url(db)]);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, /^nothing to remove: /);
      assert.doesNotMatch(second.stdout + second.stderr + res.stdout + res.stderr, /sandbox/, 'no password');
    });
  });
}

describe('the source password stays out of the server log', () => {
  test('CREATE SUBSCRIPTION and the reachability probe are not logged; a role that cannot stop it is warned', async () => {
    const src = await createDatabase(target, uniqueName('leak_src'));
    const dst = await createDatabase(target, uniqueName('leak_dst'));
    const secret = `Pw-${randomBytes(6).toString('hex')}`;
    const wrong = `Wrong-${randomBytes(6).toString('hex')}`;
    const user = uniqueName('leak_user');
    const conninfo = (password: string) =>
      `host=127.0.0.1 port=${target.port} dbname=${src} user=${user} password=${password}`;
    await target.sql(`CREATE ROLE ${user} LOGIN REPLICATION PASSWORD ${quoteLiteral(secret)}`);
    await target.sql(
      `CREATE TABLE public.t (id int PRIMARY KEY); CREATE PUBLICATION leak_pub FOR TABLE public.t`,
      src,
    );
    await target.sql(`CREATE TABLE public.t (id int PRIMARY KEY)`, dst);
    await target.sql(`ALTER SYSTEM SET log_statement = 'all'`);
    await target.sql('SELECT pg_catalog.pg_reload_conf()');
    const superuser = await openClient(resolveConnection(target.url(dst), 'target', {}), {
      applicationName: 'pgconvoy test',
    });
    try {
      const sub = {
        name: 'leak_sub',
        sourceConninfo: conninfo(secret),
        publication: 'leak_pub',
        slotName: 'none_yet',
      };
      assert.deepEqual(await createSubscription(superuser, sub), { created: true });
      const probe = await probeSourceFromTarget(superuser, conninfo(wrong), 10);
      assert.equal(probe.status, 'unreachable');
      assert.equal(probe.loggedBy, undefined);
      // A statement after them is logged: the server does log statements.
      await superuser.query(`COMMENT ON TABLE public.t IS 'leak-marker'`);
      const settings = await superuser.query<{ v: string }>(`SELECT current_setting('log_statement') AS v`);
      assert.equal(settings.rows[0]?.v, 'all', 'the session settings were restored');
      await superuser.query(`ALTER SUBSCRIPTION leak_sub SET (slot_name = NONE)`);
      await superuser.query(`DROP SUBSCRIPTION leak_sub`);
      const log = readFileSync(path.join(target.dir, 'server.log'), 'utf8');
      assert.match(log, /leak-marker/);
      assert.ok(!log.includes(secret), 'the password of CREATE SUBSCRIPTION is not in the log');
      assert.ok(!log.includes(wrong), 'the password of the failed probe is not in the log');

      // A role that may create subscriptions (16+) but not change logging: told, not silent.
      const plain = uniqueName('leak_plain');
      await target.sql(`CREATE ROLE ${plain} LOGIN PASSWORD 'plain' IN ROLE pg_create_subscription`);
      await target.sql(`GRANT CREATE ON DATABASE ${dst} TO ${plain}; GRANT ALL ON public.t TO ${plain}`, dst);
      const limited = await openClient(
        resolveConnection(`postgresql://${plain}:plain@127.0.0.1:${target.port}/${dst}`, 'target', {}),
        { applicationName: 'pgconvoy test' },
      );
      try {
        const made = await createSubscription(limited, { ...sub, name: 'leak_sub2' });
        assert.deepEqual(made, { created: true, loggedBy: ['log_statement = all'] });
        await limited.query(`ALTER SUBSCRIPTION leak_sub2 SET (slot_name = NONE)`);
        await limited.query(`DROP SUBSCRIPTION leak_sub2`);
      } finally {
        await limited.end();
      }
    } finally {
      await superuser.end();
      await target.sql(`ALTER SYSTEM RESET log_statement`);
      await target.sql('SELECT pg_catalog.pg_reload_conf()');
    }
  });
});
