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

interface PrecheckRow {
  id: string;
  status: string;
  detail: string;
  hint?: string;
  items?: string[];
}

async function precheckRows(sourceUrl: string, targetUrl: string): Promise<Map<string, PrecheckRow>> {
  const res = await runCli([
    'precheck',
    '--source',
    sourceUrl,
    '--target',
    targetUrl,
    '--no-reachability',
    '--json',
  ]);
  assert.ok(res.code === 0 || res.code === 7, res.stdout + res.stderr);
  const report = JSON.parse(res.stdout) as { rows: PrecheckRow[] };
  return new Map(report.rows.map((r) => [r.id, r]));
}

describe('precheck and clone --dry-run list row-level security before anything is written', () => {
  let db: string;
  before(async () => {
    db = await createDatabase(source, uniqueName('rls_list'), template);
    await source.sql(FORCED_FIXTURE, db);
    await createDatabase(target, db);
  });

  test('precheck: both tables, FORCE, and whether the source role bypasses them', async () => {
    const filtered = await precheckRows(source.url(db, MIG, PW), target.url(db));
    const rls = filtered.get('source.row_security');
    assert.equal(rls?.status, 'fail');
    assert.match(
      rls.detail,
      new RegExp(`row-level security would hide rows of 2 table\\(s\\) from the source role "${MIG}"`),
    );
    assert.match(rls.hint ?? '', ROW_SECURITY_HINT);
    assert.deepEqual(rls.items, [
      `public.ledgered (FORCE): filtered: "${MIG}" is not its owner "${OWNER}", not a superuser, no BYPASSRLS (1 policy)`,
      `public.secrets: filtered: "${MIG}" is not its owner "postgres", not a superuser, no BYPASSRLS (1 policy)`,
    ]);
    // mig was never granted SELECT on ledgered: a failure of its own.
    assert.equal(filtered.get('source.select_rights')?.status, 'fail');
    assert.deepEqual(filtered.get('source.select_rights')?.items, ['public.ledgered']);

    const owner = await precheckRows(source.url(db, OWNER, PW), target.url(db));
    assert.equal(owner.get('source.row_security')?.status, 'fail');
    assert.match(
      owner.get('source.row_security')?.items?.[0] ?? '',
      new RegExp(`^public\\.ledgered \\(FORCE\\): filtered: "${OWNER}" owns it but it is FORCEd`),
    );

    const bypass = await precheckRows(source.url(db, BYPASS, PW), target.url(db));
    const ok = bypass.get('source.row_security');
    assert.equal(ok?.status, 'info');
    assert.deepEqual(ok.items, [
      `public.ledgered (FORCE): bypassed: "${BYPASS}" has BYPASSRLS`,
      `public.secrets: bypassed: "${BYPASS}" has BYPASSRLS`,
    ]);
    assert.equal(bypass.get('target.row_security')?.status, 'pass');
  });

  test('clone --dry-run prints the tables and the problem, exits 7, and touches nothing', async () => {
    const fresh = uniqueName('rls_dry');
    const res = await runCli([
      'clone',
      '--dry-run',
      '--source',
      source.url(db, MIG, PW),
      '--target',
      target.url(fresh),
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(res.code, 7, res.stdout + res.stderr);
    assert.match(res.stdout, /^ {2}row-level security on the source:$/m);
    assert.match(res.stdout, /^ {4}- public\.secrets: filtered: /m);
    assert.match(
      res.stdout,
      new RegExp(
        `^ {2}problem: row-level security would hide rows of 2 table\\(s\\) from the source role "${MIG}"`,
        'm',
      ),
    );
    assert.match(res.stdout, /^ {2}problem: the source role .* may not read 1 table\(s\)$/m);
    assert.match(res.stdout, ROW_SECURITY_HINT);
    const exists = await target.sql(`SELECT 1 FROM pg_database WHERE datname = $1`, 'postgres', [fresh]);
    assert.equal(exists.length, 0, 'no target database was created');
  });
});

describe('row-level security on the target', () => {
  test('a target role a policy applies to: one message naming the table before any job is planned', async () => {
    const db = await createDatabase(source, uniqueName('rls_target'), template);
    await createDatabase(target, db);
    // The target tables exist already (--schema skip), owned by the superuser, RLS on one.
    await target.sql(
      `CREATE TABLE public.secrets (id integer PRIMARY KEY, v text NOT NULL);
       CREATE TABLE public.plain (id integer PRIMARY KEY, v text);
       ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;
       CREATE POLICY anyone ON public.secrets USING (true);
       GRANT SELECT, INSERT, TRUNCATE ON public.secrets, public.plain TO ${MIG};
       GRANT CREATE ON DATABASE "${db}" TO ${MIG};`,
      db,
    );
    const res = await runCli([
      'clone',
      '--schema',
      'skip',
      '--source',
      source.url(db, BYPASS, PW),
      '--target',
      target.url(db, MIG, PW),
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(res.code, 5, res.stdout + res.stderr);
    assert.match(
      res.stderr,
      new RegExp(
        `row-level security on the target applies to the role "${MIG}" on 1 table\\(s\\), and COPY FROM refuses to load them: public\\.secrets\\n`,
      ),
    );
    assert.match(
      res.stderr,
      /hint: nothing was copied; connect to the target as a superuser or a role with BYPASSRLS/,
    );
    const jobs = await target.sql<{ n: string }>('SELECT count(*) AS n FROM pgconvoy.jobs', db);
    assert.equal(jobs[0]!.n, '0', 'no job was planned, none failed one by one');
  });
});

describe('tables the source role cannot read are errors, not skipped', () => {
  test('a partition and an inheritance child without SELECT (their parents granted): clone stops naming one', async () => {
    const db = await createDatabase(source, uniqueName('rls_children'));
    const schema = `
      CREATE TABLE public.measurements (d date NOT NULL, v integer) PARTITION BY RANGE (d);
      CREATE TABLE public.m_2024 PARTITION OF public.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE TABLE public.m_2025 PARTITION OF public.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE public.events (id integer, what text);
      CREATE TABLE public.events_archive () INHERITS (public.events);`;
    await source.sql(
      `${schema}
       INSERT INTO public.measurements SELECT date '2024-06-01' + g, g FROM generate_series(1, 400) g;
       INSERT INTO public.events SELECT g, 'live' FROM generate_series(1, 10) g;
       INSERT INTO public.events_archive SELECT g, 'old' FROM generate_series(11, 50) g;
       GRANT SELECT ON public.measurements, public.m_2024, public.events TO ${MIG};`,
      db,
    );
    // Through the parents alone the role sees every row: nothing hints that the children are closed to it.
    const seen = await source.sql<{ n: string }>(
      `SET ROLE ${MIG}; SELECT (SELECT count(*) FROM public.measurements) + (SELECT count(*) FROM public.events) AS n`,
      db,
    );
    assert.equal(seen[0]!.n, '450');

    const checks = await precheckRows(source.url(db, MIG, PW), target.url());
    assert.equal(checks.get('source.select_rights')?.status, 'fail');
    assert.deepEqual(checks.get('source.select_rights')?.items, ['public.events_archive', 'public.m_2025']);

    await createDatabase(target, db);
    await target.sql(schema, db);
    const res = await clone(source.url(db, MIG, PW), target.url(db), '--schema', 'skip', '--jobs', '1');
    assert.equal(res.code, 4, res.stdout + res.stderr);
    assert.match(
      res.stderr,
      /the source role may not read public\.(m_2025|events_archive) \(permission denied/,
    );
    assert.match(res.stderr, /hint: GRANT SELECT on those tables to the source role/);
    const done = await target.sql<{ t: string }>(
      `SELECT table_name AS t FROM pgconvoy.jobs WHERE state = 'done' ORDER BY 1`,
      db,
    );
    assert.ok(
      done.every((r) => r.t !== 'm_2025' && r.t !== 'events_archive'),
      `nothing marked done for the unreadable tables: ${done.map((r) => r.t).join(', ')}`,
    );
  });
});
