/**
 * The work queue: each worker (a session pair) takes the next task — plan a table's key
 * ranges, check one key-range chunk, or check a table by hash buckets — and runs it in its
 * own short snapshot transaction on both sides — or check a batch of small tables with one
 * query per side (table-batches.ts), a differing one going back to the queue to be compared
 * on its own. Planning a table queues its chunks ahead of smaller tables, so a big table's
 * chunks spread over all workers. The first error stops
 * every worker and is thrown once all have stopped.
 */
import { serverErrorFields } from '../errors.js';
import { SQLSTATE } from '../sqlstate.js';
import { chunkLabel, type Chunk } from '../plan/chunk.js';
import { displayName } from '../util/sql.js';
import { verifyHashed } from './hash-buckets.js';
import { planKeyRanges, verifyKeyRange } from './key-ranges.js';
import { countSql } from './row-sql.js';
import { tableResult, type TableJob } from './table-job.js';
import type { VerifyEvent } from './types.js';
import type { WorkerPair } from './worker-pair.js';
import { batchTables, isBatchable, verifyBatch } from './table-batches.js';

type Task =
  | { kind: 'plan'; job: TableJob }
  | { kind: 'chunk'; job: TableJob; chunk: Extract<Chunk, { kind: 'key-range' } | { kind: 'value' }> }
  | { kind: 'hash'; job: TableJob }
  | { kind: 'count'; job: TableJob }
  | { kind: 'batch'; jobs: TableJob[] };

/** The task that compares one table on its own. */
const tableTask = (job: TableJob): Task =>
  job.method === 'key-range' ? { kind: 'plan', job } : { kind: job.method, job };

export async function runTasks(pairs: WorkerPair[], jobs: TableJob[], options: TaskOptions): Promise<void> {
  const tasks = new TaskQueue(jobs, options);
  await Promise.all(pairs.map((pair) => tasks.worker(pair)));
  tasks.throwFailure();
}

interface TaskOptions {
  chunkRows: number;
  emit: (e: VerifyEvent) => void;
}

type TaskOf<K extends Task['kind']> = Extract<Task, { kind: K }>;

class TaskQueue {
  private readonly queue: Task[];
  private running = 0;
  private failure: unknown;
  private chunksDone = 0;
  private tablesDone = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly jobs: TableJob[],
    private readonly options: TaskOptions,
  ) {
    for (const job of jobs) job.pending = 1;
    const batchable = (job: TableJob) => isBatchable(job, options.chunkRows);
    // Jobs come largest first: the small tables' batches go last, where they fill the gaps.
    this.queue = [
      ...jobs.filter((job) => !batchable(job)).map(tableTask),
      ...batchTables(jobs.filter(batchable)).map((batch): Task => ({ kind: 'batch', jobs: batch })),
    ];
  }

  /** Takes tasks until the queue is empty and no task still running can add one, or one fails. */
  async worker(pair: WorkerPair): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) return;
      const task = this.queue.shift();
      if (!task) {
        if (this.running === 0) return;
        await new Promise<void>((resolve) => this.waiting.push(resolve));
        continue;
      }
      this.running++;
      try {
        await this.run(pair, task);
      } catch (err) {
        this.failure ??= err;
      } finally {
        this.running--;
        this.waiting.splice(0).forEach((wake) => wake());
      }
    }
  }

  throwFailure(): void {
    const failure = this.failure;
    if (failure !== undefined) throw failure instanceof Error ? failure : new Error('verify worker failed');
  }

  private async run(pair: WorkerPair, task: Task): Promise<void> {
    if (task.kind === 'batch') return this.runBatch(pair, task.jobs);
    const { job } = task;
    job.startedAt ??= Date.now();
    const name = displayName(job.ref.schema, job.ref.name);
    switch (task.kind) {
      case 'plan':
        await this.plan(pair, job, name);
        break;
      case 'chunk':
        await this.chunk(pair, task, name);
        break;
      case 'hash': {
        const match = await pair.task(
          name,
          () => verifyHashed(pair, job, this.narrowing(job, 'hash buckets')),
          name,
        );
        this.chunkDone(job, 'hash buckets', match);
        break;
      }
      case 'count':
        await this.count(pair, job, name);
        break;
    }
    this.finishTask(job);
  }

  private narrowing(job: TableJob, chunk: string): () => void {
    return () => this.options.emit({ type: 'narrowing', table: job.ref, chunk });
  }

  private chunkDone(job: TableJob, chunk: string, match: boolean): void {
    this.options.emit({ type: 'chunk-done', table: job.ref, chunk, match, chunksDone: ++this.chunksDone });
  }

  private finishTask(job: TableJob): void {
    job.pending--;
    if (job.pending > 0) return;
    job.finishedAt = Date.now();
    this.tablesDone++;
    this.options.emit({
      type: 'table-done',
      result: tableResult(job),
      tablesDone: this.tablesDone,
      tablesTotal: this.jobs.length,
    });
  }

  /** Plans a table's key ranges and queues its chunks ahead of everything else. */
  private async plan(pair: WorkerPair, job: TableJob, name: string): Promise<void> {
    const chunks = await pair.task(
      `the key range of ${name}`,
      () => planKeyRanges(pair, job, this.options.chunkRows),
      name,
    );
    job.chunksTotal = chunks.length;
    job.pending += chunks.length;
    this.queue.unshift(...chunks.map((chunk): Task => ({ kind: 'chunk', job, chunk })));
  }

  private async chunk(pair: WorkerPair, task: TaskOf<'chunk'>, name: string): Promise<void> {
    const label = chunkLabel(task.chunk);
    const match = await pair.task(
      `${name} ${label}`,
      () => verifyKeyRange(pair, task.job, task.chunk, this.narrowing(task.job, label)),
      name,
    );
    this.chunkDone(task.job, label, match);
  }

  private async count(pair: WorkerPair, job: TableJob, name: string): Promise<void> {
    const [s, t] = await pair.task(
      name,
      () => pair.both<{ n: string }>('the row count', countSql(job.shape)),
      name,
    );
    job.sourceRows = Number(s[0]?.n ?? 0);
    job.targetRows = Number(t[0]?.n ?? 0);
    job.chunksTotal = 1;
    const match = job.sourceRows === job.targetRows;
    if (!match) job.chunksDiffering = 1;
    this.chunkDone(job, 'row count', match);
  }

  private async runBatch(pair: WorkerPair, batch: TableJob[]): Promise<void> {
    const started = Date.now();
    for (const job of batch) job.startedAt ??= started;
    let differing: Set<TableJob>;
    try {
      differing = new Set(
        await pair.task(`${batch.length} small table(s)`, () => verifyBatch(pair, batch), undefined),
      );
    } catch (err) {
      // A table of the batch the role may not read whole (row-level security, no SELECT):
      // compared one by one, the refusal names that table and its fix.
      if (!readRefused(err)) throw err;
      differing = new Set(batch);
    }
    for (const job of batch) {
      if (differing.has(job)) continue;
      this.chunkDone(job, 'checksum', job.sourceRows === job.targetRows);
      this.finishTask(job);
    }
    // Compared again on its own: that finds and names the rows.
    this.queue.unshift(...[...differing].map(tableTask));
  }
}

/** 42501 (insufficient privilege) from the server, itself or as the cause of our error. */
function readRefused(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  const denied = SQLSTATE.insufficientPrivilege;
  return serverErrorFields(err)?.code === denied || serverErrorFields(cause)?.code === denied;
}
