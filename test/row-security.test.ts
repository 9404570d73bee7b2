/**
 * Row-level security and other ways a role can see less than a table holds, against real
 * servers (a 15 source, a 17 target). A policy shows the migration role `mig` a quarter of
 * the 1,000 rows of public.secrets: pgconvoy must refuse to copy or verify through it,
 * naming the table and the fix, and copy everything through a role that bypasses it.
 */
import { after, before, describe, test } from 'node:test';
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

const PW = 'pw';
// Roles are cluster-wide: named per process so that reruns on a kept server do not collide.
const MIG = uniqueName('mig');
const BYPASS = uniqueName('mig_bypass');
const OWNER = uniqueName('mig_owner');

const roles = `
CREATE ROLE ${MIG} LOGIN PASSWORD '${PW}';
CREATE ROLE ${BYPASS} LOGIN BYPASSRLS PASSWORD '${PW}';
CREATE ROLE ${OWNER} LOGIN PASSWORD '${PW}';`;

// secrets: RLS enabled, a policy showing mig a quarter of the rows; plain: no RLS.
// ledgered: FORCEd RLS on a table its owner reads (the owner is filtered too).
const FIXTURE = `
CREATE TABLE public.secrets (id integer PRIMARY KEY, v text NOT NULL);
INSERT INTO public.secrets SELECT g, 'secret ' || g FROM generate_series(1, 1000) g;
ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY quarter ON public.secrets FOR SELECT TO ${MIG} USING (id % 4 = 0);
CREATE TABLE public.plain (id integer PRIMARY KEY, v text);
INSERT INTO public.plain SELECT g, 'plain ' || g FROM generate_series(1, 100) g;
GRANT SELECT ON public.secrets, public.plain TO ${MIG}, ${BYPASS};
`;

const FORCED_FIXTURE = `
CREATE TABLE public.ledgered (id integer PRIMARY KEY, v text NOT NULL);
INSERT INTO public.ledgered SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
ALTER TABLE public.ledgered OWNER TO ${OWNER};
ALTER TABLE public.ledgered ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ledgered FORCE ROW LEVEL SECURITY;
CREATE POLICY quarter ON public.ledgered FOR SELECT USING (id % 4 = 0);
`;

let source: LocalServer;
let target: LocalServer;
const template = uniqueName('rls_tpl');
before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  // The policies name the roles: they must exist on the target for the schema to apply.
  await Promise.all([source.sql(roles), target.sql(roles)]);
  await createDatabase(source, template);
  await source.sql(FIXTURE, template);
});
after(async () => Promise.all([source?.destroy(), target?.destroy()]));

const count = async (server: LocalServer, db: string, table: string) =>
  Number((await server.sql<{ n: string }>(`SELECT count(*) AS n FROM ${table}`, db))[0]!.n);

function clone(sourceUrl: string, targetUrl: string, ...extra: string[]) {
  return runCli([
    'clone',
    '--source',
    sourceUrl,
    '--target',
    targetUrl,
    '--create-database',
    '--no-owner',
    '--no-privileges',
    '--run-dir',
    tempDir(),
    ...extra,
  ]);
}

const ROW_SECURITY_HINT =
  /superuser or a role with BYPASSRLS .*or as the table's owner when its row security is not FORCEd/;

describe('row-level security on the source', () => {
  test('clone through a role a policy filters fails naming the table and the fix; nothing is marked done for it', async () => {
    const db = await createDatabase(source, uniqueName('rls'), template);
    const res = await clone(source.url(db, MIG, PW), target.url(db), '--jobs', '2');
    assert.equal(res.code, 4, res.stdout + res.stderr);
    assert.doesNotMatch(res.stdout, /clone complete/);
    assert.match(res.stderr, /row-level security on the source would hide rows of public\.secrets/);
    assert.match(res.stderr, ROW_SECURITY_HINT);
    const jobs = await target.sql<{ state: string; attempts: number }>(
      `SELECT state, attempts FROM pgconvoy.jobs WHERE table_schema = 'public' AND table_name = 'secrets'`,
      db,
    );
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]!.state, 'failed', 'never done');
    assert.equal(jobs[0]!.attempts, 1, 'not retried as a transient failure');
    assert.equal(await count(target, db, 'public.secrets'), 0, 'not a single filtered row landed');
  });

  test('through a BYPASSRLS role every row is copied and verify passes; verify through the filtering role fails', async () => {
    const db = await createDatabase(source, uniqueName('rls'), template);
    const res = await clone(source.url(db, BYPASS, PW), target.url(db));
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /clone complete/);
    assert.equal(await count(target, db, 'public.secrets'), 1000);
    assert.equal(await count(target, db, 'public.plain'), 100);

    const ok = await runCli(['verify', '--source', source.url(db, BYPASS, PW), '--target', target.url(db)]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);

    // The copy is complete; the filtering role must not report that it matches (or that it does not).
    const filtered = await runCli([
      'verify',
      '--source',
      source.url(db, MIG, PW),
      '--target',
      target.url(db),
    ]);
    assert.equal(filtered.code, 4, filtered.stdout + filtered.stderr);
    assert.doesNotMatch(filtered.stdout, /target matches source/);
    assert.match(filtered.stderr, /row-level security on the source would hide rows of public\.secrets/);
    assert.match(filtered.stderr, ROW_SECURITY_HINT);
  });

  test('FORCE ROW LEVEL SECURITY: the owner is filtered too, and clone fails the same way', async () => {
    const db = await createDatabase(source, uniqueName('rls_force'));
    await source.sql(FORCED_FIXTURE, db);
    const res = await clone(source.url(db, OWNER, PW), target.url(db));
    assert.equal(res.code, 4, res.stdout + res.stderr);
    assert.match(res.stderr, /row-level security on the source would hide rows of public\.ledgered/);
    assert.match(res.stderr, ROW_SECURITY_HINT);
    const done = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pgconvoy.jobs WHERE state = 'done'`,
      db,
    );
    assert.equal(done[0]!.n, '0');
    assert.equal(await count(target, db, 'public.ledgered'), 0);
  });
});
