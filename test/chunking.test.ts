import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { readInventory, type TableInfo } from '../src/inventory/inventory.js';
import { planTableChunks } from '../src/plan/plan-table-chunks.js';
import { chunkCondition, type Chunk } from '../src/plan/chunk.js';
import { qualifiedName } from '../src/util/sql.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
} from './helpers/servers.js';
import { assertSameData } from './helpers/compare.js';

const DATA = `
-- 90 % of the rows in ids 1..45000, the rest spread thinly up to 10^12, and ids above 2^53.
CREATE TABLE public.skewed (id bigint PRIMARY KEY, v text);
INSERT INTO public.skewed SELECT g, md5(g::text) FROM generate_series(1, 45000) g;
INSERT INTO public.skewed SELECT 1000000 + g::bigint * 200000000, md5(g::text) FROM generate_series(1, 4000) g;
INSERT INTO public.skewed SELECT 9007199254740993 + g, 'big' FROM generate_series(1, 1000) g;
-- No integer key at all: split by heap blocks.
CREATE TABLE public."no key" (label text, n numeric);
INSERT INTO public."no key" SELECT md5(g::text), g FROM generate_series(1, 50000) g;
-- A nullable indexed integer column: NULL keys must not be lost.
CREATE TABLE public.nullable (k integer, v text);
CREATE INDEX ON public.nullable (k);
INSERT INTO public.nullable SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE g END, md5(g::text) FROM generate_series(1, 30000) g;
`;

async function chunkCounts(
  client: pg.Client,
  table: TableInfo,
  chunks: Chunk[],
): Promise<{ counts: number[]; total: number; notExactlyOnce: number }> {
  const t = qualifiedName(table.schema, table.name);
  const counts: number[] = [];
  for (const c of chunks) {
    const cond = chunkCondition(c) || 'true';
    const r = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${t} WHERE ${cond}`);
    counts.push(Number(r.rows[0]!.n));
  }
  const matches = chunks
    .map((c) => `(CASE WHEN ${chunkCondition(c) || 'true'} THEN 1 ELSE 0 END)`)
    .join(' + ');
  const once = await client.query<{ total: string; bad: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE ${matches} <> 1) AS bad FROM ONLY ${t}`,
  );
  return { counts, total: Number(once.rows[0]!.total), notExactlyOnce: Number(once.rows[0]!.bad) };
}

