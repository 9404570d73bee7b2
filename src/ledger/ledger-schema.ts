/**
 * pgconvoy's ledger lives in the target database, in its own schema (default "pgconvoy"), so
 * that a job's data and its "done" mark can commit in one transaction, and so that what was
 * done survives the loss of every local file.
 *
 * Migrations are numbered and each runs in its own transaction under an advisory lock, so
 * several pgconvoy processes (workers on several machines) can start at once safely.
 * Checked on 13, 15, 17.
 */
import type pg from 'pg';
import { qualifiedName, quoteIdent } from '../util/sql.js';

const MIGRATIONS: ((s: string) => string)[] = [
  (s) => `
CREATE TABLE ${s}.steps (
  name text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('done', 'failed')),
  detail jsonb,
  finished_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE ${s}.jobs (
  id bigserial PRIMARY KEY,
  seq integer NOT NULL,
  table_schema text NOT NULL,
  table_name text NOT NULL,
  chunk jsonb NOT NULL,
  chunk_label text NOT NULL,
  chunk_count integer NOT NULL DEFAULT 1,
  estimated_bytes bigint NOT NULL DEFAULT 0,
  copy_format text NOT NULL DEFAULT 'text',
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  done_by text,
  rows bigint,
  bytes bigint,
  seconds double precision,
  snapshot text,
  error text,
  finished_at timestamptz,
  UNIQUE (table_schema, table_name, chunk_label)
);
CREATE INDEX jobs_pending_idx ON ${s}.jobs (seq) WHERE state = 'pending';
CREATE TABLE ${s}.plan (
  id integer PRIMARY KEY CHECK (id = 1),
  source text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  options jsonb NOT NULL
);
`,
  // 2: online migration (start, cutover, start-back, rollback). One row per target database.
  // The revoked logins live here, on the target, so rollback can restore them even when
  // every local file of the operator is lost.
  (s) => `
CREATE TABLE ${s}.online_state (
  id integer PRIMARY KEY CHECK (id = 1),
  phase text NOT NULL CHECK (phase IN ('copying', 'replicating', 'cutover', 'done', 'rolled-back')),
  source text NOT NULL,
  names jsonb NOT NULL,
  published jsonb NOT NULL DEFAULT '[]',
  start_lsn text,
  schema_fingerprint jsonb,
  back jsonb,
  cutover_lsn text,
  writes_blocked_ms bigint,
  detail jsonb NOT NULL DEFAULT '{}',
  started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  replicating_at timestamptz,
  cutover_started_at timestamptz,
  done_at timestamptz,
  rolled_back_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE ${s}.online_revoked_roles (
  role_name text PRIMARY KEY,
  had_login boolean NOT NULL,
  revoked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  restored_at timestamptz
);
`,
  // 3: the write freeze is per database (CONNECT, a read-only default) instead of per role
  // (LOGIN, which is server-wide). One row: what the source database looked like before the
  // freeze, written before anything is changed, so rollback restores exactly that.
  (s) => `
DROP TABLE ${s}.online_revoked_roles;
CREATE TABLE ${s}.online_freeze (
  id integer PRIMARY KEY CHECK (id = 1),
  database text NOT NULL,
  prior_connect jsonb NOT NULL,
  prior_read_only text,
  granted jsonb NOT NULL DEFAULT '[]',
  recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  proven_lsn text,
  proven_writes text,
  proven_at timestamptz,
  released_at timestamptz
);
`,
  // 4: the relay (start --via relay): how the online migration replicates, and the relay's
  // position, written in the same target transaction as the changes it applied.
  (s) => `
ALTER TABLE ${s}.online_state ADD COLUMN via text NOT NULL DEFAULT 'subscription' CHECK (via IN ('subscription', 'relay'));
CREATE TABLE ${s}.relay_progress (
  id integer PRIMARY KEY CHECK (id = 1),
  applied_lsn text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  changes bigint NOT NULL DEFAULT 0,
  transactions bigint NOT NULL DEFAULT 0,
  host text,
  pid integer,
  heartbeat_at timestamptz,
  stopped text
);
`,
  // 5: switch-first (switch-first/state.ts). One row per target database, and one row per
  // batch moved: its rows and this mark commit in one transaction, so a batch journaled on
  // the source is known to be in (drop the journal) or not (replay it).
  (s) => `
CREATE TABLE ${s}.switch_first (
  id integer PRIMARY KEY CHECK (id = 1),
  phase text NOT NULL CHECK (phase IN ('schema', 'attached', 'prepared', 'moved', 'cleaned', 'finished', 'torn-down')),
  source text NOT NULL,
  tables jsonb NOT NULL,
  deferred_fks jsonb NOT NULL DEFAULT '[]',
  accepted jsonb NOT NULL DEFAULT '[]',
  detail jsonb NOT NULL DEFAULT '{}',
  prepared_at timestamptz,
  moved_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE ${s}.switch_first_batches (
  batch_id text PRIMARY KEY,
  table_schema text NOT NULL,
  table_name text NOT NULL,
  rows bigint NOT NULL,
  replayed boolean NOT NULL DEFAULT false,
  done_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
`,
];

/** Creates or upgrades the ledger schema. Idempotent and safe to run concurrently. */
export async function ensureLedger(client: pg.Client, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  // Any fixed 64-bit number, derived from nothing but our name: serialises pgconvoy migrations.
  await client.query('SELECT pg_catalog.pg_advisory_lock(7250683412)');
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${qualifiedName(schema, 'migrations')} (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT pg_catalog.now())`,
    );
    const res = await client.query<{ v: number | null }>(
      `SELECT pg_catalog.max(version) AS v FROM ${qualifiedName(schema, 'migrations')}`,
    );
    const current = res.rows[0]?.v ?? 0;
    for (let version = current + 1; version <= MIGRATIONS.length; version++) {
      const migration = MIGRATIONS[version - 1];
      if (!migration) continue;
      await client.query('BEGIN');
      try {
        await client.query(migration(s));
        await client.query(`INSERT INTO ${qualifiedName(schema, 'migrations')} (version) VALUES ($1)`, [
          version,
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
    }
  } finally {
    await client.query('SELECT pg_catalog.pg_advisory_unlock(7250683412)');
  }
}

export async function ledgerExists(client: pg.Client, schema: string): Promise<boolean> {
  const res = await client.query<{ ok: boolean }>(
    `SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, 'jobs')) IS NOT NULL AS ok`,
    [schema],
  );
  return res.rows[0]?.ok ?? false;
}
