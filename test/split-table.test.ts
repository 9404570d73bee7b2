import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { readInventory, type TableInfo } from '../src/inventory/inventory.js';
import { chunkCondition, type Chunk } from '../src/plan/chunk.js';
import { keySampleQuery } from '../src/plan/key-boundaries.js';
import { planTableChunks, scheduleJobs } from '../src/plan/split-table.js';
import { qualifiedName } from '../src/util/sql.js';
import { NEW_MAJOR, OLD_MAJOR, createDatabase, startServer, uniqueName } from './helpers/servers.js';

// autovacuum off: "not analyzed" must stay so while the tests run.
const DATA = `
-- 90 % of the rows on ids 1..1000 (27 rows each), the rest spread thinly up to 10^12 with big gaps.
-- Inserted in key order, so pages hold neighbouring keys (the hard case for a page sample).
CREATE TABLE public.skewed (id bigint, pad text) WITH (autovacuum_enabled = false);
CREATE INDEX skewed_id ON public.skewed (id);
INSERT INTO public.skewed SELECT g / 27 + 1, repeat('x', 150) FROM generate_series(0, 26999) g;
INSERT INTO public.skewed SELECT 1000000 + g::int8 * 666666666, repeat('y', 150) FROM generate_series(1, 1500) g;
INSERT INTO public.skewed SELECT 1000000000000 - g::int8 * 7, repeat('z', 150) FROM generate_series(1, 1500) g;
-- Keys above 2^53, all odd: none survives a trip through a JS number.
CREATE TABLE public.big_ids (id bigint PRIMARY KEY, pad text) WITH (autovacuum_enabled = false);
INSERT INTO public.big_ids SELECT 9007199254740993 + 2 * g::int8, repeat('b', 100) FROM generate_series(0, 9999) g;
-- No integer key at all: block ranges.
CREATE TABLE public."Order Items" (sku text PRIMARY KEY, qty numeric) WITH (autovacuum_enabled = false);
INSERT INTO public."Order Items" SELECT md5(g::text), g FROM generate_series(1, 30000) g;
-- A nullable indexed integer column named like a key word: NULL keys must not be lost.
CREATE TABLE public."MixedCase" ("select" integer, v text) WITH (autovacuum_enabled = false);
CREATE INDEX ON public."MixedCase" ("select");
INSERT INTO public."MixedCase" SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE g END, md5(g::text) FROM generate_series(1, 20000) g;
`;

interface Coverage {
  counts: number[];
  total: number;
  /** Rows matched by no chunk or by two or more. */
  notExactlyOnce: number;
  /** md5 of the rows of all chunks (UNION ALL) equals md5 of the table. */
  sameChecksum: boolean;
}

async function coverage(client: pg.Client, table: TableInfo, chunks: Chunk[]): Promise<Coverage> {
  const t = qualifiedName(table.schema, table.name);
  const cond = (c: Chunk) => chunkCondition(c) || 'true';
  const counts: number[] = [];
  for (const c of chunks) {
    const r = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${t} WHERE ${cond(c)}`);
    counts.push(Number(r.rows[0]!.n));
  }
  const matches = chunks.map((c) => `(CASE WHEN ${cond(c)} THEN 1 ELSE 0 END)`).join(' + ');
  const once = await client.query<{ total: string; bad: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE ${matches} <> 1) AS bad FROM ONLY ${t}`,
  );
  const union = chunks
    .map((c) => `SELECT r::text AS x FROM ONLY ${t} r WHERE ${cond(c)}`)
    .join(' UNION ALL ');
  const sums = await client.query<{ same: boolean }>(
    `SELECT (SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (${union}) u)
          = (SELECT md5(string_agg(r::text, ',' ORDER BY r::text)) FROM ONLY ${t} r) AS same`,
  );
  return {
    counts,
    total: Number(once.rows[0]!.total),
    notExactlyOnce: Number(once.rows[0]!.bad),
    sameChecksum: sums.rows[0]!.same,
  };
}

function assertBalanced(cov: Coverage, total: number): void {
  assert.equal(cov.total, total);
  assert.equal(cov.notExactlyOnce, 0, 'every row in exactly one chunk');
  assert.equal(
    cov.counts.reduce((a, b) => a + b, 0),
    total,
  );
  assert.ok(cov.sameChecksum, 'checksum of the chunks = checksum of the table');
  assert.ok(Math.max(...cov.counts) / Math.min(...cov.counts) < 2, `chunk sizes ${cov.counts.join(', ')}`);
}

