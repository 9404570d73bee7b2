import { after, before, describe, test } from 'node:test';
// The tail of a clone: a chunked table's indexes (and the foreign keys it can take) are built
// as soon as its last chunk commits, while another table still copies; a kill in that overlap
// and a rerun end with the same data and every index and constraint once.
import assert from 'node:assert/strict';
import pg from 'pg';
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

// `big`: ~7 MB, cut into 1 MB chunks. `slow`: copied whole, and held: its CHECK waits for a
// shared advisory lock that the test holds exclusively on the target until it has seen
// `big`'s indexes in the ledger (on the source the lock is free, so the rows go in). Its
// foreign key to `big` waits for it.
const GATE = 4242;
const DATA = `
CREATE FUNCTION public.gate(integer) RETURNS boolean LANGUAGE sql
  AS $$ SELECT true FROM (SELECT pg_catalog.pg_advisory_xact_lock_shared(${GATE})) AS held $$;
CREATE TABLE public.big (id bigint PRIMARY KEY, v text NOT NULL);
CREATE INDEX big_v_idx ON public.big (v);
INSERT INTO public.big SELECT g, md5(g::text) FROM generate_series(1, 100000) g;
CREATE TABLE public.slow (id integer PRIMARY KEY CHECK (public.gate(id)), big_id bigint NOT NULL REFERENCES public.big, payload text);
INSERT INTO public.slow SELECT g, g * 7, md5(g::text) FROM generate_series(1, 100) g;
ANALYZE;
`;

const BIG_INDEXED = `SELECT EXISTS (SELECT FROM pgconvoy.steps WHERE name = 'indexes:' || $1 AND finished_at IS NOT NULL) AS indexed`;
const BIG_KEY = JSON.stringify(['public', 'big']);

const cloneArgs = (source: LocalServer, target: LocalServer, db: string, dir: string) => [
  'clone',
  '--source',
  source.url(db),
  '--target',
  target.url(db),
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

/** A target session holding the gate: `slow`'s rows wait until it is released. */
async function holdGate(target: LocalServer, db: string): Promise<pg.Client> {
  const gate = new pg.Client({ connectionString: target.url(db) });
  await gate.connect();
  await gate.query(`SELECT pg_catalog.pg_advisory_lock(${GATE})`);
  return gate;
}

/** Waits until the ledger says `big`'s indexes are built (its ledger may not exist yet). */
async function waitForBigIndexed(gate: pg.Client, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const indexed = await gate
      .query<{ indexed: boolean }>(BIG_INDEXED, [BIG_KEY])
      .then((r) => r.rows[0]?.indexed === true)
      .catch(() => false);
    if (indexed) return;
    if (Date.now() > until) throw new Error("big's indexes were not built while slow's copy was held");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('clone: index builds overlap the copy', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('overlap_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    await source.sql(DATA, template);
    const [sizes] = await source.sql<{ big: string }>(`SELECT pg_table_size('public.big') AS big`, template);
    assert.ok(Number(sizes!.big) > 4 * 1024 ** 2, JSON.stringify(sizes)); // split in chunks
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test("a chunked table's indexes are built while another table's copy is held", async () => {
    const db = await createDatabase(source, uniqueName('overlap'), template);
    await createDatabase(target, db);
    const gate = await holdGate(target, db);
    try {
      const clone = runCli(cloneArgs(source, target, db, tempDir()));
      await waitForBigIndexed(gate);
      const [slow] = await target.sql<{ done: string }>(
        `SELECT count(*) FILTER (WHERE state = 'done') AS done FROM pgconvoy.jobs WHERE table_name = 'slow'`,
        db,
      );
      assert.equal(slow?.done, '0', "slow's copy is still held");
      await gate.query(`SELECT pg_catalog.pg_advisory_unlock(${GATE})`);
      const res = await clone;
      assert.equal(res.code, 0, res.stderr);
    } finally {
      await gate.end().catch(() => undefined);
    }
    await assertSameData(source, db, target, db);
    assert.deepEqual(await schemaObjects(target, db), await schemaObjects(source, db));
    const [chunks] = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pgconvoy.jobs WHERE table_name = 'big'`,
      db,
    );
    assert.ok(Number(chunks!.n) > 4, `big in ${chunks!.n} chunk(s)`);
  });

  test('killed while a chunked table is indexed and another copies: the rerun ends with all of it once', async () => {
    const db = await createDatabase(source, uniqueName('overlap_kill'), template);
    await createDatabase(target, db);
    const dir = tempDir();
    const gate = await holdGate(target, db);
    try {
      let child: { kill: (s: NodeJS.Signals) => boolean } | undefined;
      const first = runCli(cloneArgs(source, target, db, dir), { onSpawn: (c) => (child = c) });
      await waitForBigIndexed(gate);
      child!.kill('SIGKILL');
      assert.equal((await first).signal, 'SIGKILL');
      const [mid] = await target.sql<{ pending: string }>(
        `SELECT count(*) AS pending FROM pgconvoy.jobs WHERE table_name = 'slow' AND state = 'pending'`,
        db,
      );
      assert.equal(mid?.pending, '1', 'killed inside the overlap: slow not copied');
    } finally {
      await gate.end().catch(() => undefined);
    }
    const second = await runCli(cloneArgs(source, target, db, dir));
    assert.equal(second.code, 0, second.stderr);
    await assertSameData(source, db, target, db);
    assert.deepEqual(await schemaObjects(target, db), await schemaObjects(source, db));
  });
});
