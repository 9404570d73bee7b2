/**
 * Migrating into a target whose layout the operator changed (issue 17), against real
 * servers (source 15 → target 17): a flat source table into a list-partitioned target table
 * of the same name, columns in another order with an extra column that has a default.
 * `clone --schema skip` routes every row to its partition, a row that fits no partition
 * fails its job with the key and the fix, and verify compares the layouts by content.
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

let source: LocalServer;
let target: LocalServer;

before(async () => {
  [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
});
after(async () => {
  await Promise.all([source?.destroy(), target?.destroy()]);
});

/** A flat events table on the source: 3000 rows over the regions eu, us and ap. */
const FLAT_SOURCE = `
CREATE TABLE public.events (id bigint PRIMARY KEY, region text NOT NULL, payload text, at timestamptz NOT NULL);
INSERT INTO public.events
  SELECT g, (ARRAY['eu', 'us', 'ap'])[g % 3 + 1], 'row ' || g, '2024-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 3000) g;
CREATE TABLE public.notes (id int PRIMARY KEY, body text);
INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;
ANALYZE;`;

/** The same table list-partitioned by region on the target (the key must hold the partition column). */
const PARTITIONED_TARGET = (regions: string[]) => `
CREATE TABLE public.events (id bigint NOT NULL, region text NOT NULL, payload text, at timestamptz NOT NULL,
                            PRIMARY KEY (id, region)) PARTITION BY LIST (region);
${regions.map((r) => `CREATE TABLE public.events_${r} PARTITION OF public.events FOR VALUES IN ('${r}');`).join('\n')}
CREATE INDEX events_at_idx ON public.events (at);
CREATE TABLE public.notes (id int PRIMARY KEY, body text);`;

async function pair(targetSchema: string): Promise<{ db: string; args: string[] }> {
  const db = uniqueName('reshape');
  await Promise.all([createDatabase(source, db), createDatabase(target, db)]);
  await source.sql(FLAT_SOURCE, db);
  await target.sql(targetSchema, db);
  return { db, args: ['--source', source.url(db), '--target', target.url(db)] };
}

const clone = (args: string[], ...more: string[]) =>
  runCli(['clone', ...args, '--schema', 'skip', '--run-dir', tempDir(), '--jobs', '2', ...more]);

