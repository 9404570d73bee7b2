/**
 * Many small tables: the copy loads several in one target transaction (copy-worker.ts) and
 * verify checks several with one query per side (verify/table-batches.ts). Both must stay
 * exact: a group is copied exactly once across a kill, and one changed row in one of many
 * small tables is found and named.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { SYSTEM_MAJOR, createDatabase, runCli, startServer, tempDir, uniqueName } from './helpers/servers.js';
import { assertSameData } from './helpers/compare.js';
import { sleep } from '../src/util/wait.js';
import type { VerifyReport } from '../src/verify/index.js';

const TABLES = 40;
const name = (i: number) => `t${String(i).padStart(2, '0')}`;

/** 40 tables without a primary key (a row loaded twice would stay), 30 rows each, one of them twice. */
function tablesSql(withRows: boolean): string {
  const out = ['CREATE SCHEMA tenant;'];
  for (let i = 1; i <= TABLES; i++) {
    out.push(`CREATE TABLE tenant.${name(i)} (id integer NOT NULL, note text);`);
    if (withRows)
      out.push(
        `INSERT INTO tenant.${name(i)} SELECT g % 30, 'row ' || g FROM generate_series(1, 30) g;`,
        `INSERT INTO tenant.${name(i)} VALUES (1, 'row 1');`,
      );
  }
  return out.join('\n');
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const found = await probe();
    if (found !== undefined) return found;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('many small tables', () => {
  let server: LocalServer;
  before(async () => {
    server = await startServer(SYSTEM_MAJOR);
  });
  after(async () => server?.destroy());

  test('a group of small tables is copied exactly once across a SIGKILL in its middle', async () => {
    const sdb = await createDatabase(server, uniqueName('small_src'));
    const tdb = await createDatabase(server, uniqueName('small_dst'));
    await server.sql(tablesSql(true), sdb);
    await server.sql(tablesSql(false), tdb);
    const args = [
      'clone',
      '--source',
      server.url(sdb),
      '--target',
      server.url(tdb),
      '--schema',
      'skip',
      '--jobs',
      '1',
      '--run-dir',
      tempDir('pgconvoy-run-'),
    ];
    // Jobs of equal size go in name order: the group truncates its 40 tables in one statement,
    // loads t01…t19 in its open transaction, then waits in t20's COPY: each row's CHECK takes
    // an advisory lock this session holds (a CHECK is evaluated even with triggers off).
    await server.sql(
      `CREATE FUNCTION tenant.wait_for_test() RETURNS boolean LANGUAGE sql AS 'SELECT pg_advisory_lock_shared(4242) IS NOT NULL';
       ALTER TABLE tenant.t20 ADD CONSTRAINT waits CHECK (tenant.wait_for_test())`,
      tdb,
    );
    const holder: pg.Client = await openClient(resolveConnection(server.url(tdb), 'target', {}), {
      applicationName: 'test holder',
    });
    try {
      await holder.query('SELECT pg_advisory_lock(4242)');
      let child: import('node:child_process').ChildProcess | undefined;
      const run = runCli(args, { onSpawn: (c) => (child = c) });
      const blocked = await waitFor('the copy to wait for t20', async () => {
        const rows = await server.sql<{ pid: number; claimed: string }>(
          `SELECT a.pid, (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted) AS claimed
           FROM pg_stat_activity a
           WHERE a.datname = current_database() AND a.application_name LIKE 'pgconvoy copy%' AND a.wait_event_type = 'Lock'`,
          tdb,
        );
        return rows[0];
      });
      // The whole group is claimed by that one transaction, which is in t20's COPY.
      assert.equal(Number(blocked.claimed), TABLES);
      const [copying] = await server.sql<{ query: string }>(
        'SELECT query FROM pg_stat_activity WHERE pid = $1',
        tdb,
        [blocked.pid],
      );
      assert.match(copying!.query, /^COPY "tenant"\."t20"/);
      child!.kill('SIGKILL');
      const killed = await run;
      assert.equal(killed.signal, 'SIGKILL');
      await holder.query('SELECT pg_advisory_unlock(4242)');
      // The orphaned backend goes on to t20, then finds its client gone and rolls back.
      await waitFor('the killed copy session to end', async () => {
        const rows = await server.sql(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, tdb, [blocked.pid]);
        return rows.length === 0 ? true : undefined;
      });
    } finally {
      await holder.end();
    }
    // None of the group: no row in any table, no job done.
    const [left] = await server.sql<{ rows: string; done: string }>(
      `SELECT (SELECT sum(n) FROM (${Array.from({ length: TABLES }, (_, i) => `SELECT count(*) AS n FROM tenant.${name(i + 1)}`).join(' UNION ALL ')}) c)::text AS rows,
              (SELECT count(*) FROM pgconvoy.jobs WHERE state = 'done')::text AS done`,
      tdb,
    );
    assert.deepEqual(left, { rows: '0', done: '0' });
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    // Each table loaded once: a group never holds its first job twice.
    const starts = (again.stdout + again.stderr).match(/started tenant\.t01\b/g) ?? [];
    assert.equal(starts.length, 1, again.stdout + again.stderr);
    await assertSameData(server, sdb, server, tdb);
    const [jobs] = await server.sql<{ n: string; rows: string }>(
      `SELECT count(*)::text AS n, sum(rows)::text AS rows FROM pgconvoy.jobs WHERE state = 'done'`,
      tdb,
    );
    assert.deepEqual(jobs, { n: String(TABLES), rows: String(TABLES * 31) });
  });

  test('verify of many small tables finds the one changed row, in its table, by its key', async () => {
    const sdb = await createDatabase(server, uniqueName('small_v_src'));
    // Every other table with a primary key (key ranges), the rest without (hash buckets).
    await server.sql(
      Array.from({ length: 60 }, (_, i) => {
        const t = `tenant.${name(i + 1)}`;
        return `CREATE TABLE ${t} (id integer ${i % 2 ? 'PRIMARY KEY' : 'NOT NULL'}, note text);
INSERT INTO ${t} SELECT g, 'row ' || g FROM generate_series(1, 40) g;`;
      })
        .concat('ANALYZE;')
        .join('\n')
        .replace(/^/, 'CREATE SCHEMA tenant;\n'),
      sdb,
    );
    const tdb = await createDatabase(server, uniqueName('small_v_dst'), sdb);
    await server.sql(`UPDATE tenant.t34 SET note = 'changed' WHERE id = 17`, tdb);
    const commits = async () =>
      Number(
        (
          await server.sql<{ n: string }>(
            `SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = $1`,
            'postgres',
            [sdb],
          )
        )[0]!.n,
      );
    const before = await commits();
    const res = await runCli(['verify', '--source', server.url(sdb), '--target', server.url(tdb), '--json']);
    assert.equal(res.code, 6, res.stderr + res.stdout);
    // Batched: a handful of transactions on the source, not one or two per table (sessions
    // flush their statistics when they end).
    const spent = (await commits()) - before;
    assert.ok(spent < 30, `${spent} transactions on the source for 60 tables`);
    const report = JSON.parse(res.stdout) as VerifyReport;
    assert.equal(report.tables.length, 60);
    const differing = report.tables.filter((t) => t.status !== 'match');
    assert.deepEqual(
      differing.map((t) => [t.name, t.rows, t.differences]),
      [
        [
          't34',
          { source: 40, target: 40 },
          [
            {
              kind: 'changed',
              chunk: differing[0]!.differences[0]!.chunk,
              key: { id: '17' },
              columns: [{ name: 'note', source: 'row 17', target: 'changed' }],
            },
          ],
        ],
      ],
    );
    // The other tables were counted, not skipped.
    assert.ok(report.tables.every((t) => t.rows.source === 40 && t.rows.target === 40));
  });
});
