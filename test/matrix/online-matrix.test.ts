/**
 * `npm run test:matrix`, online part: start, start-back, cutover, rollback and teardown on the
 * compact feature database for 13 → 16, 14 → 18 and 15 → 17, each checked by SQL on both
 * sides (helpers/major-pair.ts). Also what PostgreSQL 18 changed, on an 18 → 18 pair whose
 * schema is made from SQL on both sides (no pg_dump 18 here): virtual generated columns (not
 * copied, computed on read) and NOT NULL constraints kept in pg_constraint.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalServer } from '../../src/sandbox/local-server.js';
import { featureDatabaseSql } from '../../src/sandbox/sample-database.js';
import { assertSameData, catalogFacts, notNullWithoutConstraint } from '../helpers/compare.js';
import { featureTemplate, onlineAndCompare } from '../helpers/major-pair.js';
import { createDatabase, runCli, startServer, tempDir, uniqueName } from '../helpers/servers.js';

const PAIRS: [number, number][] = [
  [13, 16],
  [14, 18],
  [15, 17],
];

describe('online migration across majors', { timeout: 900_000 }, () => {
  const dir = tempDir();
  for (const [from, to] of PAIRS) {
    describe(`${from} → ${to}`, () => {
      let source: LocalServer;
      let target: LocalServer;
      let template: string;
      before(async () => {
        [source, target] = await Promise.all([startServer(from), startServer(to)]);
        template = await featureTemplate(source);
      });
      after(async () => Promise.all([source?.destroy(), target?.destroy()]));
      test('start, start-back, cutover, rollback, teardown', () =>
        onlineAndCompare(source, target, template, dir));
    });
  }
});

describe('PostgreSQL 18: virtual generated columns and NOT NULL constraints (18 → 18, --schema skip)', () => {
  let source: LocalServer;
  let target: LocalServer;
  before(async () => {
    [source, target] = await Promise.all([startServer(18), startServer(18)]);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('clone --schema skip and verify: rows equal, virtual columns computed on the target', async () => {
    const db = uniqueName('pg18');
    const virtual = `ALTER TABLE public."Order Items" ADD COLUMN line_total numeric GENERATED ALWAYS AS (qty * price) VIRTUAL`;
    await createDatabase(source, db);
    await source.sql(featureDatabaseSql(150) + virtual, db);
    // The same schema on the target, empty.
    await createDatabase(target, db);
    await target.sql(
      `${featureDatabaseSql(0)}${virtual};
       TRUNCATE sales.customers, sales.orders, sales.order_audit, public."Order Items", public."select",
                public."MixedCase", public."a""b", "Audit Log".events, public.measurements CASCADE;
       SELECT lo_unlink(oid) FROM pg_largeobject_metadata;`,
      db,
    );
    const res = await runCli([
      'clone',
      '--verify',
      '--schema',
      'skip',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--run-dir',
      `${tempDir()}/${db}`,
      '-q',
    ]);
    assert.equal(res.code, 0, res.stderr + res.stdout);
    assert.match(res.stdout, /verify: the target equals the source/);
    await assertSameData(source, db, target, db);
    assert.deepEqual(await catalogFacts(target, db), await catalogFacts(source, db));
    assert.deepEqual(await notNullWithoutConstraint(target, db), []);
    const [kinds] = await target.sql<{ g: string; n: number }>(
      `SELECT (SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 'public."Order Items"'::regclass AND attname = 'line_total') AS g,
              (SELECT count(*)::int FROM public."Order Items" WHERE line_total IS DISTINCT FROM qty * price) AS n`,
      db,
    );
    assert.deepEqual(kinds, { g: 'v', n: 0 });
  });
});
