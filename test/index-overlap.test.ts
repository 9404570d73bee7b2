import { after, before, describe, test } from 'node:test';
// The tail of a clone: a chunked table's indexes (and the foreign keys it can take) are built
// as soon as its last chunk commits, while another table still copies; a kill in that overlap
// and a rerun end with the same data and every index and constraint once.
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

// `big`: ~7 MB, cut into 1 MB chunks. `slow`: about 1.2 MB on disk (its values compress
// ~100:1), so it is copied whole and first, but COPY moves ~100 MB of it: it is still
// copying long after `big`'s chunks are in. Its foreign key to `big` waits for it.
const DATA = `
CREATE TABLE public.big (id bigint PRIMARY KEY, v text NOT NULL);
CREATE INDEX big_v_idx ON public.big (v);
INSERT INTO public.big SELECT g, md5(g::text) FROM generate_series(1, 100000) g;
CREATE TABLE public.slow (id integer PRIMARY KEY, big_id bigint NOT NULL REFERENCES public.big, payload text);
INSERT INTO public.slow SELECT g, g * 7, repeat(md5(g::text), 31250) FROM generate_series(1, 100) g;
ANALYZE;
`;

const cloneArgs = (source: LocalServer, target: LocalServer, db: string, dir: string) => [
  'clone',
  '--source',
  source.url(db),
  '--target',
  target.url(db),
  '--create-database',
  '--jobs',
  '2',
  '--split-tables-larger-than',
  '3MB',
  '--chunk-size',
  '1MB',
  '--run-dir',
  dir,
];

/** Every index and constraint of the two tables, with whether it is valid. */
async function schemaObjects(server: LocalServer, db: string): Promise<string[]> {
  const rows = await server.sql<{ o: string }>(
    `SELECT 'index ' || indexrelid::regclass::text || ' ' || indisvalid::text AS o FROM pg_index
       WHERE indrelid IN ('public.big'::regclass, 'public.slow'::regclass)
     UNION ALL
     SELECT 'constraint ' || conname::text || ' ' || contype::text || ' ' || convalidated::text FROM pg_constraint
       WHERE conrelid IN ('public.big'::regclass, 'public.slow'::regclass)
     ORDER BY 1`,
    db,
  );
  return rows.map((r) => r.o);
}

describe('clone: index builds overlap the copy', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('overlap_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    await source.sql(DATA, template);
    const [sizes] = await source.sql<{ big: string; slow: string }>(
      `SELECT pg_table_size('public.big') AS big, pg_table_size('public.slow') AS slow`,
      template,
    );
    // The layout the tests rely on: big split (over 3 MB), slow whole and bigger than a chunk.
    assert.ok(Number(sizes!.big) > 4 * 1024 ** 2 && Number(sizes!.slow) > 1024 ** 2, JSON.stringify(sizes));
    assert.ok(Number(sizes!.slow) < 3 * 1024 ** 2, JSON.stringify(sizes));
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test("a chunked table's indexes are built before another table's copy ends", async () => {
    const db = await createDatabase(source, uniqueName('overlap'), template);
    const res = await runCli(cloneArgs(source, target, db, tempDir()));
    assert.equal(res.code, 0, res.stderr);
    await assertSameData(source, db, target, db);
    assert.deepEqual(await schemaObjects(target, db), await schemaObjects(source, db));
    const [when] = await target.sql<{ chunks: string; indexed: boolean; keyed: boolean }>(
      `SELECT (SELECT count(*) FROM pgconvoy.jobs WHERE table_name = 'big') AS chunks,
              (SELECT finished_at FROM pgconvoy.steps WHERE name = 'indexes:' || $1)
                < (SELECT finished_at FROM pgconvoy.jobs WHERE table_name = 'slow') AS indexed,
              (SELECT finished_at FROM pgconvoy.steps WHERE name LIKE 'foreign-key:%')
                > (SELECT finished_at FROM pgconvoy.jobs WHERE table_name = 'slow') AS keyed`,
      db,
      [JSON.stringify(['public', 'big'])],
    );
    assert.ok(Number(when!.chunks) > 4, `big in ${when!.chunks} chunk(s)`);
    assert.equal(when!.indexed, true, "big's indexes were built only after slow's copy ended");
    assert.equal(when!.keyed, true, "the foreign key was added before slow's rows were in");
  });

  test('killed while a chunked table is indexed and another copies: the rerun ends with all of it once', async () => {
    const db = await createDatabase(source, uniqueName('overlap_kill'), template);
    const dir = tempDir();
    let output = '';
    const first = await runCli(cloneArgs(source, target, db, dir), {
      onSpawn: (child) => {
        child.stderr!.on('data', (d: Buffer) => {
          output += d.toString();
          if (/indexes: public\.big: /.test(output)) child.kill('SIGKILL');
        });
      },
    });
    assert.equal(first.signal, 'SIGKILL', output);
    const [mid] = await target.sql<{ indexed: boolean; pending: string }>(
      `SELECT EXISTS (SELECT FROM pgconvoy.steps WHERE name = 'indexes:' || $1) AS indexed,
              (SELECT count(*) FROM pgconvoy.jobs WHERE table_name = 'slow' AND state = 'pending') AS pending`,
      db,
      [JSON.stringify(['public', 'big'])],
    );
    assert.deepEqual([mid!.indexed, mid!.pending], [true, '1'], 'killed inside the overlap');
    const second = await runCli(cloneArgs(source, target, db, dir));
    assert.equal(second.code, 0, second.stderr);
    await assertSameData(source, db, target, db);
    assert.deepEqual(await schemaObjects(target, db), await schemaObjects(source, db));
  });
});
