/**
 * A pool of copy workers on one machine: reads what every worker needs once (column
 * catalogs of both sides, which tables may be truncated and frozen), then runs `jobs`
 * workers until the ledger has no pending job left. Used by `clone` and by `worker`.
 *
 * How many small tables one transaction may load (see copy-worker.ts) follows from both
 * servers' lock tables: each table costs a few locks on each side (the table, its TOAST
 * table and index, its indexes, the job's advisory lock), and every worker holds its group's
 * at once, beside pgconvoy's index builds and the application's own sessions.
 */
import { withClients } from '../connect/session.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { JobLedger } from '../ledger/jobs.js';
import { referencedTables } from './target-checks.js';
import { CopyWorker, type CopyEvent, type PullContext } from './copy-worker.js';
import { readColumnCatalog, tableKey, type ExcludedColumns } from './table-columns.js';
import { readPartitionedTables } from './partitioned-target.js';
import { lockBudget, readLockCapacity, type LockCapacity } from '../inventory/lock-capacity.js';

/** Lock table entries one small table is counted for, on either side. */
const LOCKS_PER_SMALL_TABLE = 8;
/** Past this, a bigger group saves nothing measurable and a failed group costs more to redo. */
const MAX_GROUP = 100;

/** Small tables per transaction that fit both sides' lock budgets with `jobs` workers (and as many index builds). */
export function groupSize(capacities: LockCapacity[], jobs: number): number {
  const budget = Math.min(...capacities.map((c) => lockBudget(c, 2 * jobs)));
  return Math.max(1, Math.min(MAX_GROUP, Math.floor(budget / LOCKS_PER_SMALL_TABLE)));
}

export interface CopyPoolOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledger: JobLedger;
  /** Exported source snapshot all workers import; undefined: each worker reads its own. */
  snapshot: string | undefined;
  /** Losing `snapshot` is fatal (an online start), not a warning. */
  snapshotRequired: boolean;
  jobs: number;
  /** Source columns left behind (`--exclude-column`). */
  excludeColumns: ExcludedColumns;
  workerPrefix: string;
  maxAttempts: number;
  /** Whether target sessions set session_replication_role = replica. */
  replicationRole: boolean;
  signal: AbortSignal | undefined;
  onEvent: (e: CopyEvent) => void;
  /** `clone --via fdw`: the target pulls the rows itself (fdw-pull.ts). */
  pull?: PullContext;
}

export async function runCopyPool(o: CopyPoolOptions): Promise<void> {
  const session = { applicationName: 'pgconvoy copy setup' };
  const [sourceRead, targetRead] = await withClients(
    o.source,
    o.target,
    async (source, target) => {
      // One query at a time per session (node-postgres no longer queues them for us); the two
      // servers are read at once.
      const sourceFacts = async () =>
        [await readColumnCatalog(source), await readLockCapacity(source)] as const;
      const targetFacts = async () => {
        const columns = await readColumnCatalog(target);
        const refs = await referencedTables(target);
        const parts = await readPartitionedTables(target);
        return [columns, refs, parts, await readLockCapacity(target)] as const;
      };
      return Promise.all([sourceFacts(), targetFacts()]);
    },
    session,
  );
  const [targetColumns, referenced, partitioned] = targetRead;
  const sourceColumns = sourceRead[0];
  const capacities = [sourceRead[1], targetRead[3]];
  // TRUNCATE is refused on a table that a foreign key points at.
  const truncatable = new Set([...sourceColumns.keys()].filter((k) => !referenced.has(k)));
  const snapshotLost = { value: false };
  // A worker that stops with an error (a table the role may not read whole, say) stops the
  // others too: their in-flight jobs roll back and stay pending for the next run.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  if (o.signal?.aborted) stop.abort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const workers = Array.from({ length: o.jobs }, (_, i) =>
    new CopyWorker(`${o.workerPrefix}-${i + 1}`, {
      source: o.source,
      target: o.target,
      ledger: o.ledger,
      snapshot: o.snapshot,
      sourceColumns,
      targetColumns,
      excludeColumns: o.excludeColumns,
      truncatable,
      targetPartitioned: partitioned,
      replicationRole: o.replicationRole,
      groupSize: groupSize(capacities, o.jobs),
      maxAttempts: o.maxAttempts,
      signal: stop.signal,
      snapshotLost,
      snapshotRequired: o.snapshotRequired,
      onEvent: o.onEvent,
      ...(o.pull ? { pull: o.pull } : {}),
    })
      .run()
      .catch((err: unknown) => {
        stop.abort();
        throw err;
      }),
  );
  const results = await Promise.allSettled(workers);
  o.signal?.removeEventListener('abort', onAbort);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

export { tableKey };
