/**
 * The matrix's one pair in `npm test` (the rest: `npm run test:matrix`): 14 into 18, the
 * majors no other test of `npm test` starts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { cloneAndCompare, featureTemplate } from './helpers/major-pair.js';
import { createDatabase, runCli, startServer, tempDir, uniqueName } from './helpers/servers.js';

/**
 * A test extension with a configuration table (pg_extension_config_dump), found through
 * PostgreSQL 18's extension_control_path: no file is written into an installation.
 */
function configExtension(): Record<string, string> {
  const dir = tempDir('pgconvoy-ext-');
  mkdirSync(path.join(dir, 'extension'));
  writeFileSync(
    path.join(dir, 'extension', 'convoy_cfg.control'),
    "default_version = '1.0'\nrelocatable = false\nschema = public\n",
  );
  writeFileSync(
    path.join(dir, 'extension', 'convoy_cfg--1.0.sql'),
    `CREATE TABLE convoy_cfg_settings (k text PRIMARY KEY, v text, builtin boolean NOT NULL DEFAULT false);
     INSERT INTO convoy_cfg_settings VALUES ('default', 'from the extension', true);
     SELECT pg_catalog.pg_extension_config_dump('convoy_cfg_settings', 'WHERE NOT builtin');`,
  );
  for (const p of [dir, path.join(dir, 'extension')]) chmodSync(p, 0o755);
  return { extension_control_path: `'$system:${dir}'` };
}

describe('clone 14 → 18', { timeout: 180_000 }, () => {
  let source: LocalServer;
  let target: LocalServer;
  let template: string;
  before(async () => {
    [source, target] = await Promise.all([startServer(14), startServer(18)]);
    template = await featureTemplate(source);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('the feature database arrives whole: rows, checksums, indexes, constraints, sequences', () =>
    cloneAndCompare(source, target, template, tempDir()));
});

describe('extension configuration tables (18 → 18, --schema skip)', { timeout: 180_000 }, () => {
  let source: LocalServer;
  let target: LocalServer;
  before(async () => {
    const settings = configExtension();
    [source, target] = await Promise.all([startServer(18, { settings }), startServer(18, { settings })]);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test("the rows the extension's condition selects are copied, as pg_dump does; its own rows are not doubled", async () => {
    const db = uniqueName('ext_cfg');
    for (const s of [source, target]) {
      await createDatabase(s, db);
      await s.sql('CREATE EXTENSION convoy_cfg; CREATE TABLE public.t (id int PRIMARY KEY)', db);
    }
    await source.sql(
      `INSERT INTO convoy_cfg_settings VALUES ('mine', 'set by the user', false), ('also mine', 'x', false);
       INSERT INTO public.t SELECT generate_series(1, 10)`,
      db,
    );
    const args = [
      'clone',
      '--schema',
      'skip',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--run-dir',
      tempDir(),
    ];
    const res = await runCli(args);
    assert.equal(res.code, 0, res.stderr + res.stdout);
    const rows = () =>
      target.sql<{ k: string; builtin: boolean }>(
        'SELECT k, builtin FROM convoy_cfg_settings ORDER BY k',
        db,
      );
    const want = [
      { k: 'also mine', builtin: false },
      { k: 'default', builtin: true },
      { k: 'mine', builtin: false },
    ];
    assert.deepEqual(await rows(), want);
    assert.match(
      res.stderr,
      /2 row\(s\) of 1 extension configuration table\(s\) \(convoy_cfg: public\.convoy_cfg_settings\)/,
    );
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await rows(), want, 'a second run copies nothing twice');
  });
});
