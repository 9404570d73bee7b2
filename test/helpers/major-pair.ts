/**
 * One source major into one target major: `clone --verify` on the compact feature database,
 * then the independent check (row counts and md5 of sorted rows per table by SQL on both
 * sides, and catalog facts). Used by test/matrix (every pair) and by `npm test` (one pair).
 */
import assert from 'node:assert/strict';
import type { LocalServer } from '../../src/sandbox/local-server.js';
import { featureDatabaseSql } from '../../src/sandbox/sample-database.js';
import { assertSameData, catalogFacts } from './compare.js';
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
}
