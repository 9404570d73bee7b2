import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LocalServer } from '../src/sandbox/local-server.js';
import type pg from 'pg';
import { openClient } from '../src/connect/open-client.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { PgconvoyError } from '../src/errors.js';
import { readInventory, type Inventory } from '../src/inventory/inventory.js';
import { chunkCondition } from '../src/plan/chunk.js';
import { parseQueueFile } from '../src/plan/queue-file.js';
import { resolveQueueFile } from '../src/plan/queue-plan.js';
import {
  NEW_MAJOR,
  OLD_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
} from './helpers/servers.js';

const DATA = `
CREATE TABLE public.orders (id serial PRIMARY KEY, total numeric);
INSERT INTO public.orders (total) SELECT g FROM generate_series(1, 100) g;
CREATE TABLE public.items (id bigint PRIMARY KEY, label text);
INSERT INTO public.items SELECT g, 'low ' || g FROM generate_series(1, 50) g;
INSERT INTO public.items SELECT g, 'high ' || g FROM generate_series(49999990, 50000010) g;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text, country text);
INSERT INTO public.customers (name, country) VALUES ('O''Brien', 'US'), ('O''Brien', 'IE'), ('Smith', 'US'), ('x'' OR ''1''=''1', 'GB');
CREATE TABLE public."Order Items" (n integer);
INSERT INTO public."Order Items" VALUES (1), (2);
`;

test('parsing: quoted names, comments, and every syntax error with its line', () => {
  const { lines, errors } = parseQueueFile(`# comment

public."Order Items"
Public.Items|ID|I|1,10
public.items|id|X|5
public.items|id|I|5
public.items
`);
  assert.deepEqual(lines.slice(0, 2), [
    { lineNo: 3, schema: 'public', table: 'Order Items' },
    { lineNo: 4, schema: 'public', table: 'items', column: 'id', op: 'I', low: '1', high: '10' },
  ]);
  assert.deepEqual(
    errors.map((e) => e.lineNo),
    [5, 6],
  );
  assert.match(errors[0]!.message, /unknown operator "X": use I \(range\) or V \(value\)/);
});

describe('clone --queue-file', () => {
  let source: LocalServer;
  let target: LocalServer;
  const template = uniqueName('queue_tpl');
  before(async () => {
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
    await createDatabase(source, template);
    await source.sql(DATA, template);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  async function cloneWith(queue: string, extra: string[] = []) {
    const db = await createDatabase(source, uniqueName('queue'), template);
    const file = path.join(tempDir(), 'queue.txt');
    writeFileSync(file, queue);
    const res = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--create-database',
      '--queue-file',
      file,
      '--run-dir',
      tempDir(),
      ...extra,
    ]);
    return { res, db, file };
  }

  test("Flexy's own README example is refused: its ranges overlap at 50000000", async () => {
    const { res, db } = await cloneWith(
      'public.orders\npublic.items|id|I|1,50000000\npublic.items|id|I|50000000,\npublic.customers|country|V|US\n',
    );
    assert.equal(res.code, 3, res.stderr);
    assert.match(
      res.stderr,
      /queue\.txt:3: the range of line 3 overlaps the range of line 2 at 50000000 in public\.items\."id"/,
    );
    assert.match(res.stderr, /start line 3 at 50000001/);
    // Validated before anything runs: the target database was not even created.
    const exists = await target.sql<{ n: string }>(
      'SELECT count(*) AS n FROM pg_database WHERE datname = $1',
      'postgres',
      [db],
    );
    assert.equal(exists[0]!.n, '0');
  });

  test('the corrected ranges copy every row exactly once', async () => {
    const { res, db } = await cloneWith('public.items|id|I|1,49999999\npublic.items|id|I|50000000,\n');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /not in the queue file and stay empty/);
    const rows = await target.sql<{ n: string; d: string }>(
      'SELECT count(*) AS n, count(DISTINCT id) AS d FROM public.items',
      db,
    );
    assert.deepEqual(rows[0], { n: '71', d: '71' });
  });

  test('a V value holding a quote selects exactly its rows; one shaped like SQL selects none', async () => {
    const { res, db } = await cloneWith(
      "public.customers|name|V|O'Brien\npublic.customers|name|V|x' OR '1'='1\n",
      ['--allow-gaps'],
    );
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /--allow-gaps: public\.customers: rows whose name is none of the listed values/);
    const rows = await target.sql<{ name: string; country: string }>(
      'SELECT name, country FROM public.customers ORDER BY country',
      db,
    );
    assert.deepEqual(rows, [
      { name: "x' OR '1'='1", country: 'GB' },
      { name: "O'Brien", country: 'IE' },
      { name: "O'Brien", country: 'US' },
    ]);
  });

  test('unknown table, bad operator, non-numeric bound: all refused at once, each with its line', async () => {
    const { res } = await cloneWith(
      'public.nosuch\npublic.items|id|X|1,2\npublic.items|id|I|abc,10\npublic.orders\n',
    );
    assert.equal(res.code, 3);
    assert.match(res.stderr, /the queue file has 3 problem\(s\); nothing was copied/);
    assert.match(res.stderr, /queue\.txt:1: table public\.nosuch does not exist on the source/);
    assert.match(res.stderr, /queue\.txt:2: unknown operator "X"/);
    assert.match(res.stderr, /queue\.txt:3: "abc" is not a valid bigint for column "id" of public\.items/);
  });

  test('gaps are found before the run and refused, unless --allow-gaps', async () => {
    const queue = 'public.items|id|I|1,20\npublic.items|id|I|30,49999999\n';
    const refused = await cloneWith(queue);
    assert.equal(refused.res.code, 3);
    assert.match(
      refused.res.stderr,
      /rows with id between 20 and 30 \(exclusive, lines 1 and 2\) are in no line/,
    );
    assert.match(refused.res.stderr, /rows with id > 49999999 are in no line/);
    assert.match(refused.res.stderr, /hint: .*--allow-gaps/);
    const allowed = await cloneWith(queue, ['--allow-gaps']);
    assert.equal(allowed.res.code, 0, allowed.res.stderr);
    const rows = await target.sql<{ n: string }>('SELECT count(*) AS n FROM public.items', allowed.db);
    assert.equal(rows[0]!.n, '51'); // ids 1..20, 30..50 and 49999990..49999999
  });

  test('a table listed whole and by range is refused', async () => {
    const { res } = await cloneWith('public.items\npublic.items|id|I|1,\n');
    assert.equal(res.code, 3);
    assert.match(
      res.stderr,
      /queue\.txt:1: public\.items is listed whole here and again on line\(s\) 2: it would be copied twice/,
    );
  });
});

