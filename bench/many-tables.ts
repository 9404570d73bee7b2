/**
 * `--many-tables N`: the multi-tenant layout of issue 16, a schema per tenant holding 25
 * small tables, each with a serial primary key, an index, a foreign key (to the tenant's
 * first table) and 200 rows. N tables in all (N/25 schemas), on the sandbox's settings
 * (max_locks_per_transaction 64). Each schema is created in its own transaction, so the
 * generation itself never needs more locks than one tenant's tables.
 */
import { performance } from 'node:perf_hooks';
import type { LocalServer } from '../src/sandbox/local-server.js';
import type { BenchTable, Dataset } from './dataset.js';

export const TABLES_PER_SCHEMA = 25;
export const ROWS_PER_TABLE = 200;

function tenantSql(schema: string): string {
  const lines = [`CREATE SCHEMA ${schema};`];
  lines.push(
    `CREATE TABLE ${schema}.t1 (id serial PRIMARY KEY, name text NOT NULL, created timestamptz NOT NULL DEFAULT now());`,
    `INSERT INTO ${schema}.t1 (name) SELECT 'tenant ' || g FROM generate_series(1, ${ROWS_PER_TABLE}) g;`,
    `CREATE INDEX ON ${schema}.t1 (name);`,
  );
  for (let t = 2; t <= TABLES_PER_SCHEMA; t++) {
    lines.push(
      `CREATE TABLE ${schema}.t${t} (id serial PRIMARY KEY, t1_id int NOT NULL REFERENCES ${schema}.t1 (id), amount numeric(12,2), note text);`,
      `INSERT INTO ${schema}.t${t} (t1_id, amount, note) SELECT 1 + g % ${ROWS_PER_TABLE}, g * 1.5, md5(g::text) FROM generate_series(1, ${ROWS_PER_TABLE}) g;`,
      `CREATE INDEX ON ${schema}.t${t} (t1_id);`,
    );
  }
  return lines.join('\n');
}

export async function createManyTablesDataset(
  server: LocalServer,
  database: string,
  tables: number,
  log: (line: string) => void,
): Promise<Dataset> {
  const started = performance.now();
  const schemas = Math.max(1, Math.ceil(tables / TABLES_PER_SCHEMA));
  log(`generating ${schemas} schemas × ${TABLES_PER_SCHEMA} tables × ${ROWS_PER_TABLE} rows …`);
  await server.sql(`CREATE DATABASE ${database}`);
  for (let s = 1; s <= schemas; s++) await server.sql(tenantSql(`tenant_${s}`), database);
  const list: BenchTable[] = [];
  for (let s = 1; s <= schemas; s++) {
    for (let t = 1; t <= TABLES_PER_SCHEMA; t++) {
      list.push({ schema: `tenant_${s}`, name: `t${t}`, rows: ROWS_PER_TABLE, bytes: 0, copyTextBytes: 0 });
    }
  }
  const [db] = await server.sql<{ bytes: string }>(
    'SELECT pg_catalog.pg_database_size(pg_catalog.current_database())::bigint AS bytes',
    database,
  );
  return {
    database,
    singleTable: false,
    tables: list,
    databaseBytes: Number(db?.bytes ?? 0),
    generateSeconds: (performance.now() - started) / 1000,
  };
}