describe('clone --schema skip into a partitioned target', () => {
  test('a flat table into a list-partitioned one: every row in its partition, chunks too, verify passes', async () => {
    const p = await pair(PARTITIONED_TARGET(['eu', 'us', 'ap']));
    // Chunks of a few rows each: several jobs load one partitioned table.
    const run = await clone(p.args, '--split-tables-larger-than', '100kB', '--chunk-size', '64kB');
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(run.stderr, /public\.events: \d+ chunks by key-range/);
    const counts = await target.sql<{ part: string; n: string; wrong: string }>(
      `SELECT tableoid::regclass::text AS part, count(*) AS n,
              count(*) FILTER (WHERE 'events_' || region <> tableoid::regclass::text) AS wrong
       FROM public.events GROUP BY 1 ORDER BY 1`,
      p.db,
    );
    assert.deepEqual(
      counts.map((c) => [c.part, Number(c.n), Number(c.wrong)]),
      [
        ['events_ap', 1000, 0],
        ['events_eu', 1000, 0],
        ['events_us', 1000, 0],
      ],
    );
    // The operator's index and key stay as they were made.
    const idx = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'events' AND indexname IN ('events_at_idx', 'events_pkey')`,
      p.db,
    );
    assert.equal(Number(idx[0]?.n), 2);
    const verify = await runCli(['verify', ...p.args, '--json']);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    const report = JSON.parse(verify.stdout) as { tables: { name: string; status: string; rows: unknown }[] };
    const events = report.tables.find((t) => t.name === 'events');
    assert.deepEqual([events?.status, events?.rows], ['match', { source: 3000, target: 3000 }]);
  });

  test('a row that fits no partition: refused before any row is loaded (clone and precheck), a default partition, then a rerun completes', async () => {
    const p = await pair(PARTITIONED_TARGET(['eu', 'us']));
    // With an index on the key, the source's values are read one probe each.
    await source.sql('CREATE INDEX events_region_idx ON public.events (region)', p.db);
    const run = await clone(p.args);
    assert.equal(run.code, 5, run.stderr + run.stdout);
    assert.match(
      run.stderr,
      /no partition of public\.events on the target accepts rows of the source, nothing was loaded: public\.events: partition key \(region\) = \(ap\)\n/,
    );
    assert.match(run.stderr, /CREATE TABLE … PARTITION OF public\.events DEFAULT/);
    // Before, not after, the rest: the other table is not loaded either.
    const notes = await target.sql<{ n: string }>('SELECT count(*) AS n FROM public.notes', p.db);
    assert.equal(Number(notes[0]?.n), 0);
    // The online precheck says the same (a target laid out for start --schema skip).
    const pre = await runCli(['precheck', ...p.args, '--no-reachability', '--json']);
    assert.equal(pre.code, 7, pre.stderr + pre.stdout);
    const rows = (JSON.parse(pre.stdout) as { rows: { id: string; status: string; items?: string[] }[] })
      .rows;
    assert.deepEqual(
      rows.filter((r) => r.id.startsWith('target.partition_bounds')).map((r) => [r.status, r.items]),
      [['fail', ['public.events: partition key (region) = (ap)']]],
    );
    await target.sql('CREATE TABLE public.events_other PARTITION OF public.events DEFAULT', p.db);
    const again = await clone(p.args);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    const ap = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM public.events_other WHERE region = 'ap'`,
      p.db,
    );
    assert.equal(Number(ap[0]?.n), 1000);
    const verify = await runCli(['verify', ...p.args]);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
  });

  test('range partitions: rows past the last one are refused up front; a row in a gap fails its load with the key', async () => {
    // Source rows run from 2024-01-01 00:01 to 2024-01-03 02:00 (UTC).
    const p = await pair(`
      CREATE TABLE public.events (id bigint NOT NULL, region text NOT NULL, payload text, at timestamptz NOT NULL,
                                  PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
      CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2024-01-02 00:00+00');
      CREATE TABLE public.events_3 PARTITION OF public.events FOR VALUES FROM ('2024-01-02 12:00+00') TO ('2024-01-03 00:00+00');
      CREATE TABLE public.notes (id int PRIMARY KEY, body text);`);
    await source.sql(`ALTER DATABASE ${p.db} SET TimeZone = 'UTC'`, p.db);
    const run = await clone(p.args);
    assert.equal(run.code, 5, run.stderr + run.stdout);
    assert.match(run.stderr, /public\.events: partition key \(at\) = \(2024-01-03 02:00:00\+00\)\n/);
    // The minimum and maximum fit now; the gap (Jan 2, 00:00 to 12:00) is found by the load.
    await target.sql(
      `CREATE TABLE public.events_4 PARTITION OF public.events FOR VALUES FROM ('2024-01-03 00:00+00') TO ('2024-02-01 00:00+00')`,
      p.db,
    );
    const gap = await clone(p.args);
    assert.equal(gap.code, 1, gap.stderr + gap.stdout);
    assert.match(
      gap.stdout + gap.stderr,
      /no partition of public\.events on the target accepts a row of the source: partition key \(at\) = \(2024-01-02 0/,
    );
    assert.doesNotMatch(gap.stdout + gap.stderr, /transient failure/);
  });
});

