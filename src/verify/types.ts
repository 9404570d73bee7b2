/**
 * The vocabulary of verification, shared by the library, the command line and callers such
 * as `clone --verify` and the online cutover: what is asked, what is reported, and the
 * progress events in between.
 *
 * Terms: a *chunk* is the part of one table that one checksum covers on both sides (a range
 * of the table's integer split column, or the rows whose key hash starts with a given hex
 * prefix); a chunk *matches* when both sides have the same row count and the same
 * order-independent sum of row hashes.
 */
import type { ExcludedColumns } from '../copy/table-columns.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { TableRef } from '../plan/chunk.js';
import type { TableFilter } from '../inventory/table-filter.js';
import { DEFAULTS } from '../defaults.js';

export interface VerifyOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  /** Workers; each holds one session per side. */
  jobs: number;
  /** pg_dump's filters (inventory/table-filter.ts); a partitioned table stands for its partitions. */
  filter?: TableFilter | undefined;
  /** Source columns left behind by the copy (`--exclude-column`, as excludedKey()s): not compared. */
  excludeColumns?: ExcludedColumns | undefined;
  /** Row differences listed per table (the rest are counted, not listed). */
  maxDiffs: number;
  /** pgconvoy's ledger schema on the target: never compared. */
  ledgerSchema: string;
  /** Read the source in this exported snapshot (its exporting transaction must stay open). */
  sourceSnapshot?: string;
  /**
   * 'checksums' (default): every row's content. 'counts': exact row counts only (several times
   * cheaper: the cutover's choice when writes are blocked), except `checksumTables`.
   */
  contents?: 'checksums' | 'counts';
  /** Checksummed even when `contents` is 'counts' (tables copied at cutover). */
  checksumTables?: TableRef[];
  /** Rows per key-range chunk (from the source's estimates); default VERIFY_DEFAULTS.chunkRows. */
  chunkRows?: number;
  onProgress?: (event: VerifyEvent) => void;
}

export const VERIFY_DEFAULTS = {
  maxDiffs: DEFAULTS.verifyMaxDiffs,
  /** Big enough that a chunk is one cheap pass, small enough that workers share big tables. */
  chunkRows: 250_000,
  /** A differing range is bisected until it holds at most this many rows, then rows are fetched. */
  leafRows: 500,
  /** Never fetch more rows than this for one differing range (non-unique keys, hash buckets). */
  fetchCap: 20_000,
  /** Verify waits this long for a lock, then fails rather than queue behind DDL. */
  lockTimeout: '5s',
} as const;

/** How a table's rows were compared. */
export type VerifyMethod = 'key-range' | 'hash' | 'count';

/** Where a difference was found: the top-level chunk and the narrowed range inside it. */
export interface ChunkPlace {
  /** e.g. `id [1000, 2000)` or `hash bucket 3f`. */
  label: string;
  /** Key-range chunks: the bounds (half-open, undefined = unbounded). */
  low?: string;
  high?: string;
  /** The small range the rows were fetched from, e.g. `id [1250, 1258)`. */
  range: string;
}

export type RowDifference =
  | {
      kind: 'missing on target' | 'extra on target';
      chunk: ChunkPlace;
      /** Primary key column → value as text. */
      key: Record<string, string>;
    }
  | {
      kind: 'changed';
      chunk: ChunkPlace;
      key: Record<string, string>;
      columns: { name: string; source: string | null; target: string | null }[];
    }
  | {
      /** Tables without a primary key: a row text held a different number of times. */
      kind: 'content';
      chunk: ChunkPlace;
      row: string;
      sourceCount: number;
      targetCount: number;
    }
  | {
      /** A differing range too big to list (many rows with one key value). */
      kind: 'not listed';
      chunk: ChunkPlace;
      sourceRows: number;
      targetRows: number;
    };

export type TableStatus = 'match' | 'differ' | 'missing on target' | 'missing on source';

export interface TableResult {
  schema: string;
  name: string;
  status: TableStatus;
  method: VerifyMethod | undefined;
  rows: { source: number | undefined; target: number | undefined };
  chunks: { total: number; differing: number };
  /** Columns compared (present on both sides), in source order. */
  columns: string[];
  seconds: number;
  differences: RowDifference[];
  /** More differences exist than were listed (--max-diffs). */
  truncated: boolean;
}

export type SchemaObjectKind =
  | 'schema'
  | 'table'
  | 'column'
  | 'index'
  | 'constraint'
  | 'trigger'
  | 'view'
  | 'materialized view'
  | 'sequence'
  | 'extension';

export interface SchemaDifference {
  kind: SchemaObjectKind;
  /** Human name, pasteable into psql: `sales.orders`, `sales.orders.total`. */
  object: string;
  problem: 'missing on target' | 'extra on target' | 'different' | 'not valid on target' | 'disabled';
  source?: string;
  target?: string;
  /** Notes (e.g. an extension at a newer version) are reported but do not fail verification. */
  severity: 'difference' | 'note';
}

export interface SideInfo {
  connection: string;
  version: string;
  major: number;
  /** The snapshot every session of this side read in. */
  snapshot: string | undefined;
  /** WAL position when the snapshot was taken (undefined when the caller gave the snapshot). */
  lsn: string | undefined;
}

export interface VerifyReport {
  ok: boolean;
  source: SideInfo;
  target: SideInfo;
  tables: TableResult[];
  schema: SchemaDifference[];
  counts: {
    tables: number;
    tablesMatching: number;
    tablesDiffering: number;
    rowDifferences: number;
    schemaDifferences: number;
    notes: number;
  };
  seconds: number;
}

export type VerifyEvent =
  | { type: 'snapshot'; side: 'source' | 'target'; snapshot: string; lsn: string | undefined }
  | { type: 'planned'; tables: number }
  | { type: 'chunk-done'; table: TableRef; chunk: string; match: boolean; chunksDone: number }
  | { type: 'table-done'; result: TableResult; tablesDone: number; tablesTotal: number }
  | { type: 'narrowing'; table: TableRef; chunk: string }
  | { type: 'schema-done'; differences: number };
