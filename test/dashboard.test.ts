import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { renderMetrics } from '../src/observe/prom-text.js';
import { metricFamilies } from '../src/observe/metrics.js';
import { readFileSync } from 'node:fs';
import { repoRoot } from './helpers/servers.js';
import pathModule from 'node:path';
import { childArgs } from '../src/cli/many-databases.js';
import { parseHttpAddress } from '../src/cli/http-option.js';
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
import { parsePrometheusText, sampleValue } from './helpers/prom-parse.js';
import { parseLsn } from '../src/relay/lsn.js';

const USER = 'dash_owner';
const PASSWORD = 'Dash-pw-7c1e9';

/** Runs the CLI in the background; resolves the dashboard's URL once it prints it. */
function withDashboard(args: string[]): {
  url: Promise<string>;
  done: Promise<CliResult>;
  child: () => ChildProcess;
} {
  let child: ChildProcess | undefined;
  let found: (url: string) => void = () => undefined;
  const url = new Promise<string>((resolve) => (found = resolve));
  let seen = '';
  const done = runCli(args, {
    onSpawn: (c) => {
      child = c;
      c.stderr!.on('data', (d: Buffer) => {
        seen += d.toString();
        const m = /dashboard: (http:\/\/\S+)/.exec(seen);
        if (m) found(m[1]!);
      });
    },
  });
  void done.then((r) => found(`(no dashboard: exit ${r.code}: ${r.stderr})`));
  return { url, done, child: () => child! };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** An address of this machine that is not loopback, if it has one. */
function otherAddress(): string | undefined {
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(true));
  });
}