describe('clone --schema skip into a target with other columns', () => {
  test('columns in another order and one more with a default: matched by name, the default filled in, verify passes', async () => {
    const p = await pair(`
      CREATE TABLE public.events (source_note text DEFAULT 'migrated', at timestamptz NOT NULL, payload text,
                                  region text NOT NULL, id bigint PRIMARY KEY);
      CREATE TABLE public.notes (body text, id int PRIMARY KEY);`);
    const dry = await runCli(['clone', ...p.args, '--schema', 'skip', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr + dry.stdout);
    assert.match(dry.stdout, /public\.events: target column\(s\) source_note left to their defaults/);
    const run = await clone(p.args);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(run.stderr, /public\.events: target column\(s\) source_note left to their defaults/);
    const rows = await target.sql<{ n: string; wrong: string }>(
      `SELECT count(*) AS n, count(*) FILTER (WHERE source_note IS DISTINCT FROM 'migrated'
                                               OR payload IS DISTINCT FROM 'row ' || id) AS wrong
       FROM public.events`,
      p.db,
    );
    assert.deepEqual([Number(rows[0]?.n), Number(rows[0]?.wrong)], [3000, 0]);
    const verify = await runCli(['verify', ...p.args, '--json']);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    const report = JSON.parse(verify.stdout) as { schema: { object: string; severity: string }[] };
    assert.deepEqual(
      report.schema.map((d) => [d.object, d.severity]),
      [['public.events.source_note', 'note']],
    );
  });

  test('a source column the target lacks is refused before any row moves, unless --exclude-column; verify takes it too', async () => {
    const p = await pair(`
      CREATE TABLE public.events (id bigint PRIMARY KEY, region text NOT NULL, at timestamptz NOT NULL);
      CREATE TABLE public.notes (id int PRIMARY KEY, body text DEFAULT 'kept');`);
    const refused = await clone(p.args);
    assert.equal(refused.code, 5, refused.stderr + refused.stdout);
    assert.match(refused.stderr, /column "payload" of public\.events does not exist on the target/);
    assert.match(refused.stderr, /--exclude-column public\.events\.payload/);
    // notes.body is on both sides, but the target keeps its own default.
    const excluded = ['--exclude-column', 'public.events.payload', '--exclude-column', 'public.notes.body'];
    const run = await clone(p.args, ...excluded);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(run.stderr, /public\.events: source column\(s\) payload left behind \(--exclude-column\)/);
    const rows = await target.sql<{ n: string; kept: string }>(
      `SELECT (SELECT count(*) FROM public.events) AS n, (SELECT count(*) FROM public.notes WHERE body = 'kept') AS kept`,
      p.db,
    );
    assert.deepEqual([Number(rows[0]?.n), Number(rows[0]?.kept)], [3000, 50]);
    // Without the same flags, verify sees a column missing and 50 changed rows; with them, equal.
    const strict = await runCli(['verify', ...p.args, '--json']);
    assert.equal(strict.code, 6, strict.stderr + strict.stdout);
    const bad = JSON.parse(strict.stdout) as {
      tables: { name: string; status: string }[];
      schema: { object: string; severity: string }[];
    };
    assert.deepEqual(
      bad.schema.map((d) => [d.object, d.severity]),
      [
        ['public.events.payload', 'difference'],
        ['public.notes.body', 'difference'],
      ],
    );
    assert.equal(bad.tables.find((t) => t.name === 'notes')?.status, 'differ');
    const verify = await runCli(['verify', ...p.args, ...excluded, '--json']);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    const good = JSON.parse(verify.stdout) as {
      tables: { name: string; status: string; columns: string[] }[];
      schema: { object: string; severity: string }[];
    };
    assert.deepEqual(
      good.schema.map((d) => [d.object, d.severity]),
      [
        ['public.events.payload', 'note'],
        ['public.notes.body', 'note'],
      ],
    );
    assert.deepEqual(good.tables.map((t) => [t.name, t.status, t.columns]).sort(), [
      ['events', 'match', ['id', 'region', 'at']],
      ['notes', 'match', ['id']],
    ]);
  });
});

describe('start --schema skip into a partitioned target (online)', () => {
  test('inserts, updates, deletes and a TRUNCATE while replicating are routed into the partitions; cutover verifies equal', async () => {
    const p = await pair(PARTITIONED_TARGET(['eu', 'us', 'ap']));
    const startArgs = ['start', ...p.args, '--schema', 'skip', '--jobs', '2', '--run-dir', tempDir()];
    // The target's key (id, region) has a column the source's key (id) lacks: refused up front.
    const refused = await runCli(startArgs);
    assert.equal(refused.code, 7, refused.stderr + refused.stdout);
    assert.match(
      refused.stderr,
      /public\.events: the target finds rows by \(id, region\), the source sends \(id\)[^]*ALTER TABLE public\.events REPLICA IDENTITY FULL/,
    );
    await source.sql('ALTER TABLE public.events REPLICA IDENTITY FULL', p.db);
    const start = await runCli(startArgs);
    assert.equal(start.code, 0, start.stderr + start.stdout);
    await source.sql(
      `INSERT INTO public.events SELECT g, 'us', 'late ' || g, now() FROM generate_series(3001, 3100) g;
       UPDATE public.events SET region = 'ap', payload = 'moved' WHERE id BETWEEN 1 AND 30;
       DELETE FROM public.events WHERE id BETWEEN 100 AND 149;
       TRUNCATE public.notes;
       INSERT INTO public.notes VALUES (1, 'after truncate');`,
      p.db,
    );
    const cutover = await runCli(['cutover', ...p.args, '--json']);
    assert.equal(cutover.code, 0, cutover.stderr + target.logTail());
    const r = JSON.parse(cutover.stdout) as { verify: { ok: boolean } };
    assert.equal(r.verify.ok, true);
    const facts = `SELECT (SELECT count(*) FROM public.events)::int AS events,
                          (SELECT count(*) FROM public.events WHERE region = 'ap')::int AS ap,
                          (SELECT string_agg(body, ',') FROM public.notes) AS notes`;
    const [want] = await source.sql(facts, p.db);
    const [got] = await target.sql(facts, p.db);
    assert.deepEqual(got, want);
    assert.deepEqual(want, { events: 3050, ap: 1003, notes: 'after truncate' });
    // Updated rows changed partition on the target too.
    const moved = await target.sql<{ n: string }>(
      `SELECT count(*) AS n FROM public.events_ap WHERE payload = 'moved'`,
      p.db,
    );
    assert.equal(Number(moved[0]?.n), 30);
  });
});

/** A range-partitioned source table (two levels on one side) and the plain table it becomes on the target. */
const PARTITIONED_SOURCE = `
CREATE TABLE public.events (id bigserial, day date NOT NULL, payload text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE public.events_2023 PARTITION OF public.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
  PARTITION BY RANGE (day);
CREATE TABLE public.events_2024_h1 PARTITION OF public.events_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE public.events_2024_h2 PARTITION OF public.events_2024 FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
INSERT INTO public.events (day, payload) SELECT DATE '2023-01-01' + g % 700, 'e' || g FROM generate_series(1, 2000) g;
CREATE TABLE public.notes (id int PRIMARY KEY, body text);
INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;
ANALYZE;`;
const FLAT_TARGET = `
CREATE TABLE public.events (id bigserial, day date NOT NULL, payload text, PRIMARY KEY (id, day));
CREATE TABLE public.notes (id int PRIMARY KEY, body text);`;

async function mergedPair(): Promise<{ db: string; args: string[] }> {
  const db = uniqueName('merge');
  await Promise.all([createDatabase(source, db), createDatabase(target, db)]);
  await source.sql(PARTITIONED_SOURCE, db);
  await target.sql(FLAT_TARGET, db);
  return { db, args: ['--source', source.url(db), '--target', target.url(db)] };
}

/** The same facts read by plain SQL on both sides. */
const EVENT_FACTS = `SELECT count(*)::int AS n, md5(string_agg(id || ':' || day || ':' || coalesce(payload, ''), ',' ORDER BY id)) AS digest,
                            (SELECT last_value FROM public.events_id_seq)::int AS seq
                     FROM public.events`;

describe('a partitioned source table into a plain target table', () => {
  test('clone --schema skip: every partition (two levels) into the one table, a job each; verify passes', async () => {
    const p = await mergedPair();
    const run = await clone(p.args);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(
      run.stderr,
      /public\.events: 3 partition\(s\) of the source into one plain table on the target/,
    );
    const [want] = await source.sql(EVENT_FACTS, p.db);
    const [got] = await target.sql(EVENT_FACTS, p.db);
    assert.deepEqual(got, want);
    assert.equal((want as { n: number }).n, 2000);
    const verify = await runCli(['verify', ...p.args, '--json']);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
  });

  test('start --schema skip: published through the partitioned parent; changes in every partition, cutover with verify and sequences', async () => {
    const p = await mergedPair();
    const start = await runCli([
      'start',
      ...p.args,
      '--schema',
      'skip',
      '--jobs',
      '2',
      '--run-dir',
      tempDir(),
    ]);
    assert.equal(start.code, 0, start.stderr + start.stdout);
    assert.match(start.stderr, /public\.events: its partitions' changes are published as its own/);
    const pub = await source.sql<{ t: string; root: boolean }>(
      `SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY tablename) AS t,
              bool_and(p.pubviaroot) AS root
       FROM pg_publication_tables JOIN pg_publication p USING (pubname)`,
      p.db,
    );
    assert.deepEqual(pub[0], { t: 'public.events,public.notes', root: true });
    await source.sql(
      `INSERT INTO public.events (day, payload) SELECT DATE '2023-03-01' + g * 3, 'late ' || g FROM generate_series(1, 200) g;
       UPDATE public.events SET day = day + 365, payload = 'moved' WHERE id BETWEEN 1 AND 20 AND day < '2024-01-01';
       UPDATE public.events SET payload = 'edited' WHERE id BETWEEN 21 AND 60;
       DELETE FROM public.events WHERE id BETWEEN 100 AND 149;
       TRUNCATE public.notes;`,
      p.db,
    );
    const cutover = await runCli(['cutover', ...p.args, '--json']);
    assert.equal(cutover.code, 0, cutover.stderr + target.logTail());
    assert.equal((JSON.parse(cutover.stdout) as { verify: { ok: boolean } }).verify.ok, true);
    const [want] = await source.sql(EVENT_FACTS, p.db);
    const [got] = await target.sql(EVENT_FACTS, p.db);
    assert.deepEqual(got, want);
    assert.equal((want as { n: number; seq: number }).n, 2150);
    assert.equal((want as { n: number; seq: number }).seq, 2200);
    const notes = await target.sql<{ n: string }>('SELECT count(*) AS n FROM public.notes', p.db);
    assert.equal(Number(notes[0]?.n), 0);
  });
});