for (const major of [OLD_MAJOR, NEW_MAJOR]) {
  describe(`chunk planning on PostgreSQL ${major}`, () => {
    let server: LocalServer;
    let client: pg.Client;
    let tables: Map<string, TableInfo>;
    before(async () => {
      server = await startServer(major);
      const db = await createDatabase(server, uniqueName('chunks'));
      await server.sql(DATA, db);
      client = await openClient(resolveConnection(server.url(db), 'source', {}));
      tables = new Map((await readInventory(client, 'pgferry')).tables.map((t) => [t.name, t]));
    });
    after(async () => {
      await client?.end();
      await server?.destroy();
    });

    for (const analyzed of [false, true]) {
      test(`skewed, sparse bigint keys${analyzed ? ' (analyzed)' : ''}: ~8 chunks within 2× of each other, every row exactly once`, async () => {
        if (analyzed) await client.query('ANALYZE public.skewed');
        const table = tables.get('skewed')!;
        const plan = await planTableChunks(client, table, {
          splitLargerThan: 0,
          chunkBytes: Math.ceil(table.bytes / 8),
          serverMajor: major,
        });
        assert.equal(plan.method, 'key-range');
        assert.ok(plan.chunks.length >= 7 && plan.chunks.length <= 9, `${plan.chunks.length} chunks`);
        const { counts, total, notExactlyOnce } = await chunkCounts(client, table, plan.chunks);
        assert.equal(total, 50000);
        assert.equal(notExactlyOnce, 0);
        assert.equal(
          counts.reduce((a, b) => a + b, 0),
          total,
        );
        assert.ok(Math.max(...counts) / Math.min(...counts) < 2, `chunk sizes ${counts.join(', ')}`);
        // Boundaries above 2^53 are exact (never through a JS number).
        const bounds = plan.chunks
          .flatMap((c) => (c.kind === 'key-range' ? [c.low, c.high] : []))
          .filter((b): b is string => b !== undefined);
        assert.ok(bounds.every((b) => /^\d+$/.test(b)));
      });
    }

    test('a sample of random pages (not the whole table) still gives chunks within 2×', async () => {
      const table = tables.get('skewed')!;
      const relpages = (
        await client.query<{ n: number }>(
          `SELECT relpages AS n FROM pg_class WHERE oid = 'public.skewed'::regclass`,
        )
      ).rows[0]!.n;
      const samplePages = Math.floor(relpages / 2);
      const plan = await planTableChunks(client, table, {
        splitLargerThan: 0,
        chunkBytes: Math.ceil(table.bytes / 6),
        serverMajor: major,
        samplePages,
      });
      const { counts, notExactlyOnce } = await chunkCounts(client, table, plan.chunks);
      assert.equal(notExactlyOnce, 0);
      assert.ok(
        Math.max(...counts) / Math.min(...counts) < 2,
        `sampled ${samplePages} of ${relpages} pages: chunk sizes ${counts.join(', ')}`,
      );
    });

    test('no integer key: block ranges, every row exactly once', async () => {
      const table = tables.get('no key')!;
      const plan = await planTableChunks(client, table, {
        splitLargerThan: 0,
        chunkBytes: Math.ceil(table.bytes / 6),
        serverMajor: major,
      });
      assert.equal(plan.method, 'block-range');
      assert.ok(plan.chunks.length >= 5);
      const { counts, total, notExactlyOnce } = await chunkCounts(client, table, plan.chunks);
      assert.equal(notExactlyOnce, 0);
      assert.equal(total, 50000);
      assert.ok(Math.min(...counts) > 0);
      if (major >= 14) {
        assert.equal(plan.note, undefined);
        const explain = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT * FROM ONLY public."no key" WHERE ${chunkCondition(plan.chunks[1]!)}`,
        );
        assert.match(explain.rows.map((r) => r['QUERY PLAN']).join('\n'), /Tid Range Scan/);
      } else {
        assert.match(plan.note ?? '', /no TID range scans: each of the \d+ chunks .* scans the whole table/);
      }
    });

    test('NULL keys belong to the first chunk', async () => {
      const table = tables.get('nullable')!;
      const plan = await planTableChunks(client, table, {
        splitLargerThan: 0,
        chunkBytes: Math.ceil(table.bytes / 4),
        serverMajor: major,
      });
      assert.equal(plan.method, 'key-range');
      const { total, notExactlyOnce } = await chunkCounts(client, table, plan.chunks);
      assert.equal(total, 30000);
      assert.equal(notExactlyOnce, 0);
    });

    test('small tables stay whole', async () => {
      const table = tables.get('skewed')!;
      const plan = await planTableChunks(client, table, {
        splitLargerThan: table.bytes,
        chunkBytes: 1024,
        serverMajor: major,
      });
      assert.deepEqual(plan.chunks, [{ kind: 'whole' }]);
    });
  });
}

describe('clone with chunked tables', () => {
  let source: LocalServer;
  let target: LocalServer;
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('big tables copied in chunks by several workers: equal counts and checksums, indexes after the last chunk', async () => {
    const db = await createDatabase(source, uniqueName('chunked'));
    await source.sql(DATA + 'ANALYZE;', db);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--jobs',
      '3',
      '--split-tables-larger-than',
      '1MB',
      '--chunk-size',
      '512kB',
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /public\.skewed: \d+ chunks by key-range/);
    assert.match(res.stderr, /public\."no key": \d+ chunks by block-range/);
    await assertSameData(source, db, target, db);
    const jobs = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pgferry.jobs WHERE table_name = 'skewed'`,
      db,
    );
    assert.ok(Number(jobs[0]!.n) > 3);
    const pk = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_index WHERE indrelid = 'public.skewed'::regclass AND indisprimary AND indisvalid`,
      db,
    );
    assert.equal(pk[0]!.n, '1');
  });
});
