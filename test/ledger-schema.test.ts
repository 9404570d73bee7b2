import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { SYSTEM_MAJOR, createDatabase, runCli, startServer, tempDir, uniqueName } from './helpers/servers.js';

describe('where the ledger lives', () => {
  let server: LocalServer;
  let template: string;
  before(async () => {
    server = await startServer(SYSTEM_MAJOR);
    template = await createDatabase(server, uniqueName('ledger_tpl'));
    await server.sql(
      `CREATE TABLE public.t (id bigint PRIMARY KEY, v text);
       INSERT INTO public.t SELECT g, g::text FROM generate_series(1, 1000) g;
       CREATE SEQUENCE public.s; SELECT setval('public.s', 42);`,
      template,
    );
  });
  after(async () => server?.destroy());

  const schemas = async (db: string) =>
    (
      await server.sql<{ nspname: string }>(
        `SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('public', 'information_schema') ORDER BY 1`,
        db,
      )
    ).map((r) => r.nspname);

  test('an awkward --ledger-schema (mixed case, a space) works end to end', async () => {
    const src = await createDatabase(server, uniqueName('awk_src'), template);
    const dst = uniqueName('awk_dst');
    const conn = ['--source', server.url(src), '--target', server.url(dst)];
    const ledger = ['--ledger-schema', 'Convoy Ledger'];
    const clone = await runCli(['clone', ...conn, ...ledger, '--create-database', '--run-dir', tempDir()]);
    assert.equal(clone.code, 0, clone.stderr);
    assert.deepEqual(await schemas(dst), ['Convoy Ledger']);
    const again = await runCli(['clone', ...conn, ...ledger, '--run-dir', tempDir()]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /1 already done/);
    const status = await runCli(['status', '--target', server.url(dst), ...ledger]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /jobs: 1 done, 0 running, 0 failed, 0 pending \(of 1\)/);
    const rows = await server.sql<{ n: string }>('SELECT count(*) AS n FROM public.t', dst);
    assert.equal(rows[0]!.n, '1000');
  });

  test("the config file's ledger-schema is used (and --ledger-schema still wins)", async () => {
    const src = await createDatabase(server, uniqueName('cfg_src'), template);
    const dst = uniqueName('cfg_dst');
    const file = path.join(tempDir(), 'pgconvoy.conf');
    writeFileSync(
      file,
      `[source]\nurl = ${server.url(src)}\n[target]\nurl = ${server.url(dst)}\n[clone]\nledger-schema = CfgLedger\n`,
    );
    const clone = await runCli(['clone', '--config', file, '--create-database', '--run-dir', tempDir()]);
    assert.equal(clone.code, 0, clone.stderr);
    assert.deepEqual(await schemas(dst), ['CfgLedger']);
    const status = await runCli(['status', '--config', file]);
    assert.match(status.stdout, /jobs: 1 done/, status.stdout + status.stderr);
    const other = await runCli(['status', '--config', file, '--ledger-schema', 'nosuch']);
    assert.doesNotMatch(other.stdout, /jobs: 1 done/);
  });
});
