/**
 * Copy jobs in the ledger: a queue with leases, all in SQL (graphile-worker's pattern).
 *
 * A worker claims a job with FOR UPDATE SKIP LOCKED *inside the transaction that loads the
 * job's rows*, and marks it done in that same transaction. So:
 *  - a job is done exactly once: its rows and its mark commit together or not at all;
 *  - a worker that dies (SIGKILL, lost connection) releases its job by rolling back;
 *  - "running" is not stored: it is a pending job whose row is locked. The claiming
 *    transaction also takes an advisory lock on the job's id, which `status` finds in
 *    pg_locks with the worker's pid. (The session's application_name,
 *    `pgconvoy copy <worker>: job <id>`, names the worker for people, but the server cuts it
 *    at 63 bytes: a long worker name loses the job number.)
 */
import type pg from 'pg';
import type { Chunk, TableRef } from '../plan/chunk.js';
import { qualifiedName } from '../util/sql.js';
import { parseJobRow } from './job-row.js';

/** Job ids above this are not shown as running by status (advisory lock keys are 32-bit). */
const MAX_INT4 = 2147483647;
/** Planned jobs per INSERT. */
const ADD_BATCH = 5000;

export type JobState = 'pending' | 'done' | 'failed';

export interface PlannedJob {
  table: TableRef;
  chunk: Chunk;
  chunkLabel: string;
  chunkCount: number;
  estimatedBytes: number;
  copyFormat: 'binary' | 'text';
}

export interface JobRow {
  id: number;
  seq: number;
  table: TableRef;
  chunk: Chunk;
  chunkLabel: string;
  chunkCount: number;
  estimatedBytes: number;
  copyFormat: 'binary' | 'text';
  state: JobState;
  attempts: number;
  doneBy: string | null;
  rows: number | null;
  bytes: number | null;
  seconds: number | null;
  error: string | null;
}

function toJob(row: unknown, table: string): JobRow {
  const r = parseJobRow(row, table);
  return {
    id: Number(r.id),
    seq: r.seq,
    table: { schema: r.table_schema, name: r.table_name },
    chunk: r.chunk,
    chunkLabel: r.chunk_label,
    chunkCount: r.chunk_count,
    estimatedBytes: Number(r.estimated_bytes),
    copyFormat: r.copy_format,
    state: r.state,
    attempts: r.attempts,
    doneBy: r.done_by,
    rows: r.rows === null ? null : Number(r.rows),
    bytes: r.bytes === null ? null : Number(r.bytes),
    seconds: r.seconds,
    error: r.error,
  };
}

export class JobLedger {
  readonly table: string;
  constructor(readonly schema: string) {
    this.table = qualifiedName(schema, 'jobs');
  }

  /**
   * Adds jobs that are not in the ledger yet (by table and chunk label); existing jobs, done
   * or not, are kept as they are. Returns how many were added. Rows go in a few thousand per
   * statement (arrays unnested on the server): 50,000 tables cost a handful of round trips.
   */
  async addJobs(client: pg.Client, jobs: PlannedJob[]): Promise<number> {
    let added = 0;
    for (let start = 0; start < jobs.length; start += ADD_BATCH) {
      const batch = jobs.slice(start, start + ADD_BATCH);
      const res = await client.query(
        `INSERT INTO ${this.table} (seq, table_schema, table_name, chunk, chunk_label, chunk_count, estimated_bytes, copy_format)
         SELECT * FROM ROWS FROM (pg_catalog.unnest($1::integer[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[]),
           pg_catalog.unnest($4::jsonb[]), pg_catalog.unnest($5::text[]), pg_catalog.unnest($6::integer[]),
           pg_catalog.unnest($7::bigint[]), pg_catalog.unnest($8::text[]))
         ON CONFLICT (table_schema, table_name, chunk_label) DO NOTHING`,
        [
          batch.map((_, i) => start + i + 1),
          batch.map((j) => j.table.schema),
          batch.map((j) => j.table.name),
          batch.map((j) => JSON.stringify(j.chunk)),
          batch.map((j) => j.chunkLabel),
          batch.map((j) => j.chunkCount),
          batch.map((j) => j.estimatedBytes),
          batch.map((j) => j.copyFormat),
        ],
      );
      added += res.rowCount ?? 0;
    }
    return added;
  }

