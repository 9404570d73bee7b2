/**
 * A copy worker: one source session (in the shared snapshot) and one target session, taking
 * jobs from the ledger until none is left. Each job is one target transaction:
 *
 *   BEGIN; claim job (FOR UPDATE SKIP LOCKED); [TRUNCATE ONLY t;] COPY … FROM STDIN [FREEZE];
 *   mark job done; COMMIT
 *
 * (A target table that is partitioned is truncated with its partitions and loaded without
 * FREEZE: see partitioned-target.ts.)
 *
 * Small tables (whole-table jobs up to SMALL_JOB_BYTES) cost more in round trips, catalog
 * work and commits than in rows: a worker that claims one claims up to `groupSize` more with
 * it and loads them all in that one target transaction (and one source transaction), their
 * done marks in one statement before the COMMIT. Still exactly once: the group's rows and
 * marks commit together or not at all. A group that fails is not retried as a group: its
 * jobs are run one by one next, so a failure is recorded against the table that caused it.
 *
 * Any failure rolls the whole job back. Transient failures (see transient.ts) are retried
 * with backoff after reconnecting both sessions; a job that keeps failing is marked failed
 * and the worker goes on with the next one. A job refused for want of rights (row-level
 * security, no SELECT: see read-denied.ts) is marked failed and stops the worker with that
 * error: no other job could do better, and the user must fix the role first.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly } from '../connect/session.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import type { JobLedger, JobRow } from '../ledger/jobs.js';
import { backoffMs, retry, sleep } from '../util/wait.js';
import { isTransient, SQLSTATE } from '../sqlstate.js';
import { copyStream, type CopyStreamResult } from './copy-stream.js';
import { beginInSnapshot, prepareSourceSession } from './source-snapshot.js';
import { planTableColumns, tableKey, type ColumnCatalog, type ExcludedColumns } from './table-columns.js';
import { prepareTargetSession } from './target-session.js';
import { isAccessDenied } from './read-denied.js';
import { targetRelation } from './partitioned-target.js';
import { preparePullSession, pullRows } from './fdw-pull.js';
import { writeLockHeld } from './source-write-lock.js';
import type { TableRef } from '../plan/chunk.js';

export type CopyEvent =
  | { type: 'job-start'; worker: string; job: JobRow }
  | { type: 'job-done'; worker: string; job: JobRow; rows: number; bytes: number; seconds: number }
  | {
      type: 'job-retry';
      worker: string;
      job: JobRow | undefined;
      attempt: number;
      error: string;
      delayMs: number;
    }
  | { type: 'job-failed'; worker: string; job: JobRow; error: string }
  | { type: 'bytes'; n: number }
  | { type: 'warning'; message: string };

/** Whole-table jobs up to this estimated size are loaded several to a transaction. */
export const SMALL_JOB_BYTES = 1024 ** 2;

export interface WorkerContext {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledger: JobLedger;
  snapshot: string | undefined;
  sourceColumns: ColumnCatalog;
  targetColumns: ColumnCatalog;
  excludeColumns: ExcludedColumns;
  /** Tables a job that owns them whole may truncate (and load with COPY FREEZE unless partitioned). */
  truncatable: Set<string>;
  /** Target tables that are partitioned (tableKey()s). */
  targetPartitioned: Set<string>;
  replicationRole: boolean;
  /** At most this many small tables per transaction (1: one job per transaction). */
  groupSize: number;
  /** Attempts per job before it is marked failed. */
  maxAttempts: number;
  onEvent: (e: CopyEvent) => void;
  signal: AbortSignal | undefined;
  /** Shared between workers: set once the source snapshot could not be imported any more. */
  snapshotLost: { value: boolean };
  /**
   * The copy is only worth anything in `snapshot` (an online start: the slot's changes begin
   * exactly there): losing it is fatal instead of a warning and a newer snapshot.
   */
  snapshotRequired: boolean;
  /** `clone --via fdw`: the target pulls each job's rows itself (fdw-pull.ts). */
  pull?: PullContext;
}

