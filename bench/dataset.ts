/**
 * The benchmark's source database, generated server-side with generate_series (no data
 * crosses the wire) and scaled to a wanted on-disk size:
 *
 *  - `events`: large and narrow (bigint primary key, ints, timestamps), a secondary index;
 *  - `documents`: wide, mixed types (text, numeric, jsonb, timestamptz, uuid, bytea,
 *    arrays), a foreign key to `events` and two secondary indexes;
 *  - `audit_log`: no primary key, one index.
 * With `singleTable`, only `events`, about the whole size.
 *
 * Row counts come from a calibration: a few thousand rows of each table (indexes included)
 * are generated in a scratch database and measured, then scaled. Indexes and the foreign key
 * are created after the load, then VACUUM ANALYZE. SQL checked on PostgreSQL 15 and 17.
 */
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { runLimited } from '../src/util/pool.js';
import { qualifiedName } from '../src/util/sql.js';

export interface BenchTable {
  schema: string;
  name: string;
  rows: number;
  /** pg_total_relation_size after VACUUM ANALYZE. */
  bytes: number;
  /** Size of the table as COPY text (what the floor method moves). */
  copyTextBytes: number;
}

export interface Dataset {
  database: string;
  singleTable: boolean;
  tables: BenchTable[];
  /** pg_database_size of the source database. */
  databaseBytes: number;
  /** Generation, indexes and VACUUM ANALYZE. */
  generateSeconds: number;
}

interface TableDef {
  name: string;
  /** Fraction of the wanted size. */
  share: number;
  create: string;
  /** $1, $2: first and last i; $3: number of rows of events (for the foreign key). */
  insert: string;
  indexes: string[];
}

const EVENTS: TableDef = {
  name: 'events',
  share: 0.5,
  create: `CREATE TABLE public.events (
    id bigint PRIMARY KEY,
    account_id integer NOT NULL,
    kind smallint NOT NULL,
    amount_cents integer NOT NULL,
    created_at timestamp NOT NULL,
    updated_at timestamptz
  )`,
  insert: `INSERT INTO public.events
    SELECT i, (i * 7919) % 100000, (i % 7)::smallint, (i * 31) % 1000000,
           timestamp '2020-01-01' + i * interval '1 second',
           timestamptz '2020-01-01 00:00+00' + (i % 86400) * interval '1 minute'
    FROM pg_catalog.generate_series($1::bigint, $2::bigint) AS i`,
  indexes: ['CREATE INDEX events_account_idx ON public.events (account_id)'],
};

const DOCUMENTS: TableDef = {
  name: 'documents',
  share: 0.35,
  create: `CREATE TABLE public.documents (
    id bigint PRIMARY KEY,
    event_id bigint NOT NULL,
    title text NOT NULL,
    body text,
    price numeric(12,2),
    attrs jsonb,
    created_at timestamptz NOT NULL,
    ref uuid NOT NULL,
    payload bytea,
    tags text[],
    scores integer[]
  )`,
  insert: `INSERT INTO public.documents
    SELECT i, 1 + (i * 104729) % $3::bigint, 'document ' || i,
           pg_catalog.repeat(pg_catalog.md5(i::text), 1 + (i % 6)::integer),
           (i % 100000) / 100.0,
           pg_catalog.jsonb_build_object('n', i, 'key', pg_catalog.md5(i::text),
                                         'flags', pg_catalog.jsonb_build_array(i % 10, i % 3 = 0)),
           timestamptz '2021-01-01 00:00+00' + i * interval '1 second',
           pg_catalog.md5(i::text)::uuid,
           pg_catalog.decode(pg_catalog.md5(i::text) || pg_catalog.md5((i + 1)::text), 'hex'),
           ARRAY['t' || (i % 10), 'g' || (i % 7)],
           ARRAY[(i % 100)::integer, (i % 1000)::integer, (i % 10000)::integer]
    FROM pg_catalog.generate_series($1::bigint, $2::bigint) AS i`,
  indexes: [
    'CREATE INDEX documents_event_idx ON public.documents (event_id)',
    'CREATE INDEX documents_created_idx ON public.documents (created_at)',
  ],
};

const AUDIT_LOG: TableDef = {
  name: 'audit_log',
  share: 0.15,
  create: `CREATE TABLE public.audit_log (
    at timestamptz NOT NULL,
    actor integer,
    action text,
    detail text
  )`,
  insert: `INSERT INTO public.audit_log
    SELECT timestamptz '2022-01-01 00:00+00' + i * interval '1 second', (i % 5000)::integer,
           (ARRAY['insert', 'update', 'delete'])[1 + (i % 3)::integer],
           'row ' || i || ' changed by user ' || (i % 5000)
    FROM pg_catalog.generate_series($1::bigint, $2::bigint) AS i`,
  indexes: ['CREATE INDEX audit_log_at_idx ON public.audit_log (at)'],
};

const FOREIGN_KEY = `ALTER TABLE public.documents
  ADD CONSTRAINT documents_event_fk FOREIGN KEY (event_id) REFERENCES public.events (id)`;

const SIZES = `SELECT c.relname AS name, pg_catalog.pg_total_relation_size(c.oid)::bigint AS bytes
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind = 'r'`;

