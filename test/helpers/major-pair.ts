/**
 * One source major into one target major: `clone --verify` on the compact feature database,
 * then the independent check (row counts and md5 of sorted rows per table by SQL on both
 * sides, and catalog facts). Used by test/matrix (every pair) and by `npm test` (one pair).
 */
import assert from 'node:assert/strict';
import type { LocalServer } from '../../src/sandbox/local-server.js';
import { featureDatabaseSql } from '../../src/sandbox/sample-database.js';
import { assertSameData, catalogFacts, notNullWithoutConstraint, replicationObjects } from './compare.js';
import { createDatabase, runCli, uniqueName } from './servers.js';

/** The compact feature database as a template on `source`; returns the template's name. */
export async function featureTemplate(source: LocalServer, rows = 150): Promise<string> {
  const template = await createDatabase(source, uniqueName('feature_tpl'));
  await source.sql(featureDatabaseSql(rows), template);
  return template;
}

export async function cloneAndCompare(
  source: LocalServer,
  target: LocalServer,
  template: string,
  runDir: string,
): Promise<void> {
  const db = await createDatabase(source, uniqueName(`m${source.major}_${target.major}`), template);
  // Its own name on the target: the source and the target may be one server (15 → 15).
  const tdb = `${db}_t`;
  const res = await runCli([
    'clone',
    '--verify',
    '--source',
    source.url(db),
    '--target',
    target.url(tdb),
    '--create-database',
    '--jobs',
    '2',
    '--run-dir',
    `${runDir}/${db}`,
    '-q',
  ]);
  assert.equal(res.code, 0, res.stderr + res.stdout);
  assert.match(res.stdout, /verify: the target equals the source/);
  await assertSameData(source, db, target, tdb);
  assert.deepEqual(await catalogFacts(target, tdb), await catalogFacts(source, db));
  if (target.major >= 18) assert.deepEqual(await notNullWithoutConstraint(target, tdb), []);
}

/**
 * The online path on the feature database: start (copy + replication) while the source
 * changes, start-back, cutover (with its verify), a write on the target, rollback (the write
 * reaches the source), teardown (nothing left on either side). After cutover and after
 * rollback both sides are compared by SQL, independently of pgconvoy.
 */
export async function onlineAndCompare(
  source: LocalServer,
  target: LocalServer,
  template: string,
  runDir: string,
): Promise<void> {
  const db = await createDatabase(source, uniqueName(`o${source.major}_${target.major}`), template);
  const args = ['--source', source.url(db), '--target', target.url(db)];
  const run = async (command: string, ...more: string[]) => {
    const res = await runCli([command, ...args, ...more]);
    assert.equal(res.code, 0, `${command}: ${res.stderr}${res.stdout}`);
    return res;
  };
  await run('start', '--create-database', '--jobs', '2', '--run-dir', `${runDir}/${db}`, '-q');
  // Changes after the slot's snapshot arrive by replication (the audit table, which has no
  // key, by cutover's copy).
  await source.sql(
    `INSERT INTO sales.orders (customer_id, total) SELECT id, 12.5 FROM sales.customers WHERE id <= 20;
     UPDATE sales.customers SET name = name || ' (moved)' WHERE id % 9 = 0;
     DELETE FROM public."MixedCase" WHERE "Id" % 7 = 0;
     INSERT INTO public.measurements VALUES ('2024-03-01', 7, 70);`,
    db,
  );
  await run('start-back');
  const cutover = await run('cutover', '--json');
  assert.equal((JSON.parse(cutover.stdout) as { verify: { ok: boolean } }).verify.ok, true);
  await assertSameData(source, db, target, db);
  assert.deepEqual(await catalogFacts(target, db), await catalogFacts(source, db));
  if (target.major >= 18) assert.deepEqual(await notNullWithoutConstraint(target, db), []);

  await target.sql(`INSERT INTO public."MixedCase" VALUES (-1, 'written on the target after cutover')`, db);
  await run('rollback');
  const back = await source.sql<{ v: string }>(
    `SELECT "Value" AS v FROM public."MixedCase" WHERE "Id" = -1`,
    db,
  );
  assert.deepEqual(back, [{ v: 'written on the target after cutover' }]);
  await assertSameData(source, db, target, db);
  await run('teardown');
  assert.deepEqual(await replicationObjects(source, db), { slots: 0, subs: 0, pubs: 0 });
  assert.deepEqual(await replicationObjects(target, db), { slots: 0, subs: 0, pubs: 0 });
}
