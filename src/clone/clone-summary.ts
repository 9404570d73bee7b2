/** The summary a clone returns: per table and in all, from the ledger's jobs. */
import { describeConnection } from '../connect/resolve.js';
import type { JobRow } from '../ledger/jobs.js';
import { tableKey } from '../copy/table-columns.js';
import type { CloneRun } from './clone-run.js';
import type { CloneSummary, TableSummary } from './clone-types.js';

/** Also writes the jobs' states to the run directory. */
export function summarize(
  run: Pick<CloneRun, 'o' | 'started' | 'phases' | 'warnings' | 'files'>,
  jobs: JobRow[],
  snapshot: string | undefined,
  complete: boolean,
): CloneSummary {
  const { o } = run;
  run.files.writeStatus(jobs);
  const byTable = new Map<string, TableSummary>();
  for (const j of jobs) {
    const key = tableKey(j.table);
    const s = byTable.get(key) ?? {
      table: j.table,
      rows: 0,
      bytes: 0,
      seconds: 0,
      jobs: 0,
      state: 'done' as const,
    };
    s.rows += j.rows ?? 0;
    s.bytes += j.bytes ?? 0;
    s.seconds += j.seconds ?? 0;
    s.jobs++;
    if (j.state === 'failed') s.state = 'failed';
    else if (j.state === 'pending' && s.state !== 'failed') s.state = 'pending';
    byTable.set(key, s);
  }
  const tables = [...byTable.values()].sort((a, b) => b.bytes - a.bytes);
  const failed = jobs.filter((j) => j.state === 'failed');
  return {
    ok: complete && failed.length === 0 && jobs.every((j) => j.state === 'done' || o.planOnly),
    source: describeConnection(o.source),
    target: describeConnection(o.target),
    seconds: (Date.now() - run.started) / 1000,
    phases: run.phases.times.map((t) => ({ phase: t.name, seconds: t.ms / 1000, state: t.state })),
    tables,
    rows: tables.reduce((s, t) => s + t.rows, 0),
    bytes: tables.reduce((s, t) => s + t.bytes, 0),
    failed,
    warnings: run.warnings,
    snapshot,
    runDir: o.runDir,
  };
}
