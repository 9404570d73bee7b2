import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { SYSTEM_MAJOR, createDatabase, runCli, startServer, tempDir, uniqueName } from './helpers/servers.js';

describe('a server error no step wrapped', () => {
  let server: LocalServer;
  before(async () => {
    server = await startServer(SYSTEM_MAJOR);
  });
  after(async () => server?.destroy());

  test("is reported with the server's SQLSTATE, detail and hint, and the failing side's exit code", async () => {
    const src = await createDatabase(server, uniqueName('raw_src'));
    const dst = uniqueName('raw_dst');
    await server.sql('CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO public.t VALUES (1);', src);
    const plan = await runCli([
      'clone',
      '--source',
      server.url(src),
      '--target',
      server.url(dst),
      '--create-database',
      '--plan-only',
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(plan.code, 0, plan.stderr);
    // The ledger's plan table becomes a view whose every read fails with a server error.
    await server.sql(
      `CREATE FUNCTION pgconvoy.refuse() RETURNS boolean LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'plan is locked away' USING ERRCODE = '42501', DETAIL = 'the detail', HINT = 'the hint'; END $$;
       ALTER TABLE pgconvoy.plan RENAME TO plan_kept;
       CREATE VIEW pgconvoy.plan AS SELECT * FROM pgconvoy.plan_kept WHERE pgconvoy.refuse();`,
      dst,
    );
    const res = await runCli(['status', '--target', server.url(dst)]);
    assert.equal(res.code, 5, `the target failed: exit 5\n${res.stderr}`);
    assert.match(res.stderr, /pgconvoy: error: the target server reported an error: plan is locked away/);
    assert.match(res.stderr, /42501/);
    assert.match(res.stderr, /detail: the detail/);
    assert.match(res.stderr, /hint: the hint/);
    assert.doesNotMatch(res.stderr, /bug/);
    const json = await runCli(['status', '--target', server.url(dst), '--json']);
    assert.equal(json.code, 5);
    const out = JSON.parse(json.stdout) as { error: Record<string, unknown> };
    assert.equal(out.error.code, 'SERVER_ERROR');
    assert.equal(out.error.sqlstate, '42501');
    assert.equal(out.error.side, 'target');
  });
});
