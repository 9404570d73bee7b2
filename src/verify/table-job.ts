/**
 * One table's verification in progress: what is compared and how, and what its chunks have
 * found so far. Chunks of one table run on several workers; they add to the same job.
 */
import type { TableInfo } from '../inventory/inventory.js';
import type { TableRef } from '../plan/chunk.js';
import { compareKeys, type DiffBudget } from './row-diff.js';
import { columnNames, type Checksum, type RowShape } from './row-sql.js';
import type { RowDifference, TableResult, VerifyMethod } from './types.js';

export interface TableJob {
  ref: TableRef;
  shape: RowShape;
  method: VerifyMethod;
  /** Integer column for key-range chunks (key-range method). */
  split: { name: string; type: string } | undefined;
  /** The source inventory's entry: sizes and statistics to cut key ranges as the copy does. */
  sourceTable: TableInfo | undefined;
  estimatedRows: number;
  /** Smallest and largest split-column value on either side, when planned. */
  keyMin: bigint | undefined;
  keyMax: bigint | undefined;
  budget: DiffBudget;
  sourceRows: number;
  targetRows: number;
  chunksTotal: number;
  chunksDiffering: number;
  /** Tasks queued or running for this table; the table is done at zero. */
  pending: number;
  startedAt: number | undefined;
  finishedAt: number | undefined;
  differences: RowDifference[];
}

export function newTableJob(
  ref: TableRef,
  shape: RowShape,
  split: TableJob['split'],
  estimatedRows: number,
  maxDiffs: number,
  sourceTable?: TableInfo,
): TableJob {
  return {
    ref,
    shape,
    method: split ? 'key-range' : 'hash',
    split,
    sourceTable,
    estimatedRows,
    keyMin: undefined,
    keyMax: undefined,
    budget: { remaining: maxDiffs, truncated: false },
    sourceRows: 0,
    targetRows: 0,
    chunksTotal: 0,
    chunksDiffering: 0,
    pending: 0,
    startedAt: undefined,
    finishedAt: undefined,
    differences: [],
  };
}

export function tableResult(job: TableJob): TableResult {
  const differ = job.chunksDiffering > 0 || job.sourceRows !== job.targetRows;
  return {
    schema: job.ref.schema,
    name: job.ref.name,
    status: differ ? 'differ' : 'match',
    method: job.method,
    rows: { source: job.sourceRows, target: job.targetRows },
    chunks: { total: job.chunksTotal, differing: job.chunksDiffering },
    columns: columnNames(job.shape),
    seconds: ((job.finishedAt ?? 0) - (job.startedAt ?? 0)) / 1000,
    differences: [...job.differences].sort(byPlace),
    truncated: job.budget.truncated,
  };
}

/** Differences in key order (chunks of a table finish in any order). */
function byPlace(a: RowDifference, b: RowDifference): number {
  const ka = 'key' in a ? Object.values(a.key) : 'row' in a ? [a.row] : [a.chunk.range];
  const kb = 'key' in b ? Object.values(b.key) : 'row' in b ? [b.row] : [b.chunk.range];
  return compareKeys(ka, kb);
}

/** Two checksums are equal when count and hash sum are. */
export function sameChecksum(a: Checksum | undefined, b: Checksum | undefined): boolean {
  return a !== undefined && b !== undefined && a.n === b.n && a.s === b.s;
}