  /** Failed jobs go back to pending: re-running the command retries them. */
  async resetFailed(client: pg.Client): Promise<number> {
    const res = await client.query<Record<string, unknown>>(
      `UPDATE ${this.table} SET state = 'pending', error = NULL WHERE state = 'failed'`,
    );
    return res.rowCount ?? 0;
  }

  /** Claims the next pending job; must run inside the transaction that will load it. */
  async claimNext(client: pg.Client): Promise<JobRow | undefined> {
    const res = await client.query<Record<string, unknown>>(
      `SELECT * FROM ${this.table} WHERE state = 'pending' ORDER BY seq, id FOR UPDATE SKIP LOCKED LIMIT 1`,
    );
    const row: unknown = res.rows[0];
    return row ? this.claimed(client, toJob(row, this.table)) : undefined;
  }

  /** Claims one given job (by id) if it is pending and not held by another worker. */
  async claim(client: pg.Client, id: number): Promise<JobRow | undefined> {
    const res = await client.query<Record<string, unknown>>(
      `SELECT * FROM ${this.table} WHERE id = $1 AND state = 'pending' FOR UPDATE SKIP LOCKED`,
      [id],
    );
    const row: unknown = res.rows[0];
    return row ? this.claimed(client, toJob(row, this.table)) : undefined;
  }

  /**
   * More jobs for the transaction that claimed `first` (a small whole table): up to `limit`
   * pending whole-table jobs of at most `maxBytes` each, in queue order, skipping those other
   * workers hold. They are loaded and marked done in that one transaction (see copy-worker.ts).
   */
  async claimSmall(
    client: pg.Client,
    o: { first: JobRow; limit: number; maxBytes: number },
  ): Promise<JobRow[]> {
    if (o.limit <= 0) return [];
    // SKIP LOCKED skips only other transactions' locks: the job this one holds is left out by id.
    const res = await client.query<Record<string, unknown>>(
      `SELECT * FROM ${this.table}
       WHERE state = 'pending' AND chunk_count = 1 AND chunk->>'kind' = 'whole' AND estimated_bytes <= $1
         AND id <> $3
       ORDER BY seq, id FOR UPDATE SKIP LOCKED LIMIT $2`,
      [o.maxBytes, o.limit, o.first.id],
    );
    const jobs = res.rows.map((row: unknown) => toJob(row, this.table));
    await this.claimedAll(client, jobs);
    return jobs;
  }

  /**
   * Makes a claim visible to `status`: an advisory lock, released with the transaction, keyed
   * by this ledger and the job's id. Never waits: the row lock already makes the job ours.
   */
  private async claimed(client: pg.Client, job: JobRow): Promise<JobRow> {
    await this.claimedAll(client, [job]);
    return job;
  }

  private async claimedAll(client: pg.Client, jobs: JobRow[]): Promise<void> {
    const ids = jobs.map((j) => j.id).filter((id) => id <= MAX_INT4);
    if (ids.length === 0) return;
    await client.query(
      `SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext($1), id)
       FROM pg_catalog.unnest($2::integer[]) AS id`,
      [this.table, ids],
    );
  }

  /** Marks a claimed job done; must run in the job's own transaction, before COMMIT. */
  async complete(
    client: pg.Client,
    id: number,
    result: { worker: string; rows: number; bytes: number; seconds: number; snapshot: string | undefined },
  ): Promise<void> {
    await this.completeAll(client, [{ id, ...result }], result);
  }

