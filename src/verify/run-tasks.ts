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

export async function runTasks(
  pairs: WorkerPair[],
  jobs: TableJob[],
  options: { chunkRows: number; emit: (e: VerifyEvent) => void },
): Promise<void> {
  for (const job of jobs) job.pending = 1;
  const batchable = (job: TableJob) => isBatchable(job, options.chunkRows);
  // Jobs come largest first: the small tables' batches go last, where they fill the gaps.
  const queue: Task[] = [
    ...jobs.filter((job) => !batchable(job)).map(tableTask),
    ...batchTables(jobs.filter(batchable)).map((batch): Task => ({ kind: 'batch', jobs: batch })),
  ];
  let running = 0;
  let failure: unknown;
  let chunksDone = 0;
  let tablesDone = 0;
  const waiting: (() => void)[] = [];
  const changed = () => waiting.splice(0).forEach((wake) => wake());

  const finishTask = (job: TableJob) => {
    job.pending--;
    if (job.pending > 0) return;
    job.finishedAt = Date.now();
    tablesDone++;
    options.emit({ type: 'table-done', result: tableResult(job), tablesDone, tablesTotal: jobs.length });
  };

  const runBatch = async (pair: WorkerPair, batch: TableJob[]) => {
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
      const match = job.sourceRows === job.targetRows;
      options.emit({
        type: 'chunk-done',
        table: job.ref,
        chunk: 'checksum',
        match,
        chunksDone: ++chunksDone,
      });
      finishTask(job);
    }
    // Compared again on its own: that finds and names the rows.
    queue.unshift(...[...differing].map(tableTask));
  };

  const run = async (pair: WorkerPair, task: Task) => {
    if (task.kind === 'batch') return runBatch(pair, task.jobs);
    const { job } = task;
    job.startedAt ??= Date.now();
    const name = displayName(job.ref.schema, job.ref.name);
    const narrowing = (chunk: string) => () => options.emit({ type: 'narrowing', table: job.ref, chunk });
    switch (task.kind) {
      case 'plan': {
        const chunks = await pair.task(
          `the key range of ${name}`,
          () => planKeyRanges(pair, job, options.chunkRows),
          name,
        );
        job.chunksTotal = chunks.length;
        job.pending += chunks.length;
        queue.unshift(...chunks.map((chunk): Task => ({ kind: 'chunk', job, chunk })));
        break;
      }
      case 'chunk': {
        const label = chunkLabel(task.chunk);
        const match = await pair.task(
          `${name} ${label}`,
          () => verifyKeyRange(pair, job, task.chunk, narrowing(label)),
          name,
        );
        options.emit({ type: 'chunk-done', table: job.ref, chunk: label, match, chunksDone: ++chunksDone });
        break;
      }
      case 'hash': {
        const match = await pair.task(name, () => verifyHashed(pair, job, narrowing('hash buckets')), name);
        options.emit({
          type: 'chunk-done',
          table: job.ref,
          chunk: 'hash buckets',
          match,
          chunksDone: ++chunksDone,
        });
        break;
      }
      case 'count': {
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
        options.emit({
          type: 'chunk-done',
          table: job.ref,
          chunk: 'row count',
          match,
          chunksDone: ++chunksDone,
        });
        break;
      }
    }
    finishTask(job);
  };

  const worker = async (pair: WorkerPair) => {
    for (;;) {
      if (failure !== undefined) return;
      const task = queue.shift();
      if (!task) {
        if (running === 0) return;
        await new Promise<void>((resolve) => waiting.push(resolve));
        continue;
      }
      running++;
      try {
        await run(pair, task);
      } catch (err) {
        failure ??= err;
      } finally {
        running--;
        changed();
      }
    }
  };

  await Promise.all(pairs.map(worker));
  if (failure !== undefined) throw failure instanceof Error ? failure : new Error('verify worker failed');
}

/** 42501 (insufficient privilege) from the server, itself or as the cause of our error. */
function readRefused(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  const denied = SQLSTATE.insufficientPrivilege;
  return serverErrorFields(err)?.code === denied || serverErrorFields(cause)?.code === denied;
}