describe('queue file values compared in the column type (PostgreSQL 13)', () => {
  let server: LocalServer;
  let client: pg.Client;
  let inventory: Inventory;
  before(async () => {
    server = await startServer(OLD_MAJOR);
    const db = await createDatabase(server, uniqueName('queue_types'));
    await server.sql(
      `CREATE TABLE public.codes (code char(5), flags bit(3), n integer, big bigint);
       INSERT INTO public.codes VALUES ('abcde', '101', 1, 1), ('a', '100', 2147483647, 9223372036854775807),
                                       ('b', '001', 5, 5);
       CREATE TABLE public.people (name text);
       INSERT INTO public.people VALUES ('O''Brien'), ('O''Brien'), ('Smith');`,
      db,
    );
    client = await openClient(resolveConnection(server.url(db), 'source', {}), {
      applicationName: 'pgconvoy test queue',
    });
    inventory = await readInventory(client, 'pgconvoy');
  });
  after(async () => {
    await client?.end();
    await server?.destroy();
  });

  /** Rows each chunk of the plan selects, in line order. */
  async function rowsPerChunk(text: string): Promise<number[]> {
    const plan = await resolveQueueFile(text, 'q.txt', client, inventory, { allowGaps: true });
    const out: number[] = [];
    for (const t of plan.tables)
      for (const c of t.chunks) {
        const r = await client.query<{ n: string }>(
          `SELECT count(*) AS n FROM ONLY public.${t.table.name} WHERE ${chunkCondition(c) || 'true'}`,
        );
        out.push(Number(r.rows[0]!.n));
      }
    return out;
  }
  async function refusal(text: string): Promise<string> {
    const err = await resolveQueueFile(text, 'q.txt', client, inventory, { allowGaps: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PgconvoyError && err.code === 'BAD_QUEUE_FILE', String(err));
    return err.message;
  }

  test('char(n) and bit(n) values are not cut to one character (which selected the wrong rows)', async () => {
    const plan = await resolveQueueFile('public.codes|code|V|abcde\n', 'q.txt', client, inventory, {
      allowGaps: true,
    });
    const chunk = plan.tables[0]!.chunks[0]!;
    const rows = await client.query<{ code: string }>(
      `SELECT code FROM public.codes WHERE ${chunkCondition(chunk)}`,
    );
    assert.deepEqual(rows.rows, [{ code: 'abcde' }]);
    assert.deepEqual(await rowsPerChunk('public.codes|code|I|a,a\n'), [1]);
    assert.deepEqual(await rowsPerChunk('public.codes|flags|V|101\n'), [1]);
  });

  test('a V value holding a quote selects its rows; one shaped like SQL selects none', async () => {
    assert.deepEqual(
      await rowsPerChunk("public.people|name|V|O'Brien\npublic.people|name|V|x' OR '1'='1\n"),
      [2, 0],
    );
  });

  test("a range ending at the type's largest value is open-ended (high + 1 would overflow at copy time)", async () => {
    assert.deepEqual(await rowsPerChunk('public.codes|n|I|1,2147483647\n'), [3]);
    assert.deepEqual(await rowsPerChunk('public.codes|big|I|1,9223372036854775807\n'), [3]);
    assert.deepEqual(await rowsPerChunk('public.codes|n|I|1,4\npublic.codes|n|I|5,2147483647\n'), [1, 2]);
  });

  test('an inverted range, and V values equal in the column type, are refused', async () => {
    assert.match(
      await refusal('public.codes|n|I|10,1\n'),
      /q\.txt:1: the range 10,1 of public\.codes is empty: its low is above its high/,
    );
    const message = await refusal('public.codes|n|V|1\npublic.codes|n|V|01\npublic.codes|n|V|+1\n');
    assert.match(
      message,
      /q\.txt:2: the value "01" of public\.codes equals the value "1" of line 1: those rows would be copied twice/,
    );
    assert.match(message, /q\.txt:3: the value "\+1" of public\.codes equals the value "1" of line 1/);
    assert.match(message, /has 2 problem\(s\)/);
  });
});