  /** Marks claimed jobs done in one statement; must run in their transaction, before COMMIT. */
  async completeAll(
    client: pg.Client,
    results: { id: number; rows: number; bytes: number; seconds: number }[],
    by: { worker: string; snapshot: string | undefined },
  ): Promise<void> {
    await client.query(
      `UPDATE ${this.table} AS j
       SET state = 'done', done_by = $1, snapshot = $2, rows = r.rows, bytes = r.bytes, seconds = r.seconds,
           error = NULL, finished_at = pg_catalog.clock_timestamp(), attempts = j.attempts + 1
       FROM ROWS FROM (pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::bigint[]), pg_catalog.unnest($5::bigint[]),
                      pg_catalog.unnest($6::double precision[])) AS r(id, rows, bytes, seconds)
       WHERE j.id = r.id AND j.state = 'pending'`,
      [
        by.worker,
        by.snapshot ?? null,
        results.map((r) => r.id),
        results.map((r) => r.rows),
        results.map((r) => r.bytes),
        results.map((r) => r.seconds),
      ],
    );
  }

  /** Records a failed attempt (autocommit, after the job's transaction rolled back). */
  async recordFailure(client: pg.Client, id: number, error: string, final: boolean): Promise<void> {
    await client.query(
      `UPDATE ${this.table} SET attempts = attempts + 1, error = $2, state = CASE WHEN $3 THEN 'failed' ELSE state END,
              finished_at = CASE WHEN $3 THEN pg_catalog.now() ELSE finished_at END
       WHERE id = $1 AND state = 'pending'`,
      [id, error, final],
    );
  }

  /** Done jobs read in another snapshot than `snapshot` (an earlier run's), counted per snapshot. */
  async doneInOtherSnapshots(
    client: pg.Client,
    snapshot: string,
  ): Promise<{ snapshot: string; jobs: number }[]> {
    const res = await client.query<{ snapshot: string; jobs: number }>(
      `SELECT snapshot, count(*)::int AS jobs FROM ${this.table}
       WHERE state = 'done' AND snapshot IS NOT NULL AND snapshot <> $1
       GROUP BY snapshot ORDER BY 2 DESC`,
      [snapshot],
    );
    return res.rows;
  }

  async list(client: pg.Client): Promise<JobRow[]> {
    const res = await client.query(`SELECT * FROM ${this.table} ORDER BY seq, id`);
    return res.rows.map((row) => toJob(row, this.table));
  }

  /** Jobs claimed right now, with the worker holding each (its name, from the session's application_name). */
  async running(client: pg.Client): Promise<Map<number, string>> {
    const res = await client.query<{ job: string; application_name: string; client_addr: string | null }>(
      `SELECT l.objid::bigint AS job, a.application_name, a.client_addr::text AS client_addr
       FROM pg_catalog.pg_locks l
       JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
         AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
         AND l.classid = pg_catalog.hashtext($1)::oid`,
      [this.table],
    );
    const out = new Map<number, string>();
    for (const row of res.rows) {
      // "pgconvoy copy <worker>: job <id>", possibly cut short: what is left of <worker>.
      const worker = row.application_name.replace(/^pgconvoy copy /, '').replace(/: j?o?b? ?\d*$/, '');
      out.set(Number(row.job), `${worker}${row.client_addr ? ` from ${row.client_addr}` : ''}`);
    }
    return out;
  }

  /** Jobs not done nor failed, whether or not some worker holds them. */
  async pendingCount(client: pg.Client): Promise<number> {
    const res = await client.query<{ n: string }>(
      `SELECT pg_catalog.count(*) AS n FROM ${this.table} WHERE state = 'pending'`,
    );
    return Number(res.rows[0]?.n ?? 0);
  }

  /** Every table all of whose jobs are done (one query, whatever the number of tables). */
  async completeTables(client: pg.Client): Promise<TableRef[]> {
    const res = await client.query<{ schema: string; name: string }>(
      `SELECT table_schema AS schema, table_name AS name FROM ${this.table} GROUP BY 1, 2 HAVING pg_catalog.bool_and(state = 'done')`,
    );
    return res.rows;
  }

  /** Whether all of a table's jobs are done. */
  async tableDone(client: pg.Client, table: TableRef): Promise<boolean> {
    const res = await client.query<{ left: string }>(
      `SELECT pg_catalog.count(*) FILTER (WHERE state <> 'done') AS left FROM ${this.table} WHERE table_schema = $1 AND table_name = $2`,
      [table.schema, table.name],
    );
    return Number(res.rows[0]?.left ?? 1) === 0;
  }
}