/** ANALYZE, then wait until the statistics views say nothing changed since (13's collector is asynchronous). */
async function analyze(client: pg.Client, table: string): Promise<void> {
  await client.query(`ANALYZE ${table}`);
  for (let i = 0; i < 100; i++) {
    await client.query('SELECT pg_catalog.pg_stat_clear_snapshot()');
    const r = await client.query<{ m: string | null }>(
      `SELECT n_mod_since_analyze::text AS m FROM pg_catalog.pg_stat_all_tables WHERE relid = $1::regclass`,
      [table],
    );
    if (r.rows[0]?.m === '0') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`statistics of ${table} did not settle after ANALYZE`);
}

for (const major of [OLD_MAJOR, NEW_MAJOR]) {
  describe(`splitting big tables on PostgreSQL ${major}`, () => {
    let server: LocalServer;
    let client: pg.Client;
    let tables: Map<string, TableInfo>;
    const table = (name: string): TableInfo => {
      const t = tables.get(name);
      assert.ok(t, `table ${name} in the inventory`);
      return t;
    };
    before(async () => {
      server = await startServer(major);
      const db = await createDatabase(server, uniqueName('split'));
      await server.sql(DATA, db);
      client = await openClient(resolveConnection(server.url(db), 'source', {}), {
        applicationName: 'pgconvoy test split',
      });
      tables = new Map((await readInventory(client, 'pgconvoy')).tables.map((t) => [t.name, t]));
    });
    after(async () => {
      await client?.end();
      await server?.destroy();
    });

    test('skewed, sparse keys, never analyzed: 8 chunks from a sample, within 2× of each other, every row once', async () => {
      const t = table('skewed');
      const plan = await planTableChunks(client, t, {
        chunkBytes: Math.ceil(t.bytes / 8),
        serverMajor: major,
      });
      assert.equal(plan.method, 'key-range');
      assert.equal(plan.boundarySource, 'sample');
      assert.equal(plan.chunks.length, 8);
      assertBalanced(await coverage(client, t, plan.chunks), 30000);
    });

    test('a sample of half the pages (not the whole table) still gives chunks within 2×, and reads only those pages', async () => {
      const t = table('skewed');
      const blocks = Math.ceil(t.bytes / 8192);
      const samplePages = Math.floor(blocks / 2);
      const plan = await planTableChunks(client, t, {
        chunkBytes: Math.ceil(t.bytes / 4),
        serverMajor: major,
        samplePages,
      });
      assert.equal(plan.boundarySource, 'sample');
      assert.equal(plan.chunks.length, 4);
      assertBalanced(await coverage(client, t, plan.chunks), 30000);
      // The sampling query reads about samplePages heap pages, not the table.
      const q = keySampleQuery(t, 'id', (100 * samplePages) / blocks, 1, 4);
      const explain = await client.query<{ 'QUERY PLAN': [{ Plan: Record<string, unknown> }] }>(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.text}`,
        q.values,
      );
      const root = explain.rows[0]!['QUERY PLAN'][0].Plan;
      const pages = Number(root['Shared Hit Blocks']) + Number(root['Shared Read Blocks']);
      assert.ok(pages > 0 && pages < blocks * 0.75, `sample read ${pages} of ${blocks} pages`);
    });

    test('skewed, sparse keys, analyzed: boundaries from the statistics, within 2×, every row once', async () => {
      await analyze(client, 'public.skewed');
      const t = table('skewed');
      const plan = await planTableChunks(client, t, {
        chunkBytes: Math.ceil(t.bytes / 8),
        serverMajor: major,
      });
      assert.equal(plan.method, 'key-range');
      assert.equal(plan.boundarySource, 'statistics');
      assert.ok(plan.chunks.length >= 7 && plan.chunks.length <= 8, `${plan.chunks.length} chunks`);
      assertBalanced(await coverage(client, t, plan.chunks), 30000);
    });

    test('keys above 2^53 are exact boundaries (sample and statistics)', async () => {
      const t = table('big_ids');
      for (const source of ['sample', 'statistics'] as const) {
        if (source === 'statistics') await analyze(client, 'public.big_ids');
        const plan = await planTableChunks(client, t, {
          chunkBytes: Math.ceil(t.bytes / 4),
          serverMajor: major,
        });
        assert.equal(plan.boundarySource, source);
        const bounds = plan.chunks.flatMap((c) => (c.kind === 'key-range' && c.high ? [c.high] : []));
        assert.equal(bounds.length, 3);
        assert.ok(
          bounds.every((b) => BigInt(b) > 2n ** 53n && BigInt(b) % 2n === 1n),
          bounds.join(', '),
        );
        // Each boundary is a key that exists: no rounding happened on the way.
        const found = await client.query<{ n: string }>(
          'SELECT count(*) AS n FROM public.big_ids WHERE id = ANY ($1::int8[])',
          [bounds],
        );
        assert.equal(Number(found.rows[0]!.n), bounds.length);
        assertBalanced(await coverage(client, t, plan.chunks), 10000);
      }
    });

    test('no integer key: block ranges of equal size, the last open-ended (rows added later are not lost)', async () => {
      const t = table('Order Items');
      const plan = await planTableChunks(client, t, {
        chunkBytes: Math.ceil(t.bytes / 8),
        serverMajor: major,
      });
      assert.equal(plan.method, 'block-range');
      assert.equal(plan.chunks.length, 8);
      assert.deepEqual(plan.chunks.at(-1), {
        kind: 'block-range',
        fromBlock: (plan.chunks.at(-1) as { fromBlock: number }).fromBlock,
      });
      assertBalanced(await coverage(client, t, plan.chunks), 30000);
      if (major >= 14) {
        assert.equal(plan.note, undefined);
        const explain = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT * FROM ONLY public."Order Items" WHERE ${chunkCondition(plan.chunks[1]!)}`,
        );
        assert.match(explain.rows.map((r) => r['QUERY PLAN']).join('\n'), /Tid Range Scan/);
      } else {
        assert.match(
          plan.note ?? '',
          /^PostgreSQL 13 has no TID range scans: each of the 8 chunks of public\."Order Items" scans the whole table/,
        );
      }
      await client.query(
        `INSERT INTO public."Order Items" SELECT md5(g::text), g FROM generate_series(30001, 40000) g`,
      );
      const later = await coverage(client, t, plan.chunks);
      assert.equal(later.total, 40000);
      assert.equal(later.notExactlyOnce, 0);
    });

    test('NULL keys go with the first chunk; a column named "select" in "MixedCase"', async () => {
      const t = table('MixedCase');
      assert.equal(t.splitColumn?.name, 'select');
      const plan = await planTableChunks(client, t, {
        chunkBytes: Math.ceil(t.bytes / 4),
        serverMajor: major,
      });
      assert.equal(plan.method, 'key-range');
      const first = plan.chunks[0]!;
      assert.ok(first.kind === 'key-range' && first.includeNulls && first.low === undefined);
      assert.ok(plan.chunks.slice(1).every((c) => c.kind === 'key-range' && !c.includeNulls));
      const cov = await coverage(client, t, plan.chunks);
      assert.equal(cov.total, 20000);
      assert.equal(cov.notExactlyOnce, 0);
      assert.ok(cov.sameChecksum);
    });

    test('a table not above the chunk size stays whole', async () => {
      const t = table('skewed');
      const plan = await planTableChunks(client, t, { chunkBytes: t.bytes, serverMajor: major });
      assert.deepEqual(plan, { chunks: [{ kind: 'whole' }], method: 'whole' });
    });
  });
}

test('scheduleJobs: big whole tables first, chunks of split tables round-robin, small tables last', () => {
  const job = (tableKey: string, estimatedBytes: number, n = 0) => ({
    tableKey,
    estimatedBytes,
    id: `${tableKey}${n}`,
  });
  const jobs = [
    job('small', 10),
    ...Array.from({ length: 6 }, (_, i) => job('A', 256, i + 1)), // 1536 in all
    job('whole900', 900),
    ...Array.from({ length: 3 }, (_, i) => job('B', 200, i + 1)), // 600
    job('tiny', 1),
    job('mid', 250),
    ...Array.from({ length: 2 }, (_, i) => job('C', 210, i + 1)), // 420
  ];
  const order = scheduleJobs(jobs).map((j) => j.id);
  assert.deepEqual(order, [
    'whole9000', // the longest single job starts first
    'A1', // then chunk 1 of every split table, biggest table first…
    'mid0', // (a whole table as big as the chunks around it fits in by size)
    'B1',
    'C1',
    'A2',
    'B2',
    'C2',
    'A3',
    'B3',
    'A4',
    'A5',
    'A6',
    'small0', // small tables fill the end
    'tiny0',
  ]);
  assert.equal(scheduleJobs(jobs).length, jobs.length);
});