const CALIBRATION_ROWS = 20_000;

function tableDefs(singleTable: boolean): TableDef[] {
  return singleTable ? [{ ...EVENTS, share: 1 }] : [EVENTS, DOCUMENTS, AUDIT_LOG];
}

/** $1 and $2, plus $3 only where the statement uses it (an unused parameter has no type). */
function insertParams(def: TableDef, rows: number, eventRows: number): number[] {
  return def.insert.includes('$3') ? [1, rows, eventRows] : [1, rows];
}

async function tableSizes(server: LocalServer, database: string): Promise<Map<string, number>> {
  const rows = await server.sql<{ name: string; bytes: string }>(SIZES, database);
  return new Map(rows.map((r) => [r.name, Number(r.bytes)]));
}

/** On-disk bytes per row of each table, indexes included, measured on a small sample. */
async function calibrate(server: LocalServer, defs: TableDef[]): Promise<Map<string, number>> {
  const scratch = 'pgconvoy_bench_calibrate';
  await server.sql(`DROP DATABASE IF EXISTS ${scratch}`);
  await server.sql(`CREATE DATABASE ${scratch}`);
  try {
    for (const def of defs) {
      await server.sql(def.create, scratch);
      await server.sql(def.insert, scratch, insertParams(def, CALIBRATION_ROWS, CALIBRATION_ROWS));
      for (const index of def.indexes) await server.sql(index, scratch);
    }
    await server.sql('VACUUM ANALYZE', scratch);
    const sizes = await tableSizes(server, scratch);
    return new Map(defs.map((d) => [d.name, (sizes.get(d.name) ?? 0) / CALIBRATION_ROWS]));
  } finally {
    await server.sql(`DROP DATABASE IF EXISTS ${scratch}`);
  }
}

/** Bytes of `COPY table TO STDOUT` (text format), read and thrown away. */
export async function copyTextBytes(server: LocalServer, database: string, table: string): Promise<number> {
  const client = new pg.Client(server.clientConfig(database));
  await client.connect();
  try {
    let bytes = 0;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        done();
      },
    });
    await pipeline(client.query(copyTo(`COPY ${qualifiedName('public', table)} TO STDOUT`)), sink);
    return bytes;
  } finally {
    await client.end();
  }
}

/** Row count of every table (keyed schema.name), for checking a copy; one session for all. */
export async function countRows(
  server: LocalServer,
  database: string,
  tables: readonly BenchTable[],
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const client = new pg.Client(server.clientConfig(database));
  await client.connect();
  try {
    for (const t of tables) {
      const res = await client.query<{ n: string }>(
        `SELECT pg_catalog.count(*) AS n FROM ${qualifiedName(t.schema, t.name)}`,
      );
      counts.set(`${t.schema}.${t.name}`, Number(res.rows[0]?.n ?? -1));
    }
  } finally {
    await client.end();
  }
  return counts;
}

export interface DatasetOptions {
  sizeBytes: number;
  singleTable: boolean;
  log: (line: string) => void;
}

/** Creates `database` on `server` and fills it; see the module comment. */
export async function createDataset(
  server: LocalServer,
  database: string,
  options: DatasetOptions,
): Promise<Dataset> {
  const started = performance.now();
  const defs = tableDefs(options.singleTable);
  const perRow = await calibrate(server, defs);
  const rows = new Map(
    defs.map((d) => [
      d.name,
      Math.max(1000, Math.round((options.sizeBytes * d.share) / (perRow.get(d.name) ?? 100))),
    ]),
  );
  const eventRows = rows.get('events') ?? 0;
  options.log(
    `generating ${defs.map((d) => `${d.name} (${(rows.get(d.name) ?? 0).toLocaleString('en-US')} rows)`).join(', ')} …`,
  );
  await server.sql(`CREATE DATABASE ${database}`);
  for (const def of defs) await server.sql(def.create, database);
  const parallel = Math.max(1, os.cpus().length);
  await runLimited(defs, parallel, async (def) => {
    await server.sql(def.insert, database, insertParams(def, rows.get(def.name) ?? 0, eventRows));
  });
  await runLimited(
    defs.flatMap((d) => d.indexes),
    parallel,
    async (sql) => {
      await server.sql(sql, database);
    },
  );
  if (!options.singleTable) await server.sql(FOREIGN_KEY, database);
  await server.sql('VACUUM ANALYZE', database);
  const generateSeconds = (performance.now() - started) / 1000;

  const sizes = await tableSizes(server, database);
  const [db] = await server.sql<{ bytes: string }>(
    'SELECT pg_catalog.pg_database_size(pg_catalog.current_database())::bigint AS bytes',
    database,
  );
  const tables: BenchTable[] = [];
  for (const def of defs) {
    tables.push({
      schema: 'public',
      name: def.name,
      rows: rows.get(def.name) ?? 0,
      bytes: sizes.get(def.name) ?? 0,
      copyTextBytes: await copyTextBytes(server, database, def.name),
    });
  }
  tables.sort((a, b) => b.bytes - a.bytes);
  return {
    database,
    singleTable: options.singleTable,
    tables,
    databaseBytes: Number(db?.bytes ?? 0),
    generateSeconds,
  };
}
