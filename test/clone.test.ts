import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { copyRoles } from '../src/schema/roles.js';
import { serverUser } from '../src/sandbox/server-user.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { featureDatabaseSql } from './fixtures/feature-db.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  uniqueName,
  tempDir,
} from './helpers/servers.js';
import { assertSameData, catalogFacts, databaseFacts, userTables } from './helpers/compare.js';

const runDir = () => tempDir('pgconvoy-run-');

/** Every file under `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

for (const sourceMajor of [SYSTEM_MAJOR, OLD_MAJOR]) {
  describe(`clone ${sourceMajor} → ${NEW_MAJOR}`, () => {
    let source: LocalServer;
    let target: LocalServer;
    const template = uniqueName('feature_tpl');
    before(async () => {
      [source, target] = await Promise.all([startServer(sourceMajor), startServer(NEW_MAJOR)]);
      await createDatabase(source, template);
      await source.sql(featureDatabaseSql(1500), template);
    });
    after(async () => Promise.all([source?.destroy(), target?.destroy()]));

    test('every table, index, constraint, trigger, sequence, view and large object arrives', async () => {
      const db = await createDatabase(source, uniqueName('feature'), template);
      const res = await runCli([
        'clone',
        '--verify',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--create-database',
        '--jobs',
        '3',
        '--run-dir',
        runDir(),
      ]);
      assert.equal(res.code, 0, res.stderr + res.stdout);
      assert.match(res.stdout, /clone complete/);
      assert.match(res.stdout, /verify: the target equals the source/);
      await assertSameData(source, db, target, db);
      const [s, t] = await Promise.all([catalogFacts(source, db), catalogFacts(target, db)]);
      assert.deepEqual(t, s);
      assert.equal(t.indexes_valid, true);
      assert.ok((t.triggers as string[]).includes('orders_count:O'), 'trigger present and enabled');
      assert.ok(
        (t.matviews as string[]).includes('sales.revenue_by_status:true'),
        'materialized view populated',
      );
      assert.ok((t.sequences as string[]).includes('public.invoice_no=424242'));
      // The trigger did not fire during the load: the audit log is the source's, not doubled.
      const audit = await target.sql<{ n: string }>('SELECT count(*) AS n FROM sales.order_audit', db);
      assert.equal(audit[0]!.n, '3000');
      // Function bodies are intact (a peer dropped every statement containing "GRANT ").
      const fn = await target.sql<{ src: string }>(
        `SELECT prosrc AS src FROM pg_proc WHERE proname = 'count_order'`,
        db,
      );
      assert.match(fn[0]!.src, /GRANT ALL ON nothing/);
      // Binary COPY where safe (enums, built-ins), text where the binary form carries OIDs (composites).
      const formats = await target.sql<{ t: string; f: string }>(
        `SELECT table_name AS t, copy_format AS f FROM pgconvoy.jobs`,
        db,
      );
      const format = new Map(formats.map((r) => [r.t, r.f]));
      assert.equal(format.get('orders'), 'binary');
      assert.equal(format.get('customers'), 'text');
      assert.equal(format.get('Order Items'), 'binary');
      // Running the same command again changes nothing.
      const again = await runCli([
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--run-dir',
        runDir(),
      ]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /10 already done/);
      await assertSameData(source, db, target, db);
    });

    test('--create-database creates the database as pg_dump --create would; another collation is named', async () => {
      const db = uniqueName('created');
      const [owner, reader, ghost] = [uniqueName('owner'), uniqueName('reader'), uniqueName('ghost')];
      await source.sql(`CREATE ROLE ${owner}; CREATE ROLE ${reader}; CREATE ROLE ${ghost}`);
      await target.sql(`CREATE ROLE ${owner}; CREATE ROLE ${reader}`);
      // 15+: ICU; 13: a collation that differs from its ctype.
      const locale =
        sourceMajor >= 15
          ? `LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C.UTF-8'`
          : `LC_COLLATE 'C.UTF-8' LC_CTYPE 'C'`;
      await source.sql(
        `CREATE DATABASE ${db} TEMPLATE template0 ENCODING 'UTF8' ${locale} OWNER ${owner} CONNECTION LIMIT 40`,
      );
      await source.sql(
        `COMMENT ON DATABASE ${db} IS 'the shop''s data';
         ALTER DATABASE ${db} SET work_mem = '8MB';
         ALTER DATABASE ${db} SET search_path = "$user", app, "Odd Schema";
         ALTER ROLE ${reader} IN DATABASE ${db} SET statement_timeout = '5s';
         REVOKE ALL ON DATABASE ${db} FROM PUBLIC;
         GRANT CONNECT ON DATABASE ${db} TO ${reader} WITH GRANT OPTION;
         GRANT TEMPORARY ON DATABASE ${db} TO ${ghost};`,
      );
      await source.sql(
        `CREATE TABLE public.words (w text PRIMARY KEY); INSERT INTO public.words VALUES ('a'), ('B'), ('ä'), ('z')`,
        db,
      );
      const res = await runCli([
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--create-database',
        '--run-dir',
        runDir(),
      ]);
      assert.equal(res.code, 0, res.stderr + res.stdout);
      const [s, t] = await Promise.all([
        databaseFacts(source, sourceMajor, db),
        databaseFacts(target, NEW_MAJOR, db),
      ]);
      assert.equal(t.connection_limit, 40);
      assert.ok((t.settings as string[]).includes(`${reader}:statement_timeout=5s`), String(t.settings));
      // Everything but the grant to a role the target lacks, which is named instead.
      assert.deepEqual(t, { ...s, acl: (s.acl as string[]).filter((a) => !a.startsWith(`${ghost}:`)) });
      assert.match(
        res.stderr + res.stdout,
        new RegExp(`GRANT TEMPORARY ON DATABASE "${db}" TO "${ghost}" left out`),
      );
      await assertSameData(source, db, target, db);

      // A target database that sorts otherwise is named by precheck and clone, with why it matters.
      const other = uniqueName('other');
      await target.sql(`CREATE DATABASE ${other} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'`);
      const precheck = await runCli(['precheck', '--source', source.url(db), '--target', target.url(other)]);
      assert.match(precheck.stdout, /collation[^\n]*text sorts differently[^\n]*unique index/);
      const mismatched = await runCli([
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(other),
        '--run-dir',
        runDir(),
      ]);
      assert.equal(mismatched.code, 0, mismatched.stderr + mismatched.stdout);
      assert.match(
        mismatched.stderr,
        /warning: the target database "[^"]+" is UTF8, libc C, the source "[^"]+" is UTF8, [^\n]*unique index/,
      );
    });
  });
}

describe('clone --roles', () => {
  let source: LocalServer;
  let target: LocalServer;
  before(async () => {
    [source, target] = await Promise.all([startServer(OLD_MAJOR), startServer(NEW_MAJOR)]);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  const roleFacts = (server: LocalServer, names: string[]) =>
    server.sql(
      `SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
              rolconnlimit, rolvaliduntil, rolpassword, shobj_description(oid, 'pg_authid') AS comment,
              (SELECT setconfig FROM pg_db_role_setting WHERE setrole = a.oid AND setdatabase = 0) AS settings,
              ARRAY(SELECT g.rolname || ':' || m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                    WHERE m.member = a.oid ORDER BY 1) AS member_of
       FROM pg_authid a WHERE rolname = ANY($1) ORDER BY rolname`,
      'postgres',
      [names],
    );

  test('missing roles stop clone up front with the command; --roles copies them, passwords only when asked', async () => {
    const db = uniqueName('roles');
    const role = (what: string) => uniqueName(`r_${what}`);
    const [owner, reader, group, policyRole, kept, unrelated] = [
      role('owner'),
      role('reader'),
      role('group'),
      role('policy'),
      role('kept'),
      role('unrelated'),
    ];
    const secret = 'Sup3r-secret-pw';
    await source.sql(
      `CREATE ROLE ${group} NOLOGIN;
       CREATE ROLE ${owner} LOGIN CREATEDB CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00' PASSWORD '${secret}';
       CREATE ROLE ${reader} LOGIN NOINHERIT IN ROLE ${group} PASSWORD 'other-pw';
       CREATE ROLE ${policyRole} SUPERUSER REPLICATION BYPASSRLS;
       CREATE ROLE ${kept} LOGIN;
       CREATE ROLE ${unrelated};
       COMMENT ON ROLE ${owner} IS 'owns the shop';
       ALTER ROLE ${owner} SET search_path = "$user", sales;
       GRANT ${group} TO ${owner} WITH ADMIN OPTION;`,
    );
    await source.sql(`CREATE DATABASE ${db} OWNER ${owner}`);
    await source.sql(
      `CREATE TABLE public.items (id int PRIMARY KEY, owner_name text);
       INSERT INTO public.items SELECT g, 'x' FROM generate_series(1, 50) g;
       ALTER TABLE public.items OWNER TO ${owner};
       GRANT SELECT ON public.items TO ${group};
       GRANT UPDATE ON public.items TO ${kept};
       ALTER TABLE public.items ENABLE ROW LEVEL SECURITY;
       CREATE POLICY p ON public.items TO ${policyRole} USING (true);`,
      db,
    );
    // A role the target has already, with other attributes: left as it is.
    await target.sql(`CREATE ROLE ${kept} NOLOGIN CREATEDB`);
    const args = ['clone', '--source', source.url(db), '--target', target.url(db), '--create-database'];

    const refused = await runCli([...args, '--run-dir', runDir()]);
    assert.equal(refused.code, 5, refused.stderr + refused.stdout);
    for (const r of [owner, group, policyRole]) assert.match(refused.stderr, new RegExp(r));
    assert.doesNotMatch(refused.stderr, new RegExp(`${kept}|${unrelated}`));
    assert.match(refused.stderr, /--roles/);
    assert.match(refused.stderr, new RegExp(`CREATE ROLE "${owner}";`));
    const none = await target.sql('SELECT 1 FROM pg_database WHERE datname = $1', 'postgres', [db]);
    assert.equal(none.length, 0, 'nothing written before the refusal');

    const dir = runDir();
    const res = await runCli([...args, '--roles', '--role-passwords', '--run-dir', dir]);
    assert.equal(res.code, 0, res.stderr + res.stdout);
    assert.match(res.stderr + res.stdout, new RegExp(`left as they are: "${kept}"`));
    // Referred to by an owner, a grant, a policy; not reader, which only belongs to a group.
    const copied = [owner, group, policyRole];
    assert.deepEqual(await roleFacts(target, copied), await roleFacts(source, copied));
    assert.deepEqual(
      (await roleFacts(target, [kept])).map((r) => [r.rolcanlogin, r.rolcreatedb]),
      [[false, true]],
    );
    assert.equal(
      (await roleFacts(target, [unrelated, reader])).length,
      0,
      'a role nothing refers to is not copied',
    );
    const hash = (await roleFacts(source, [owner]))[0]!.rolpassword as string;
    for (const text of [res.stdout, res.stderr, ...filesUnder(dir).map((f) => readFileSync(f, 'utf8'))]) {
      assert.ok(!text.includes(hash) && !text.includes(secret), 'no password anywhere pgconvoy writes');
    }
    const [owners] = await target.sql<{ t: string; d: string }>(
      `SELECT (SELECT tableowner FROM pg_tables WHERE tablename = 'items') AS t,
              (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()) AS d`,
      db,
    );
    assert.deepEqual(owners, { t: owner, d: owner });
    await assertSameData(source, db, target, db);
  });

  test('a target role that is not a superuser: SUPERUSER, REPLICATION and BYPASSRLS are left out with a warning', async () => {
    const [admin, mighty] = [uniqueName('r_admin'), uniqueName('r_mighty')];
    await source.sql(`CREATE ROLE ${mighty} LOGIN SUPERUSER REPLICATION BYPASSRLS CREATEDB`);
    await target.sql(`CREATE ROLE ${admin} LOGIN CREATEROLE CREATEDB PASSWORD 'adminpw'`);
    const src = new pg.Client({ connectionString: source.url() });
    const tgt = new pg.Client({ connectionString: target.url('postgres', admin, 'adminpw') });
    await Promise.all([src.connect(), tgt.connect()]);
    const warnings: string[] = [];
    try {
      await copyRoles(src, tgt, {
        roles: [mighty],
        passwords: false,
        onWarning: (m) => warnings.push(m),
        onInfo: () => undefined,
      });
    } finally {
      await Promise.all([src.end(), tgt.end()]);
    }
    const [r] = await roleFacts(target, [mighty]);
    assert.deepEqual(
      [r!.rolsuper, r!.rolreplication, r!.rolbypassrls, r!.rolcreatedb, r!.rolcanlogin],
      [false, false, false, true, true],
    );
    assert.match(warnings.join('\n'), new RegExp(`"${mighty}": SUPERUSER, REPLICATION, BYPASSRLS left out`));
  });
});

describe('clone: interruption and bad input', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('kill_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    await source.sql(featureDatabaseSql(1000), template);
    // Enough rows that the copy is still going when it is killed.
    await source.sql(
      `CREATE TABLE public.big (id bigint PRIMARY KEY, payload text);
       INSERT INTO public.big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 300000) g;
       CREATE TABLE public.big2 (id bigint PRIMARY KEY, payload text);
       INSERT INTO public.big2 SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g;
       ANALYZE;`,
      template,
    );
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('killed with SIGKILL in the data phase: the same command finishes, no duplicate rows', async () => {
    const db = await createDatabase(source, uniqueName('kill'), template);
    const dir = runDir();
    const args = [
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--jobs',
      '1',
      '--run-dir',
      dir,
    ];
    let started = 0;
    const first = await runCli(args, {
      onSpawn: (child) => {
        child.stderr!.on('data', (d: Buffer) => {
          started += (d.toString().match(/ started /g) ?? []).length;
          if (started >= 2) child.kill('SIGKILL');
        });
      },
    });
    assert.equal(first.signal, 'SIGKILL');
    const ledger = await target.sql<{ state: string; n: string }>(
      `SELECT state, count(*) AS n FROM pgconvoy.jobs GROUP BY state ORDER BY state`,
      db,
    );
    const states = Object.fromEntries(ledger.map((r) => [r.state, Number(r.n)]));
    assert.ok(
      (states.done ?? 0) >= 1 && (states.pending ?? 0) >= 1,
      `killed mid-copy: ${JSON.stringify(states)}`,
    );
    // Nothing half-copied is visible: every table without a done job is empty.
    const second = await runCli(args);
    assert.equal(second.code, 0, second.stderr);
    await assertSameData(source, db, target, db);
    const dup = await target.sql<{ n: string }>(
      'SELECT count(*) - count(DISTINCT id) AS n FROM public.big',
      db,
    );
    assert.equal(dup[0]!.n, '0');
    // The jobs of the first run were read in another snapshot: the summary says so.
    assert.match(
      second.stdout + second.stderr,
      new RegExp(
        `${states.done} job\\(s\\) were copied by an earlier run from another snapshot[^\\n]*--verify`,
      ),
    );
  });

  test('a tablespace the target lacks stops clone up front; --tablespace-map and --no-tablespaces', async () => {
    const [fast, other] = [uniqueName('ts_fast'), uniqueName('ts_other')];
    const place = async (server: LocalServer, name: string) => {
      const dir = path.join(server.dir, name);
      mkdirSync(dir);
      const user = serverUser();
      if (user) chownSync(dir, user.uid, user.gid);
      await server.sql(`CREATE TABLESPACE ${name} LOCATION '${dir}'`);
    };
    await place(source, fast);
    await place(target, other);
    const db = await createDatabase(source, uniqueName('spaces'));
    await source.sql(
      `CREATE TABLE public.placed (id int PRIMARY KEY USING INDEX TABLESPACE ${fast}, v text) TABLESPACE ${fast};
       CREATE INDEX placed_v ON public.placed (v) TABLESPACE ${fast};
       INSERT INTO public.placed SELECT g, 'v' || g FROM generate_series(1, 100) g;`,
      db,
    );
    const clone = (tdb: string, ...more: string[]) =>
      runCli([
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(tdb),
        '--create-database',
        '--run-dir',
        runDir(),
        ...more,
      ]);
    const spaces = (tdb: string) =>
      target.sql<{ name: string; space: string | null }>(
        `SELECT c.relname AS name, t.spcname AS space FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
         WHERE c.relname IN ('placed', 'placed_pkey', 'placed_v') ORDER BY 1`,
        tdb,
      );

    const refused = await clone(db);
    assert.equal(refused.code, 5, refused.stderr + refused.stdout);
    assert.match(refused.stderr, new RegExp(`tablespace\\(s\\) the target does not have: "${fast}"`));
    assert.match(refused.stderr, /--tablespace-map .*--no-tablespaces/);
    const none = await target.sql('SELECT 1 FROM pg_database WHERE datname = $1', 'postgres', [db]);
    assert.equal(none.length, 0, 'nothing written before the refusal');

    const mapped = await clone(db, '--tablespace-map', `${fast}=${other}`);
    assert.equal(mapped.code, 0, mapped.stderr + mapped.stdout);
    assert.deepEqual(
      (await spaces(db)).map((r) => r.space),
      [other, other, other],
    );
    const flat = `${db}_flat`;
    const plain = await clone(flat, '--no-tablespaces');
    assert.equal(plain.code, 0, plain.stderr + plain.stdout);
    assert.deepEqual(
      (await spaces(flat)).map((r) => r.space),
      [null, null, null],
    );
    await assertSameData(source, db, target, flat);
  });

  test('an extension the target server lacks stops clone before anything is written, with what to install', async () => {
    const db = await createDatabase(source, uniqueName('ext_missing'));
    // adminpack is in PostgreSQL 15's contrib and was removed in 17.
    await source.sql('CREATE EXTENSION adminpack; CREATE TABLE public.t (id int PRIMARY KEY)', db);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5, res.stderr + res.stdout);
    assert.match(res.stderr, /extension\(s\) the target server does not have: adminpack 2\.[0-9]+/);
    assert.match(res.stderr, /adminpack was removed in PostgreSQL 17: drop it from the source/);
    const none = await target.sql('SELECT 1 FROM pg_database WHERE datname = $1', 'postgres', [db]);
    assert.equal(none.length, 0, 'nothing written before the refusal');
  });

  test('schema and data come from one snapshot: a constraint dropped and violated after the dump is not in the copy', async () => {
    const db = await createDatabase(source, uniqueName('one_instant'));
    await source.sql(
      `CREATE TABLE public.checked (id int PRIMARY KEY, v int CONSTRAINT v_positive CHECK (v > 0));
       INSERT INTO public.checked SELECT g, g FROM generate_series(1, 100) g;`,
      db,
    );
    let changed: Promise<unknown> | undefined;
    const res = await runCli(
      [
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--create-database',
        '--run-dir',
        runDir(),
      ],
      {
        onSpawn: (child) => {
          child.stderr!.on('data', (d: Buffer) => {
            // pg_dump is done: the source changes before the data is read.
            if (!changed && d.toString().includes('phase schema: started'))
              changed = source.sql(
                `ALTER TABLE public.checked DROP CONSTRAINT v_positive; INSERT INTO public.checked VALUES (1000, -1)`,
                db,
              );
          });
        },
      },
    );
    await changed;
    assert.ok(changed, 'the source changed during the clone');
    assert.equal(res.code, 0, res.stderr + res.stdout);
    const [t] = await target.sql<{ n: number; bad: number; c: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE v <= 0)::int AS bad,
              (SELECT count(*)::int FROM pg_constraint WHERE conname = 'v_positive') AS c
       FROM public.checked`,
      db,
    );
    assert.deepEqual(t, { n: 100, bad: 0, c: 1 }, 'the rows and the constraint of the same instant');
  });

  test('Ctrl-C (SIGINT) stops the copy at once: exit 130, the resume hint, the job left pending', async () => {
    const db = await createDatabase(source, uniqueName('sigint'), template);
    const args = [
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--jobs',
      '1',
      '--run-dir',
      runDir(),
    ];
    const res = await runCli(args, {
      onSpawn: (child) =>
        child.stderr!.on('data', (d: Buffer) => {
          if (/ started public\.big/.test(d.toString())) child.kill('SIGINT');
        }),
    });
    assert.equal(res.code, 130, res.stderr);
    assert.match(res.stderr, /pgconvoy: error: interrupted\n\s+hint: run the same command again to resume/);
    const big = await target.sql<{ state: string }>(
      `SELECT state FROM pgconvoy.jobs WHERE table_name = 'big'`,
      db,
    );
    assert.equal(big[0]!.state, 'pending');
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr);
    await assertSameData(source, db, target, db);
  });

  test('the target server restarts in the middle of the copy: the run recovers by itself', async () => {
    const db = await createDatabase(source, uniqueName('restart'), template);
    let restarted: Promise<void> | undefined;
    const res = await runCli(
      [
        'clone',
        '--source',
        source.url(db),
        '--target',
        target.url(db),
        '--create-database',
        '--jobs',
        '2',
        '--run-dir',
        runDir(),
      ],
      {
        onSpawn: (child) =>
          child.stderr!.on('data', (d: Buffer) => {
            if (!restarted && / started public\.big/.test(d.toString())) restarted = target.restart('fast');
          }),
      },
    );
    await restarted;
    assert.ok(restarted, 'the target was restarted during the copy');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /transient failure/);
    await assertSameData(source, db, target, db);
  });

  test('a target table holding rows pgconvoy did not put there is refused; nothing counted as done', async () => {
    const db = await createDatabase(source, uniqueName('occupied'), template);
    // The target has the schema (from an earlier clone, ledger dropped) and one table holds a row of its own.
    const first = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(first.code, 0, first.stderr);
    const tables = await userTables(target, db);
    await target.sql(
      `DROP SCHEMA pgconvoy CASCADE; TRUNCATE ${tables.join(', ')} CASCADE; INSERT INTO public."MixedCase" VALUES (999, 'theirs');`,
      db,
    );
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--schema',
      'skip',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5, res.stderr);
    assert.match(
      res.stderr,
      /the target already has rows that pgconvoy did not copy, in 1 table\(s\): public\."MixedCase"/,
    );
    assert.match(res.stderr, /hint: .*--existing-rows truncate/);
    const done = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pgconvoy.jobs WHERE state = 'done'`,
      db,
    );
    assert.equal(done[0]!.n, '0');
  });

  test('a schema error stops the run with the statement and the server message; nothing half-applied', async () => {
    const db = await createDatabase(source, uniqueName('conflict'), template);
    await createDatabase(target, db);
    await target.sql('CREATE SCHEMA sales', db);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5, res.stderr);
    assert.match(
      res.stderr,
      /applying the schema \(pre-data\) to the target .* failed: schema "sales" already exists/,
    );
    assert.match(res.stderr, /statement: CREATE SCHEMA sales;/);
    const left = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'Audit Log') AND c.relkind = 'r'`,
      db,
    );
    assert.equal(left[0]!.n, '0', 'no table of the schema was created');
    const steps = await target.sql<{ n: string }>(`SELECT count(*) AS n FROM pgconvoy.steps`, db);
    assert.equal(steps[0]!.n, '0');
  });

  test('different column types on the target (int4 → int8, timestamp → timestamptz) use text COPY and keep every value', async () => {
    const db = await createDatabase(source, uniqueName('types'));
    await source.sql(
      `CREATE TABLE public.t (a integer, ts timestamp, n numeric); INSERT INTO public.t SELECT g, timestamp '2024-03-01 12:34:56.789' + g * interval '1 hour', g / 3.0 FROM generate_series(1, 500) g;`,
      db,
    );
    await createDatabase(target, db);
    await target.sql(`CREATE TABLE public.t (a bigint, ts timestamptz, n numeric)`, db);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--schema',
      'skip',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(
      res.stderr,
      /public\.t: text COPY \(column "a" is integer on the source and bigint on the target\)/,
    );
    // Both servers run in UTC, so a timestamp read as timestamptz keeps its wall-clock value.
    const q = `SET TimeZone = 'UTC'; SELECT count(*) AS n, md5(string_agg(a::text || to_char(ts, 'YYYY-MM-DD HH24:MI:SS.MS') || n::text, ',' ORDER BY a)) AS h FROM public.t`;
    const [a, b] = await Promise.all([
      source.sql<{ n: string; h: string }>(q, db),
      target.sql<{ n: string; h: string }>(q, db),
    ]);
    assert.equal(b[0]!.n, '500');
    assert.deepEqual(b[0], a[0]);
  });

  test('an unreachable target: a one-line error with a hint, exit 5', async () => {
    const res = await runCli([
      'clone',
      '--source',
      source.url(template),
      '--target',
      'postgresql://u:secret@127.0.0.1:1/x',
      '--run-dir',
      runDir(),
    ]);
    assert.equal(res.code, 5);
    assert.match(res.stderr, /cannot connect to the target u@127\.0\.0\.1:1\/x: connection refused/);
    assert.doesNotMatch(res.stderr + res.stdout, /secret/);
  });

  test('no pg_dump new enough for the source: a clear error naming the majors', async () => {
    const newer = await startServer(NEW_MAJOR);
    try {
      const res = await runCli([
        'clone',
        '--source',
        newer.url(),
        '--target',
        target.url(uniqueName('x')),
        '--create-database',
        '--run-dir',
        runDir(),
      ]);
      assert.equal(res.code, 3, res.stderr);
      assert.match(res.stderr, /pg_dump/);
      assert.match(res.stderr, /17/);
      assert.match(res.stderr, /hint: .*--pg-bin/);
    } finally {
      await newer.destroy();
    }
  });

  test('--dry-run prints the plan and touches nothing', async () => {
    const db = await createDatabase(source, uniqueName('dry'), template);
    const res = await runCli(['clone', '--source', source.url(db), '--target', target.url(db), '--dry-run']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /dry run: .*nothing will be touched/);
    const lines = res.stdout.split('\n');
    const first = lines.findIndex((l) => /^\s+1\s+public\.big\s/.test(l));
    assert.ok(first > 0, 'largest table first');
    const exists = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_database WHERE datname = $1`,
      'postgres',
      [db],
    );
    assert.equal(exists[0]!.n, '0');
  });
});
