/**
 * What `pgconvoy clone` takes, tells while it runs, and returns: shared by the phases of
 * run-clone.ts, the dry run, online start and the progress display.
 */
import type pg from 'pg';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { TableInfo } from '../inventory/inventory.js';
import type { TableFilter } from '../inventory/table-filter.js';
import type { JobRow } from '../ledger/jobs.js';
import type { TableRef } from '../plan/chunk.js';
import type { SplitPlan as ChunkPlan } from '../plan/split-table.js';
import type { CopyEvent } from '../copy/copy-worker.js';
import type { ExcludedColumns } from '../copy/table-columns.js';
import type { ExistingRowsPolicy } from '../copy/target-checks.js';
import type { CopyMethod } from './via-fdw.js';

export type PhaseName =
  | 'connect'
  | 'schema'
  | 'plan'
  | 'copy'
  | 'indexes'
  | 'post-data'
  | 'sequences'
  | 'large-objects'
  | 'extension-data'
  | 'materialized-views'
  | 'analyze';

export type CloneEvent =
  | CopyEvent
  | {
      type: 'phase';
      phase: PhaseName;
      state: 'start' | 'done' | 'skipped';
      detail?: string;
      seconds?: number;
    }
  | { type: 'planned'; jobs: JobRow[]; totalBytes: number }
  /** One build: a table's indexes and constraints, or those of several small tables together. */
  | { type: 'tables-indexed'; tables: TableRef[]; items: number; seconds: number }
  | { type: 'info'; message: string };

/** Chooses the chunks of one table (whole, key ranges, block ranges). */
export type ChunkPlanner = (source: pg.Client, table: TableInfo, serverMajor: number) => Promise<ChunkPlan>;

export interface CloneOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  jobs: number;
  indexJobs: number;
  ledgerSchema: string;
  runDir: string;
  schema: 'apply' | 'skip';
  indexes: 'before' | 'after';
  createDatabase: boolean;
  existingRows: ExistingRowsPolicy;
  pgBin: string | undefined;
  pathEnv: string | undefined;
  noOwner: boolean;
  noPrivileges: boolean;
  /** Create the roles the source database refers to on the target, before the schema (`--roles`). */
  roles?: boolean;
  /** With `roles`: their passwords too (`--role-passwords`). */
  rolePasswords?: boolean;
  /** pg_restore's --no-tablespaces. */
  noTablespaces?: boolean;
  /** `--tablespace-map OLD=NEW`: the schema's tablespace OLD is NEW on the target. */
  tablespaceMap?: ReadonlyMap<string, string>;
  /** Set by online start, which has prepared the target itself (schema/…, clone/prepare-target.ts). */
  targetPrepared?: boolean;
  maxAttempts: number;
  maintenanceWorkMem: string;
  /** Only plan (write jobs into the ledger) and stop: workers elsewhere do the copy. */
  planOnly: boolean;
  /** Use this exported snapshot instead of exporting one (online start). */
  snapshot: string | undefined;
  planChunks: ChunkPlanner;
  /** Flexy's queue file: only the tables it lists, cut as it says (see plan/queue-plan.ts). */
  queueFile?: { text: string; fileName: string; allowGaps: boolean };
  /** VACUUM (ANALYZE) chunked tables after their load (`--no-vacuum`: ANALYZE only). */
  vacuum?: boolean;
  /** How long a source table lock is waited for (pg_dump's --lock-wait-timeout; start's publication). */
  lockWaitTimeoutMs?: number;
  /** pg_dump's -n/-N/-t/-T/--exclude-table-data/--filter (inventory/table-filter.ts). */
  filter?: TableFilter | undefined;
  /** Source columns left behind (`--exclude-column`), as excludedKey()s. */
  excludeColumns: ExcludedColumns;
  /** Names the workers of this process (`host-pid-N`). */
  workerPrefix: string;
  /** `fdw`: the target pulls the rows through postgres_fdw (via-fdw.ts); default `copy`. */
  via?: CopyMethod;
  /** How the target server reaches the source, for `via: 'fdw'` (`--source-from-target`). */
  sourceFromTarget?: string | undefined;
  signal: AbortSignal | undefined;
  onEvent: (e: CloneEvent) => void;
}

export interface TableSummary {
  table: TableRef;
  rows: number;
  bytes: number;
  seconds: number;
  jobs: number;
  state: 'done' | 'failed' | 'pending';
}

export interface CloneSummary {
  ok: boolean;
  source: string;
  target: string;
  seconds: number;
  phases: { phase: PhaseName; seconds: number; state: 'done' | 'skipped' }[];
  tables: TableSummary[];
  rows: number;
  bytes: number;
  failed: JobRow[];
  warnings: string[];
  snapshot: string | undefined;
  runDir: string;
}
