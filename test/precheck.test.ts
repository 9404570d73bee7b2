/**
 * `pgconvoy precheck` against real servers: a source without wal_level = logical, a good
 * pair (with the things that only warn), a source role without REPLICATION, a target without
 * the source's extensions, a target role that may not subscribe, and a target that cannot
 * reach the source. The reachability test must leave nothing behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { SANDBOX_PASSWORD } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
} from './helpers/servers.js';

const FIXTURE = `
CREATE TABLE public.orders (id bigint PRIMARY KEY, note text);
INSERT INTO public.orders SELECT g, 'n' FROM generate_series(1, 100) g;
CREATE TABLE public.nokey (v text);
CREATE TABLE public."Order Items" (item_no integer NOT NULL, note text);
CREATE UNIQUE INDEX order_items_no ON public."Order Items" (item_no);
ALTER TABLE public."Order Items" REPLICA IDENTITY USING INDEX order_items_no;
CREATE TABLE public.measurements (d date PRIMARY KEY, v integer) PARTITION BY RANGE (d);
CREATE TABLE public.measurements_2024 PARTITION OF public.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE UNLOGGED TABLE public.scratch (id integer PRIMARY KEY);
CREATE SEQUENCE public.standalone;
SELECT lo_from_bytea(0, '\\x01');
`;

interface Row {
  id: string;
  side: string;
  status: 'pass' | 'warn' | 'fail' | 'info';
  check: string;
  detail: string;
  hint?: string;
  items?: string[];
}
interface Report {
  ok: boolean;
  rows: Row[];
  counts: Record<string, number>;
}

function parse(stdout: string): Report {
  return JSON.parse(stdout) as Report;
}

function rowOf(report: Report, id: string): Row {
  const found = report.rows.find((r) => r.id === id);
  assert.ok(found, `row ${id} is in the report: ${report.rows.map((r) => r.id).join(', ')}`);
  return found;
}

const failed = (report: Report) => report.rows.filter((r) => r.status === 'fail').map((r) => r.id);

let source: LocalServer;
let target: LocalServer;
let db: string;
before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  db = await createDatabase(source, uniqueName('precheck'));
  await createDatabase(target, db);
  await source.sql(FIXTURE, db);
});
after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

describe('precheck', () => {
  test('wal_level = replica on the source: fails with the hint to set logical, exit 7', async () => {
    const replica = await startServer(SYSTEM_MAJOR, { settings: { wal_level: 'replica' } });
    try {
      const json = await runCli([
        'precheck',
        '--source',
        replica.url(),
        '--target',
        target.url(db),
        '--json',
      ]);
      assert.equal(json.code, 7, json.stderr);
      const report = parse(json.stdout);
      assert.equal(report.ok, false);
      const wal = rowOf(report, 'source.wal_level');
      assert.equal(wal.status, 'fail');
      assert.equal(wal.detail, 'replica: logical replication needs wal_level = logical');
      assert.match(wal.hint ?? '', /ALTER SYSTEM SET wal_level = logical; on the source and restart it/);
      assert.match(wal.hint ?? '', /rds\.logical_replication = 1/);
      assert.deepEqual(failed(report), ['source.wal_level']);

      const human = await runCli(['precheck', '--source', replica.url(), '--target', target.url(db)]);
      assert.equal(human.code, 7);
      assert.match(
        human.stdout,
        /^FAIL +source +wal_level +replica: logical replication needs wal_level = logical$/m,
      );
      assert.match(human.stdout, /^ +hint: run ALTER SYSTEM SET wal_level = logical/m);
      assert.match(human.stdout, /^1 failed, .*: online migration is blocked until the failures are fixed$/m);
      assert.doesNotMatch(human.stdout + human.stderr + json.stdout, new RegExp(SANDBOX_PASSWORD));
    } finally {
      await replica.destroy();
    }
  });

  test('a good pair passes (exit 0); what replication cannot carry is listed with its hint', async () => {
    // An idle transaction older than the threshold, and a forgotten pgconvoy slot.
    // (The slot first: creating one waits for transactions that hold an xid.)
    await source.sql("SELECT pg_create_logical_replication_slot('pgconvoy_forgotten', 'pgoutput')", db);
    const idle = new pg.Client(source.clientConfig(db));
    await idle.connect();
    await idle.query('BEGIN');
    await idle.query('SELECT txid_current()');
    try {
      await new Promise((r) => setTimeout(r, 1100));
      const res = await runCli([
        'precheck',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--long-transactions',
        '1',
        '--json',
      ]);
      assert.equal(res.code, 0, res.stdout + res.stderr);
      const report = parse(res.stdout);
      assert.equal(report.ok, true);
      assert.deepEqual(failed(report), []);
      for (const id of [
        'source.version',
        'source.wal_level',
        'source.max_replication_slots',
        'source.max_wal_senders',
        'source.role',
        'source.publication_rights',
        'target.max_logical_replication_workers',
        'target.max_worker_processes',
        'target.role',
        'target.reaches_source',
      ]) {
        assert.equal(rowOf(report, id).status, 'pass', id);
      }
      assert.match(
        rowOf(report, 'source.max_replication_slots').detail,
        /^20 configured, 1 in use, 19 free; pgconvoy needs 1$/,
      );
      const noKey = rowOf(report, 'source.replica_identity');
      assert.equal(noKey.status, 'warn');
      assert.deepEqual(noKey.items, ['public.nokey'], 'identity index and partition with a key are fine');
      assert.match(noKey.hint ?? '', /copied at cutover/);
      assert.match(noKey.hint ?? '', /makes the SOURCE application's UPDATE and DELETE on it fail/);
      assert.deepEqual(rowOf(report, 'source.unlogged').items, ['public.scratch']);
      assert.equal(rowOf(report, 'source.sequences').status, 'info');
      assert.match(rowOf(report, 'source.sequences').detail, /^1 sequence\(s\): not replicated/);
      assert.equal(rowOf(report, 'source.large_objects').status, 'warn');
      const long = rowOf(report, 'source.long_transactions');
      assert.equal(long.status, 'warn');
      assert.equal(long.items?.length, 1);
      assert.match(long.items?.[0] ?? '', new RegExp(`^pid \\d+ postgres@${db} "" idle in transaction for`));
      const slots = rowOf(report, 'source.leftover_slots');
      assert.equal(slots.status, 'warn');
      assert.match(
        slots.items?.[0] ?? '',
        /^pgconvoy_forgotten \(database precheck_\d+_\d+, inactive, holds/,
      );
      assert.match(slots.hint ?? '', /pgconvoy teardown/);
      assert.equal(rowOf(report, 'target.extensions').status, 'pass');

      const human = await runCli(['precheck', '--source', source.url(db), '--target', target.url(db)]);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^WARN +source +primary keys +1 table\(s\) without a primary key/m);
      assert.match(human.stdout, /^ +- public\.nokey$/m);
      assert.match(
        human.stdout,
        /^pass +target +target reaches source +the target server opened a replication connection/m,
      );
      assert.match(human.stdout, /^0 failed, .*online migration can start/m);
    } finally {
      await idle.end();
      await source.sql("SELECT pg_drop_replication_slot('pgconvoy_forgotten')", db);
    }
    const subs = await target.sql<{ n: number }>('SELECT count(*)::int AS n FROM pg_subscription');
    assert.equal(subs[0]?.n, 0, 'the reachability test left no subscription behind');
    const origins = await target.sql<{ n: number }>('SELECT count(*)::int AS n FROM pg_replication_origin');
    assert.equal(origins[0]?.n, 0, 'nor a replication origin');
  });

  test('a source role without REPLICATION: a failing row for the right, exit 7', async () => {
    await source.sql(
      `CREATE ROLE plain_app LOGIN PASSWORD 'plainpw'; GRANT CONNECT ON DATABASE "${db}" TO plain_app`,
    );
    const res = await runCli([
      'precheck',
      '--source',
      source.url(db, 'plain_app', 'plainpw'),
      '--target',
      target.url(db),
      '--json',
    ]);
    assert.equal(res.code, 7, res.stderr);
    const report = parse(res.stdout);
    const role = rowOf(report, 'source.role');
    assert.equal(role.status, 'fail');
    assert.match(role.detail, /role "plain_app" is neither superuser nor has REPLICATION/);
    assert.match(role.hint ?? '', /ALTER ROLE "plain_app" WITH REPLICATION/);
    assert.equal(rowOf(report, 'source.publication_rights').status, 'fail');
    const reach = rowOf(report, 'target.reaches_source');
    assert.equal(reach.status, 'fail', 'the walsender refuses the role');
    assert.match(reach.detail, /replication/);
    assert.doesNotMatch(res.stdout + res.stderr, /plainpw/);
  });

  test('extensions missing on the target: not available fails, available but not installed warns', async () => {
    const extDb = await createDatabase(source, uniqueName('ext'));
    await createDatabase(target, extDb);
    await source.sql('CREATE EXTENSION adminpack; CREATE EXTENSION pg_trgm', extDb);
    const res = await runCli([
      'precheck',
      '--source',
      source.url(extDb),
      '--target',
      target.url(extDb),
      '--json',
    ]);
    assert.equal(res.code, 7, res.stderr);
    const report = parse(res.stdout);
    const missing = rowOf(report, 'target.extensions_missing');
    assert.equal(missing.status, 'fail');
    assert.deepEqual(missing.items, ['adminpack 2.1']);
    const notInstalled = rowOf(report, 'target.extensions_not_installed');
    assert.equal(notInstalled.status, 'warn');
    assert.match(notInstalled.items?.[0] ?? '', /^pg_trgm 1\.6 \(target default 1\.6\)$/);
    assert.deepEqual(failed(report), ['target.extensions_missing']);
  });

  test('a target role that may not create subscriptions: fails, and the path is reported as not tested', async () => {
    await target.sql(
      `CREATE ROLE tgt_plain LOGIN PASSWORD 'tgtpw'; GRANT CONNECT ON DATABASE "${db}" TO tgt_plain`,
    );
    const res = await runCli([
      'precheck',
      '--source',
      source.url(db),
      '--target',
      target.url(db, 'tgt_plain', 'tgtpw'),
      '--json',
    ]);
    assert.equal(res.code, 7, res.stderr);
    const report = parse(res.stdout);
    const role = rowOf(report, 'target.role');
    assert.equal(role.status, 'fail');
    assert.match(role.detail, /^role "tgt_plain" may not create subscriptions: /);
    assert.match(role.hint ?? '', /GRANT pg_create_subscription TO "tgt_plain"/);
    const reach = rowOf(report, 'target.reaches_source');
    assert.equal(reach.status, 'warn');
    assert.equal(reach.detail, 'not tested: the target role may not create subscriptions');
  });

  test('the target server cannot reach the source: a failing row, and nothing left behind', async () => {
    const res = await runCli([
      'precheck',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--source-from-target',
      `host=127.0.0.1 port=1 dbname=${db} user=postgres connect_timeout=5`,
      '--json',
    ]);
    assert.equal(res.code, 7, res.stderr);
    const report = parse(res.stdout);
    const reach = rowOf(report, 'target.reaches_source');
    assert.equal(reach.status, 'fail');
    assert.match(reach.detail, /could not connect to the publisher: .*Connection refused/);
    assert.match(reach.hint ?? '', /FROM THE TARGET SERVER/);
    assert.deepEqual(failed(report), ['target.reaches_source']);
    assert.doesNotMatch(res.stdout + res.stderr, new RegExp(SANDBOX_PASSWORD));
    const subs = await target.sql<{ n: number }>('SELECT count(*)::int AS n FROM pg_subscription');
    assert.equal(subs[0]?.n, 0);
  });
});