export interface PullContext {
  /** The foreign table of each source table, by tableKey(). */
  foreignTables: ReadonlyMap<string, TableRef>;
  /** The source session whose SHARE locks keep writers out (source-write-lock.ts). */
  lockHolderPid: number | undefined;
}

export class CopyWorker {
  private sourceClient: pg.Client | undefined;
  private targetClient: pg.Client | undefined;
  /** Jobs of a group that failed: each is run alone next. */
  private readonly alone: number[] = [];

  constructor(
    readonly name: string,
    private readonly ctx: WorkerContext,
  ) {}

  private async connect(): Promise<{ source: pg.Client; target: pg.Client }> {
    if (!this.sourceClient) {
      const source = await openClient(this.ctx.source, { applicationName: `pgconvoy copy ${this.name}` });
      await prepareSourceSession(source);
      this.sourceClient = source;
    }
    if (!this.targetClient) {
      const target = await openClient(this.ctx.target, { applicationName: `pgconvoy copy ${this.name}` });
      await prepareTargetSession(target, { replicationRole: this.ctx.replicationRole });
      if (this.ctx.pull) await preparePullSession(target);
      this.targetClient = target;
    }
    return { source: this.sourceClient, target: this.targetClient };
  }

  private async disconnect(): Promise<void> {
    const clients = [this.sourceClient, this.targetClient];
    this.sourceClient = this.targetClient = undefined;
    await Promise.all(clients.map((c) => closeQuietly(c)));
  }

