/**
 * Where a migration stands, read from the target's ledger alone (so it works from any
 * machine, and after every local file is lost): jobs done / running / failed / pending,
 * with the worker holding each running job, bytes done and estimated, steps done.
 */
import type pg from 'pg';
import { JobLedger, type JobRow } from './jobs.js';
import { ledgerExists } from './ledger-schema.js';
import { Steps } from './steps.js';
import { qualifiedName } from '../util/sql.js';

export interface LedgerStatus {
  exists: boolean;
  source: string | undefined;
  counts: { done: number; running: number; failed: number; pending: number; total: number };
  bytesDone: number;
  bytesEstimated: number;
  rowsDone: number;
  running: { job: JobRow; worker: string }[];
  failed: JobRow[];
  steps: string[];
  jobs: JobRow[];
}

export async function readLedgerStatus(target: pg.Client, schema: string): Promise<LedgerStatus> {
  if (!(await ledgerExists(target, schema))) {
    return {
      exists: false,
      source: undefined,
      counts: { done: 0, running: 0, failed: 0, pending: 0, total: 0 },
      bytesDone: 0,
      bytesEstimated: 0,
      rowsDone: 0,
      running: [],
      failed: [],
      steps: [],
      jobs: [],
    };
  }
  const ledger = new JobLedger(schema);
  const jobs = await ledger.list(target);
  const holders = await ledger.running(target);
  const plan = await target.query<{ source: string }>(
    `SELECT source FROM ${qualifiedName(schema, 'plan')} WHERE id = 1`,
  );
  const running = jobs
    .filter((j) => j.state === 'pending' && holders.has(j.id))
    .map((job) => ({ job, worker: holders.get(job.id) ?? '?' }));
  const failed = jobs.filter((j) => j.state === 'failed');
  const done = jobs.filter((j) => j.state === 'done');
  return {
    exists: true,
    source: plan.rows[0]?.source,
    counts: {
      done: done.length,
      running: running.length,
      failed: failed.length,
      pending: jobs.length - done.length - failed.length - running.length,
      total: jobs.length,
    },
    bytesDone: done.reduce((s, j) => s + (j.bytes ?? 0), 0),
    bytesEstimated: jobs.reduce((s, j) => s + j.estimatedBytes, 0),
    rowsDone: done.reduce((s, j) => s + (j.rows ?? 0), 0),
    running,
    failed,
    steps: [...(await new Steps(schema).done(target))].sort(),
    jobs,
  };
}
