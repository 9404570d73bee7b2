/**
 * Schema changes during an online migration (15 → 17), against real servers and the CLI:
 * DDL on the source after start is named by status (with the statement that aligns the
 * target, the apply error read from the target's log, and no advice to tear down the slot
 * the stopped subscriber left inactive); cutover accepts a target that made the same change;
 * sync-schema applies additive changes under a live writer (a column new rows use, a table
 * that gets rows before and after, an index), after which the target equals the source; a
 * dropped and a renamed column are listed, never applied, and cutover says what is left.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { assertSameData } from './helpers/compare.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
} from './helpers/servers.js';

const FIXTURE = `
CREATE SCHEMA app;
CREATE TABLE app.customers (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES app.customers, qty int NOT NULL, memo text);
INSERT INTO app.customers (name) SELECT 'c' || g FROM generate_series(1, 200) g;
INSERT INTO app.orders (customer_id, qty, memo) SELECT g, g % 5, 'm' || g FROM generate_series(1, 200) g;`;

let source: LocalServer;
let target: LocalServer;
before(async () => {
  [source, target] = await Promise.all([
    startServer(SYSTEM_MAJOR),
    // Logs in files, so that pgconvoy can read the apply worker's error from them.
    startServer(NEW_MAJOR, { settings: { logging_collector: 'on' } }),
  ]);
});
after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

/** A database on both sides, the fixture on the source, and an online migration started. */
async function started(prefix: string): Promise<{ db: string; args: string[] }> {
  const db = await createDatabase(source, uniqueName(prefix));
  await createDatabase(target, db);
  await source.sql(FIXTURE, db);
  const args = ['--source', source.url(db), '--target', target.url(db)];
  const run = await runCli(['start', ...args, '--jobs', '2', '--run-dir', tempDir()]);
  assert.equal(run.code, 0, run.stderr);
  return { db, args };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const applyErrors = async (db: string) =>
  (
    await target.sql<{ n: string }>(
      'SELECT coalesce(sum(apply_error_count), 0)::text AS n FROM pg_stat_subscription_stats',
      db,
    )
  )[0]?.n ?? '0';

interface StatusJson {
  online: {
    drift: { kind: string; object: string; change: string; statements: string[]; action: string }[];
    applyError?: { message: string };
    warnings: string[];
  };
}

describe(`schema drift during an online migration ${SYSTEM_MAJOR} → ${NEW_MAJOR}`, () => {
  test('a column added on the source: status names it and its statement; made on the target too, it passes; a drop and a rename are listed, not applied, and cutover says what is left', async () => {
    const { db, args } = await started('Drift-Col');
    await source.sql(
      "ALTER TABLE app.customers ADD COLUMN loyalty int DEFAULT 7; INSERT INTO app.customers (name, loyalty) VALUES ('new', 9)",
      db,
    );
    await until('the apply worker fails', async () => (await applyErrors(db)) !== '0');

    // The target restarts the failing worker every wal_retrieve_retry_interval (5 s): look
    // while it is down, as an operator who finds it stopped does.
    let online: StatusJson['online'] | undefined;
    for (let i = 0; i < 15; i++) {
      const status = await runCli(['status', ...args.slice(2), '--source', source.url(db), '--json']);
      assert.equal(status.code, 0, status.stderr);
      online = (JSON.parse(status.stdout) as StatusJson).online;
      const w = online.warnings.join('\n');
      if (/apply worker is not running/.test(w) && /inactive pgconvoy slot/.test(w)) break;
    }
    assert.ok(online);
    assert.deepEqual(
      online.drift.map((d) => [d.kind, d.object, d.change, d.statements, d.action]),
      [
        [
          'column',
          'app.customers.loyalty',
          'missing on target (integer DEFAULT 7)',
          ['ALTER TABLE "app"."customers" ADD COLUMN "loyalty" integer DEFAULT 7'],
          'apply',
        ],
      ],
    );
    assert.match(
      online.applyError?.message ?? '',
      /is missing replicated column: "loyalty"/,
      'the error from the target log',
    );
    const warnings = online.warnings.join('\n');
    assert.match(
      warnings,
      /apply worker is not running: most likely because of the schema drift listed above \(column app\.customers\.loyalty/,
    );
    assert.match(
      warnings,
      /inactive pgconvoy slot "pgconvoy_drift_col_\w+" on the source keeps .* of WAL \(this migration's slot, inactive because its subscription's apply worker is not running \(see above\); it keeps every change the target still needs: do not tear it down\)/,
    );
    assert.doesNotMatch(warnings, /teardown/, 'the stopped subscriber’s slot is not a leftover');
    const text = await runCli(['status', ...args.slice(2), '--source', source.url(db)]);
    assert.match(
      text.stdout,
      /column app\.customers\.loyalty missing on target \(integer DEFAULT 7\) \[pgconvoy sync-schema applies it\]/,
    );
    assert.match(text.stdout, /ALTER TABLE "app"."customers" ADD COLUMN "loyalty" integer DEFAULT 7;/);
    assert.match(
      text.stdout,
      /source schema changes since start \(history\): column app\.customers\.loyalty added \(integer\)/,
    );

    const refused = await runCli(['cutover', ...args]);
    assert.equal(refused.code, 7, refused.stderr);
    assert.match(refused.stderr, /column app\.customers\.loyalty missing on target/);

    // The operator's ALTER on the target; then a drop and a rename on the source.
    await target.sql('ALTER TABLE app.customers ADD COLUMN loyalty int DEFAULT 7', db);
    await source.sql(
      'ALTER TABLE app.orders DROP COLUMN memo; ALTER TABLE app.orders RENAME COLUMN qty TO quantity',
      db,
    );
    const sync = await runCli(['sync-schema', ...args]);
    assert.equal(sync.code, 0, sync.stderr);
    assert.match(sync.stdout, /left to you \(not applied: destructive or ambiguous\):/);
    assert.match(sync.stdout, /ALTER TABLE "app"\."orders" DROP COLUMN "memo";/);
    assert.match(sync.stdout, /ALTER TABLE app\.orders RENAME COLUMN qty TO quantity;/);
    assert.doesNotMatch(sync.stdout, /applied, in one transaction/);
    const cols = await target.sql<{ c: string }>(
      "SELECT string_agg(attname, ',' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = 'app.orders'::regclass AND attnum > 0 AND NOT attisdropped",
      db,
    );
    assert.equal(cols[0]?.c, 'id,customer_id,qty,memo', 'nothing applied on the target');

    const left = await runCli(['cutover', ...args]);
    assert.equal(left.code, 7, left.stderr);
    assert.match(
      left.stderr,
      /left to you \(2\): app\.orders\.memo: .*DROP COLUMN "memo" \| app\.orders\.quantity: .*RENAME COLUMN qty TO quantity/,
    );
    assert.doesNotMatch(left.stderr, /loyalty/, 'the column made on both sides is no longer a difference');

    await target.sql(
      'ALTER TABLE app.orders DROP COLUMN memo; ALTER TABLE app.orders RENAME COLUMN qty TO quantity',
      db,
    );
    await source.sql('UPDATE app.orders SET quantity = quantity + 1 WHERE id <= 10', db);
    const cutover = await runCli(['cutover', ...args, '--json']);
    assert.equal(cutover.code, 0, cutover.stderr);
    assert.equal(
      (JSON.parse(cutover.stdout) as { verify: { ok: boolean } }).verify.ok,
      true,
      'verify passes',
    );
    const rows = await target.sql<{ name: string; loyalty: number }>(
      "SELECT name, loyalty FROM app.customers WHERE name IN ('c1', 'new') ORDER BY name",
      db,
    );
    assert.deepEqual(rows, [
      { name: 'c1', loyalty: 7 },
      { name: 'new', loyalty: 9 },
    ]);
    await assertSameData(source, db, target, db);
  });

  test('sync-schema under a live writer: a new column, a new table with rows before and after, a new index', async () => {
    const { db, args } = await started('Drift-Sync');
    const app: pg.Client = await openClient(resolveConnection(source.url(db), 'source', {}));
    const mode = { note: false, events: false, stop: false };
    let written = 0;
    const writer = (async () => {
      for (let i = 1; !mode.stop; i++) {
        if (mode.note)
          await app.query("INSERT INTO app.customers (name, note) VALUES ($1, 'n' || $1)", [`w${i}`]);
        else await app.query('INSERT INTO app.customers (name) VALUES ($1)', [`w${i}`]);
        if (mode.events) await app.query('INSERT INTO app.events (what) VALUES ($1)', [`e${i}`]);
        if (i % 7 === 0)
          await app.query('UPDATE app.orders SET qty = qty + 1 WHERE id = $1', [1 + (i % 200)]);
        written++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      const after = async (n: number) => {
        const goal = written + n;
        await until(`${n} more writes`, () => Promise.resolve(written >= goal));
      };
      await after(20);
      await source.sql("ALTER TABLE app.customers ADD COLUMN note text DEFAULT 'none'", db);
      mode.note = true;
      await source.sql(
        'CREATE TABLE app.events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, what text NOT NULL, at timestamptz NOT NULL DEFAULT now())',
        db,
      );
      mode.events = true;
      await source.sql('CREATE INDEX customers_name_idx ON app.customers (name)', db);
      await after(30);

      const dry = await runCli(['sync-schema', ...args, '--dry-run']);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would apply, in one transaction on the target:/);
      assert.match(
        dry.stdout,
        /CREATE TABLE "app"\."events" \("id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL, "what" text NOT NULL, "at" timestamp with time zone DEFAULT now\(\) NOT NULL\);/,
      );
      assert.match(dry.stdout, /ALTER TABLE "app"\."customers" ADD COLUMN "note" text DEFAULT 'none'::text;/);
      assert.match(
        dry.stdout,
        /would build, outside the transaction:\n {2}CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_name_idx ON app\.customers USING btree \(name\);/,
      );
      const untouched = await target.sql<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'app.customers'::regclass AND attname = 'note'",
        db,
      );
      assert.equal(untouched[0]?.n, 0, '--dry-run changes nothing');

      const sync = await runCli(['sync-schema', ...args]);
      assert.equal(sync.code, 0, sync.stderr);
      assert.match(sync.stdout, /published app\.events: the subscription copies its rows/);
      await after(30); // rows for the new table after sync-schema too
      const again = await runCli(['sync-schema', ...args]);
      assert.match(again.stdout, /schemas agree: nothing to do/);
    } finally {
      mode.stop = true;
      await writer;
      await app.end();
    }
    const cutover = await runCli(['cutover', ...args, '--json']);
    assert.equal(cutover.code, 0, cutover.stderr);
    const r = JSON.parse(cutover.stdout) as { verify: { ok: boolean }; copiedTables: unknown[] };
    assert.equal(r.verify.ok, true);
    assert.deepEqual(r.copiedTables, [], 'the new table came through replication, not a copy at cutover');
    await assertSameData(source, db, target, db);
    const idx = await target.sql<{ valid: boolean }>(
      "SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'app.customers_name_idx'::regclass",
      db,
    );
    assert.deepEqual(idx, [{ valid: true }]);
  });
});