test('the exposition escapes label values and writes cumulative histograms', () => {
  const text = renderMetrics([
    {
      name: 'pgconvoy_x_total',
      help: 'a\\b\nc',
      type: 'counter',
      samples: [{ labels: { t: 'a"b\\c\nd' }, value: 3 }],
    },
    {
      name: 'pgconvoy_d_seconds',
      help: 'h',
      type: 'histogram',
      samples: [{ labels: {}, buckets: [1, 5], values: [0.5, 1, 7] }],
    },
  ]);
  assert.match(text, /# HELP pgconvoy_x_total a\\\\b\\nc\n/);
  assert.match(text, /pgconvoy_x_total\{t="a\\"b\\\\c\\nd"\} 3\n/);
  assert.match(
    text,
    /pgconvoy_d_seconds_bucket\{le="1"\} 2\npgconvoy_d_seconds_bucket\{le="5"\} 2\npgconvoy_d_seconds_bucket\{le="\+Inf"\} 3\npgconvoy_d_seconds_sum 8.5\npgconvoy_d_seconds_count 3\n/,
  );
  const parsed = parsePrometheusText(text);
  assert.equal(sampleValue(parsed, 'pgconvoy_x_total', { t: 'a"b\\c\nd' }), 3);
});

test('--http is parsed as [HOST:]PORT on loopback by default, and kept from per-database children', () => {
  assert.deepEqual(parseHttpAddress('9100'), { host: '127.0.0.1', port: 9100 });
  assert.deepEqual(parseHttpAddress('0.0.0.0:80'), { host: '0.0.0.0', port: 80 });
  assert.deepEqual(parseHttpAddress('[::1]:8432'), { host: '::1', port: 8432 });
  assert.throws(() => parseHttpAddress('host:99999'), /is not \[HOST:\]PORT/);
  assert.deepEqual(childArgs(['--http', '0', '--http-token=x', '--jobs', '2']), ['--jobs', '2']);
});

test('the Grafana dashboard queries only metrics pgconvoy writes', () => {
  const json = readFileSync(pathModule.join(repoRoot, 'grafana', 'pgconvoy-dashboard.json'), 'utf8');
  const written = new Set(metricFamilies([]).map((f) => f.name));
  const used = new Set([...json.matchAll(/pgconvoy_\w+/g)].map((m) => m[0].replace(/_bucket$/, '')));
  assert.ok(used.size > 10);
  for (const name of used) assert.ok(written.has(name), `${name} is not a pgconvoy metric`);
  for (const relay of [...written].filter((n) => n.startsWith('pgconvoy_relay_')))
    assert.ok(
      used.has(relay) || relay.endsWith('_per_second') || relay.endsWith('_position_bytes'),
      `a panel shows ${relay}`,
    );
});

describe('dashboard and /metrics (--http, serve)', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('dash_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    for (const s of [source, target])
      await s.sql(`CREATE ROLE ${USER} LOGIN SUPERUSER PASSWORD '${PASSWORD}'`);
    await createDatabase(source, template);
    await source.sql(
      `CREATE TABLE public.big (id bigint PRIMARY KEY, payload text);
       INSERT INTO public.big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 60000) g;
       CREATE TABLE public.small (id int PRIMARY KEY, v text);
       INSERT INTO public.small SELECT g, 'v' || g FROM generate_series(1, 1234) g;
       CREATE TABLE public."Mixed Case" (k text PRIMARY KEY);
       INSERT INTO public."Mixed Case" VALUES ('a'), ('b'), ('c');
       ANALYZE;`,
      template,
    );
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('clone --http serves the page and metrics on loopback while it runs; serve reports the ledger after', async () => {
    const db = await createDatabase(source, uniqueName('dash'), template);
    const conn = ['--source', source.url(db, USER, PASSWORD), '--target', target.url(db, USER, PASSWORD)];
    const run = withDashboard([
      'clone',
      ...conn,
      '--create-database',
      '--run-dir',
      tempDir('pgconvoy-run-'),
      '--split-tables-larger-than',
      '1MB',
      '--chunk-size',
      '1MB',
      '--http',
      '0',
    ]);
    const url = await run.url;
    const base = new URL(url);
    assert.equal(base.hostname, '127.0.0.1', url);
    const port = Number(base.port);
    const during = await Promise.all([
      get(url),
      get(`${base.origin}/api/status`),
      get(`${base.origin}/metrics`),
    ]);
    const other = otherAddress();
    if (other) assert.ok(await refused(other, port), `nothing listens on ${other}:${port}`);
    const clone = await run.done;
    assert.equal(clone.code, 0, clone.stderr);
    const [page, status, metrics] = during;
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    assert.doesNotMatch(page.text, /<script[^>]+src=|<link[^>]+href=/, 'no external asset');
    assert.equal(status.status, 200);
    const doc = JSON.parse(status.text) as { command: string; databases: { target: string }[] };
    assert.equal(doc.command, 'clone');
    assert.equal(doc.databases[0]!.target, `${USER}@127.0.0.1:${target.port}/${db}`);
    parsePrometheusText(metrics.text);
    const late = withDashboard([
      'serve',
      '--target',
      target.url(db, USER, PASSWORD),
      '--http',
      '127.0.0.1:0',
    ]);
    try {
      const serveUrl = new URL(await late.url);
      const after = await Promise.all([
        get(serveUrl.href),
        get(`${serveUrl.origin}/api/status`),
        get(`${serveUrl.origin}/metrics`),
      ]);
      for (const r of [...during, ...after])
        assert.ok(!r.text.includes(PASSWORD), 'no password in a response');
      const families = parsePrometheusText(after[2].text);
      const counts = await target.sql<{ t: string; n: string }>(
        `SELECT 'big' AS t, count(*) AS n FROM public.big UNION ALL SELECT 'small', count(*) FROM public.small
         UNION ALL SELECT 'Mixed Case', count(*) FROM public."Mixed Case"`,
        db,
      );
      for (const c of counts) {
        const labels = { database: db, schema: 'public', table: c.t };
        assert.equal(sampleValue(families, 'pgconvoy_copied_rows_total', labels), Number(c.n), c.t);
      }
      const ledger = await target.sql<{ jobs: string; bytes: string }>(
        `SELECT count(*) AS jobs, sum(bytes) AS bytes FROM pgconvoy.jobs WHERE state = 'done'`,
        db,
      );
      assert.ok(Number(ledger[0]!.jobs) > 3, 'big was cut into chunks');
      assert.equal(sampleValue(families, 'pgconvoy_jobs', { state: 'done' }), Number(ledger[0]!.jobs));
      assert.equal(sampleValue(families, 'pgconvoy_jobs', { state: 'failed' }), 0);
      assert.equal(sampleValue(families, 'pgconvoy_chunk_duration_seconds_count'), Number(ledger[0]!.jobs));
      const bytes = [...families.get('pgconvoy_copied_bytes_total')!.samples].reduce(
        (n, s) => n + s.value,
        0,
      );
      assert.equal(bytes, Number(ledger[0]!.bytes));
      assert.equal(sampleValue(families, 'pgconvoy_index_builds_total'), 3);
      assert.equal(sampleValue(families, 'pgconvoy_tables', { state: 'done' }), 3);
      assert.equal(sampleValue(families, 'pgconvoy_ledger_up'), 1);
      const view = JSON.parse(after[1].text) as {
        databases: { snapshot: { phase: string; tables: { display: string; state: string }[] } }[];
      };
      assert.equal(view.databases[0]!.snapshot.phase, 'done');
      assert.deepEqual(view.databases[0]!.snapshot.tables.map((t) => `${t.display} ${t.state}`).sort(), [
        'public."Mixed Case" done',
        'public.big done',
        'public.small done',
      ]);
      // A request that names another host (DNS rebinding) is refused on a tokenless bind;
      // fetch() will not send another Host, so ask as a browser led there would.
      const rebound = await new Promise<number | undefined>((resolve, reject) =>
        http
          .get(
            {
              host: '127.0.0.1',
              port: serveUrl.port,
              path: '/api/status',
              headers: { host: 'attacker.example' },
            },
            (res) => {
              res.resume();
              resolve(res.statusCode);
            },
          )
          .on('error', reject),
      );
      assert.equal(rebound, 403);
    } finally {
      late.child().kill('SIGTERM');
    }
    assert.equal((await late.done).code, 0);
  });

  test('a relay with --http (start --via relay, replicate) and serve: its metrics equal the ledger', async () => {
    const db = await createDatabase(source, uniqueName('dash_relay'));
    await createDatabase(target, db);
    await source.sql(
      `CREATE TABLE public.r (id int PRIMARY KEY, v text);
       INSERT INTO public.r SELECT g, 'v' || g FROM generate_series(1, 100) g;`,
      db,
    );
    const conn = ['--source', source.url(db), '--target', target.url(db)];
    type RelayRow = { lsn: string; changes: string; transactions: string; pid: number | null };
    const ledger = async (): Promise<RelayRow | undefined> => {
      const rows = await target
        .sql<RelayRow>(
          'SELECT applied_lsn AS lsn, changes, transactions, pid FROM pgconvoy.relay_progress',
          db,
        )
        .catch(() => []); // not there before start's copy ends
      return rows[0];
    };
    const until = async (what: string, check: () => Promise<boolean>) => {
      const deadline = Date.now() + 60_000;
      while (!(await check())) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const metricsOf = async (url: string) =>
      parsePrometheusText((await get(`${new URL(url).origin}/metrics`)).text);
    const relay = (families: ReturnType<typeof parsePrometheusText>, name: string) =>
      sampleValue(families, `pgconvoy_relay_${name}`, { database: db });

    // start --via relay: the copy, then the relay in the foreground, with the dashboard on throughout.
    const start = withDashboard([
      'start',
      ...conn,
      '--via',
      'relay',
      '--run-dir',
      tempDir('pgconvoy-run-'),
      '--http',
      '0',
    ]);
    const startUrl = await start.url;
    await until('the relay to run', async () => (await ledger())?.pid != null);
    await source.sql(
      `INSERT INTO public.r SELECT g, 'w' || g FROM generate_series(101, 300) g;
       UPDATE public.r SET v = v || '!' WHERE id <= 50;`,
      db,
    );
    await until('the ledger to count 250 changes', async () => Number((await ledger())?.changes) === 250);
    await until(
      '/metrics to count them',
      async () => relay(await metricsOf(startUrl), 'changes_applied_total') === 250,
    );
    const during = await metricsOf(startUrl);
    assert.equal(relay(during, 'transactions_applied_total'), Number((await ledger())!.transactions));
    assert.ok(relay(during, 'lag_bytes')! >= 0 && relay(during, 'lag_seconds')! >= 0);
    assert.ok(relay(during, 'apply_rate_changes_per_second')! >= 0);
    assert.equal(relay(during, 'running'), 1);
    const status = JSON.parse((await get(`${new URL(startUrl).origin}/api/status`)).text) as {
      databases: { snapshot: { relay: { changes: number } }; history: { lagBytes?: number }[] }[];
    };
    assert.equal(status.databases[0]!.snapshot.relay.changes, 250);
    assert.ok(
      status.databases[0]!.history.some((p) => p.lagBytes !== undefined),
      'the lag chart has relay lag',
    );
    start.child().kill('SIGTERM');
    assert.equal((await start.done).code, 0);

    // The relay stopped: the ledger stands still, and serve (the ledger alone) reports exactly it.
    const stopped = (await ledger())!;
    const served = withDashboard(['serve', '--target', target.url(db), '--http', '0']);
    try {
      const families = await metricsOf(await served.url);
      assert.equal(relay(families, 'changes_applied_total'), Number(stopped.changes));
      assert.equal(relay(families, 'transactions_applied_total'), Number(stopped.transactions));
      assert.equal(relay(families, 'applied_position_bytes'), Number(parseLsn(stopped.lsn)));
      assert.equal(relay(families, 'running'), undefined, 'unknown without the source');
    } finally {
      served.child().kill('SIGTERM');
    }
    assert.equal((await served.done).code, 0);

    // replicate --http resumes: the counters go on from the ledger's.
    const again = withDashboard(['replicate', ...conn, '--http', '0']);
    const againUrl = await again.url;
    await until('the relay to run again', async () => relay(await metricsOf(againUrl), 'running') === 1);
    await source.sql("UPDATE public.r SET v = 'again' WHERE id <= 10", db);
    await until(
      'replicate --http to count 260 changes',
      async () => relay(await metricsOf(againUrl), 'changes_applied_total') === 260,
    );
    again.child().kill('SIGTERM');
    assert.equal((await again.done).code, 0);
    assert.equal(Number((await ledger())!.changes), 260);
    const teardown = await runCli(['teardown', ...conn, '--run-dir', tempDir('pgconvoy-run-')]);
    assert.equal(teardown.code, 0, teardown.stderr);
  });

  test('serve off loopback needs its token (401 without); a failed job shows its error, hint and next step', async () => {
    const db = await createDatabase(source, uniqueName('dash_fail'), template);
    // The target refuses the rows of one table: its job fails for good (not a transient error).
    await createDatabase(target, db);
    await target.sql(
      `CREATE TABLE public.big (id bigint PRIMARY KEY, payload text);
       CREATE TABLE public.small (id int PRIMARY KEY, v text CHECK (v <> 'v7'));
       CREATE TABLE public."Mixed Case" (k text PRIMARY KEY);`,
      db,
    );
    const conn = ['--source', source.url(db, USER, PASSWORD), '--target', target.url(db, USER, PASSWORD)];
    const clone = await runCli(['clone', ...conn, '--schema', 'skip', '--run-dir', tempDir('pgconvoy-run-')]);
    assert.equal(clone.code, 1, clone.stderr);
    const status = await runCli(['status', '--target', target.url(db, USER, PASSWORD)]);
    const cliNext = /next: (.*)/.exec(status.stdout)?.[1];
    assert.ok(cliNext, status.stdout);

    const served = withDashboard([
      'serve',
      '--target',
      target.url(db, USER, PASSWORD),
      '--http',
      '0.0.0.0:0',
    ]);
    try {
      const url = new URL(await served.url);
      const token = url.searchParams.get('token');
      assert.ok(token && token.length >= 20, `a token is generated and printed: ${url.href}`);
      const at = `http://127.0.0.1:${url.port}`;
      assert.equal((await get(`${at}/metrics`)).status, 401);
      assert.equal((await get(`${at}/api/status?token=wrong`)).status, 401);
      assert.equal((await get(`${at}/metrics`, { authorization: `Bearer ${token}` })).status, 200);
      const doc = await get(`${at}/api/status?token=${encodeURIComponent(token)}`);
      assert.equal(doc.status, 200);
      assert.ok(!doc.text.includes(PASSWORD));
      const view = JSON.parse(doc.text) as {
        databases: {
          snapshot: { phase: string; next: string; failed: { table: string; error: string }[] };
        }[];
      };
      const s = view.databases[0]!.snapshot;
      assert.equal(s.phase, 'stopped with failures');
      assert.equal(s.next, cliNext, 'the same next step as `pgconvoy status`');
      assert.equal(s.failed.length, 1);
      assert.equal(s.failed[0]!.table, 'public.small');
      assert.match(s.failed[0]!.error, /check constraint/);
      const metrics = parsePrometheusText(
        (await get(`${at}/metrics`, { authorization: `Bearer ${token}` })).text,
      );
      assert.equal(sampleValue(metrics, 'pgconvoy_failed_jobs'), 1);
      assert.equal(sampleValue(metrics, 'pgconvoy_tables', { state: 'failed' }), 1);
    } finally {
      served.child().kill('SIGTERM');
    }
    assert.equal((await served.done).code, 0);
  });
});
