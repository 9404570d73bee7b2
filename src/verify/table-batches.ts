/**
 * Small tables checked many at once. A table of a few hundred rows costs verify a snapshot
 * transaction and a few round trips per side for one tiny checksum: with thousands of such
 * tables that is nearly all the time. So tables up to SMALL_ROWS rows (by the source's
 * estimates, and SMALL_BYTES on disk) are checksummed BATCH_TABLES at a time, with one query
 * per side (row-sql.ts batchChecksumSql). A table whose count or checksum differs is then
 * compared again on its own, by key ranges or hash buckets, which finds and names the rows.
 */
import { batchChecksumSql, type Checksum } from './row-sql.js';
import { sameChecksum, type TableJob } from './table-job.js';
import type { WorkerPair } from './worker-pair.js';

/** Tables up to this many estimated rows go in batches (one key-range chunk would hold 250,000). */
export const SMALL_ROWS = 10_000;
/** … and up to this size on the source (estimates of a table never analyzed can be far off). */
export const SMALL_BYTES = 8 * 1024 ** 2;
/**
 * Tables per batch: each holds ACCESS SHARE locks (table and indexes) until the batch's
 * transaction ends, beyond the 16 a session keeps outside the shared lock table: kept to
 * about what max_locks_per_transaction promises every session by default (64).
 */
export const BATCH_TABLES = 32;
/** Estimated rows per batch, so one batch stays a short read on either side. */
const BATCH_ROWS = 200_000;

/** Whether a table goes in a batch: small, and one chunk of `chunkRows` anyway. */
export function isBatchable(job: TableJob, chunkRows: number): boolean {
  return job.estimatedRows <= Math.min(SMALL_ROWS, chunkRows) && (job.sourceTable?.bytes ?? 0) <= SMALL_BYTES;
}

/** The small tables in batches, in their given order. */
export function batchTables(jobs: TableJob[]): TableJob[][] {
  const batches: TableJob[][] = [];
  let batch: TableJob[] = [];
  let rows = 0;
  for (const job of jobs) {
    if (batch.length >= BATCH_TABLES || (batch.length > 0 && rows + job.estimatedRows > BATCH_ROWS)) {
      batches.push(batch);
      batch = [];
      rows = 0;
    }
    batch.push(job);
    rows += job.estimatedRows;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * Counts and checksums every table of the batch, one query per side, and records the counts;
 * returns the tables that differ (their job is left as new, to be compared on its own).
 */
export async function verifyBatch(pair: WorkerPair, jobs: TableJob[]): Promise<TableJob[]> {
  const [s, t] = await pair.both<Checksum & { i: number }>(
    `the checksums of ${jobs.length} small table(s)`,
    batchChecksumSql(jobs.map((j) => ({ shape: j.shape, countOnly: j.method === 'count' }))),
  );
  const bySide = (rows: (Checksum & { i: number })[]) => new Map(rows.map((r) => [Number(r.i), r]));
  const [source, target] = [bySide(s), bySide(t)];
  const differing: TableJob[] = [];
  jobs.forEach((job, i) => {
    const a = source.get(i);
    const b = target.get(i);
    if (job.method !== 'count' && !sameChecksum(a, b)) {
      differing.push(job);
      return;
    }
    job.sourceRows = Number(a?.n ?? 0);
    job.targetRows = Number(b?.n ?? 0);
    job.chunksTotal = 1;
    if (job.sourceRows !== job.targetRows) job.chunksDiffering = 1;
  });
  return differing;
}