  /** Works until the queue is empty (or the signal aborts). */
  async run(): Promise<void> {
    let consecutiveFailures = 0;
    // Interrupted: close both sessions now, which aborts an in-flight COPY (its transaction rolls back).
    const onAbort = () => void this.disconnect();
    this.ctx.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      while (!this.ctx.signal?.aborted) {
        let job: JobRow | undefined;
        let group: JobRow[] = [];
        try {
          const { source, target } = await this.connect();
          await target.query('BEGIN');
          const aloneId = this.alone.shift();
          job =
            aloneId === undefined
              ? await this.ctx.ledger.claimNext(target)
              : await this.ctx.ledger.claim(target, aloneId);
          if (!job) {
            await target.query('ROLLBACK');
            // Done or held by another worker meanwhile.
            if (aloneId !== undefined) continue;
            // Jobs held by other workers may come back if their holder dies: wait for them.
            if ((await this.ctx.ledger.pendingCount(target)) === 0) return;
            await sleep(1000, this.ctx.signal);
            continue;
          }
          group =
            aloneId === undefined && isSmall(job)
              ? [
                  job,
                  ...(await this.ctx.ledger.claimSmall(target, {
                    first: job,
                    limit: this.ctx.groupSize - 1,
                    maxBytes: SMALL_JOB_BYTES,
                  })),
                ]
              : [job];
          // One source transaction per job (or group), in the shared snapshot: the locks it
          // takes on the source end with it, so the application's ALTER TABLE on a table
          // copied early does not wait for the whole copy.
          await this.beginSourceTransaction(source);
          await this.runJobs(source, target, group);
          // The job is done and committed: a source session lost now only costs a reconnect.
          await source.query('COMMIT').catch(() => this.disconnect());
          consecutiveFailures = 0;
        } catch (err) {
          await this.disconnect();
          if (this.ctx.signal?.aborted) return;
          if (err instanceof PgconvoyError && err.code === 'SNAPSHOT_LOST') throw err;
          if (group.length > 1) {
            // Nothing of the group was committed; which table failed is found one by one.
            this.alone.push(...group.map((j) => j.id));
            continue;
          }
          consecutiveFailures++;
          await this.handleFailure(job, err, consecutiveFailures);
        }
      }
    } finally {
      this.ctx.signal?.removeEventListener('abort', onAbort);
      await this.disconnect();
    }
  }

  private async beginSourceTransaction(source: pg.Client): Promise<void> {
    const snapshot = this.ctx.snapshotLost.value ? undefined : this.ctx.snapshot;
    try {
      await beginInSnapshot(source, snapshot);
    } catch (err) {
      // The exporting session is gone (source restarted, or the exporter died).
      if (serverErrorFields(err)?.code !== SQLSTATE.invalidParameterValue || !snapshot) throw err;
      await source.query('ROLLBACK');
      if (this.ctx.snapshotRequired)
        throw new PgconvoyError(
          `the source snapshot ${snapshot} could not be imported any more: ${errorMessage(err)}`,
          {
            code: 'SNAPSHOT_LOST',
            exitCode: EXIT.source,
            hint: "an online start must copy every table in the replication slot's own snapshot, or changes would be applied twice or lost: run pgconvoy teardown with the same --source and --target, then pgconvoy start again",
            cause: err,
          },
        );
      if (!this.ctx.snapshotLost.value) {
        this.ctx.snapshotLost.value = true;
        this.ctx.onEvent({
          type: 'warning',
          message:
            'the source snapshot was lost (the source restarted?); remaining jobs read a newer snapshot: the copy is consistent only if nothing wrote to the source meanwhile — run pgconvoy verify',
        });
      }
      await beginInSnapshot(source, undefined);
    }
  }

  /** Loads the claimed jobs in the open target transaction, marks them done and commits. */
  private async runJobs(source: pg.Client, target: pg.Client, jobs: JobRow[]): Promise<void> {
    const first = jobs[0]!;
    await target.query('SELECT pg_catalog.set_config($1, $2, true)', [
      'application_name',
      `pgconvoy copy ${this.name}: job ${first.id}`,
    ]);
    // A whole-table job owns its table: truncating it in this transaction makes a retry start
    // clean and lets COPY FREEZE write the rows frozen (no second write of every page later).
    // The group's tables are truncated by one statement: one round trip, not one per table.
    const owned = jobs.filter((job) => this.owns(job));
    if (owned.length > 0)
      await target.query(
        `TRUNCATE ${owned.map((job) => targetRelation(job.table, this.ctx.targetPartitioned)).join(', ')}`,
      );
    const results: { job: JobRow; rows: number; bytes: number; seconds: number }[] = [];
    for (const job of jobs) {
      const started = Date.now();
      this.ctx.onEvent({ type: 'job-start', worker: this.name, job });
      const result = await this.load(source, target, job);
      results.push({ job, ...result, seconds: (Date.now() - started) / 1000 });
    }
    await this.ctx.ledger.completeAll(
      target,
      results.map((r) => ({ id: r.job.id, rows: r.rows, bytes: r.bytes, seconds: r.seconds })),
      { worker: this.name, snapshot: this.ctx.snapshotLost.value ? undefined : this.ctx.snapshot },
    );
    await target.query('COMMIT');
    for (const r of results)
      this.ctx.onEvent({
        type: 'job-done',
        worker: this.name,
        job: r.job,
        rows: r.rows,
        bytes: r.bytes,
        seconds: r.seconds,
      });
  }

  /** One job's rows, inside the open transactions on both sides. */
  private async load(source: pg.Client, target: pg.Client, job: JobRow): Promise<CopyStreamResult> {
    const plan = planTableColumns(
      job.table,
      this.ctx.sourceColumns,
      this.ctx.targetColumns,
      this.ctx.excludeColumns,
    );
    // Truncated by runJobs when owned. PostgreSQL refuses FREEZE on a partitioned table (its
    // partitions get the rows).
    const freeze = this.owns(job) && !this.ctx.targetPartitioned.has(tableKey(job.table));
    if (this.ctx.pull) return this.pull(source, target, job, plan.columns, this.ctx.pull);
    return copyStream(source, target, {
      table: job.table,
      columns: plan.columns,
      chunk: job.chunk,
      format: job.copyFormat === 'binary' && plan.format === 'binary' ? 'binary' : 'text',
      freeze,
      onBytes: (n) => this.ctx.onEvent({ type: 'bytes', n }),
    });
  }

  /** Whether the job loads its whole table, which it may then truncate first. */
  private owns(job: JobRow): boolean {
    return (
      job.chunk.kind === 'whole' && job.chunkCount === 1 && this.ctx.truncatable.has(tableKey(job.table))
    );
  }

  /** The rows pulled by the target itself; bytes are the plan's estimate (pgconvoy sees no row). */
  private async pull(
    source: pg.Client,
    target: pg.Client,
    job: JobRow,
    columns: string[],
    pull: PullContext,
  ): Promise<{ rows: number; bytes: number }> {
    const key = tableKey(job.table);
    const foreign = pull.foreignTables.get(key);
    if (!foreign) throw new Error(`no foreign table for ${key}`);
    const { rows } = await pullRows(target, {
      table: job.table,
      foreign,
      columns,
      sourceColumns: this.ctx.sourceColumns.get(key) ?? [],
      targetColumns: this.ctx.targetColumns.get(key) ?? [],
      chunk: job.chunk,
    });
    // Held until now means held since the snapshot: no write reached the table in between.
    const pid = pull.lockHolderPid;
    if (pid !== undefined && !this.ctx.snapshotLost.value && !(await writeLockHeld(source, pid, job.table))) {
      this.ctx.snapshotLost.value = true;
      this.ctx.onEvent({
        type: 'warning',
        message:
          'the source session that kept writers out of the tables is gone (the source restarted?); the remaining jobs read the source as it is: the copy is consistent only if nothing wrote to the source meanwhile — run pgconvoy verify',
      });
    }
    this.ctx.onEvent({ type: 'bytes', n: job.estimatedBytes });
    return { rows, bytes: job.estimatedBytes };
  }

  private async handleFailure(job: JobRow | undefined, err: unknown, consecutive: number): Promise<void> {
    // The hint travels with the job: the summary lists failed jobs long after the error.
    const first = errorMessage(err).split('\n')[0] ?? 'unknown error';
    const message = err instanceof PgconvoyError && err.hint ? `${first} (${err.hint})` : first;
    const transient = isTransient(err);
    const attempts = (job?.attempts ?? 0) + 1;
    const final = job !== undefined && (!transient || attempts >= this.ctx.maxAttempts);
    if (!transient && job === undefined) throw err; // cannot even connect or claim: not ours to retry
    const denied = isAccessDenied(err);
    if (!final && consecutive > this.ctx.maxAttempts * 3) throw err; // a server that never comes back
    // Record the attempt on a fresh connection (the job's transaction is gone).
    const delayMs = backoffMs(Math.min(consecutive, 8));
    if (job) {
      try {
        await retry(
          async () => {
            const { target } = await this.connect();
            await this.ctx.ledger.recordFailure(target, job.id, message, final);
          },
          {
            retryable: isTransient,
            attempts: this.ctx.maxAttempts * 3,
            delayMs: (i) => backoffMs(Math.min(i, 8)),
            signal: this.ctx.signal,
            onRetry: () => this.disconnect(),
          },
        );
      } catch (again) {
        // Interrupted: the job stays pending (its transaction rolled back), which is all that matters.
        if (this.ctx.signal?.aborted) return;
        throw again;
      }
    }
    if (final && job) {
      this.ctx.onEvent({ type: 'job-failed', worker: this.name, job, error: message });
      if (denied) throw err;
      return;
    }
    this.ctx.onEvent({
      type: 'job-retry',
      worker: this.name,
      job,
      attempt: attempts,
      error: message,
      delayMs,
    });
    await sleep(delayMs, this.ctx.signal);
  }
}

/** A job that may share its transaction with others: a whole small table. */
function isSmall(job: JobRow): boolean {
  return job.chunk.kind === 'whole' && job.chunkCount === 1 && job.estimatedBytes <= SMALL_JOB_BYTES;
}
