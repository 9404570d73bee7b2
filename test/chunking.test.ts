import { after, before, describe, test } from 'node:test';
// Planning itself is tested in split-table.test.ts; this is the whole clone with chunked tables.
import assert from 'node:assert/strict';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
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
      `SELECT count(*) AS n FROM pgconvoy.jobs WHERE table_name = 'skewed'`,
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
