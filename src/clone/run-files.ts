/**
 * The run directory Flexy users know: the schema files (written by the schema stage), a
 * job status file with one line per job, and one log file per run.
 */
import path from 'node:path';
import type { JobRow } from '../ledger/jobs.js';
import { makePrivateDir, writePrivateFile } from '../util/private-files.js';
import { redact } from '../util/redact.js';
import { RunLog } from '../util/run-log.js';
import { displayName } from '../util/sql.js';

export class RunFiles {
  readonly statusFile: string;
  private readonly runLog: RunLog;

  constructor(readonly dir: string) {
    makePrivateDir(dir);
    this.runLog = new RunLog(dir, 'run');
    this.statusFile = path.join(dir, 'migration_jobs_status.tsv');
  }

  get logFile(): string {
    return this.runLog.file;
  }

  log(line: string): void {
    this.runLog.line(line);
  }

  /** Rewrites the status file from the ledger's view of every job. */
  writeStatus(jobs: readonly JobRow[]): void {
    const header = [
      'table',
      'chunk',
      'state',
      'rows',
      'bytes',
      'seconds',
      'attempts',
      'worker',
      'error',
    ].join('\t');
    const lines = jobs.map((j) =>
      [
        displayName(j.table.schema, j.table.name),
        j.chunkLabel,
        j.state,
        j.rows ?? '',
        j.bytes ?? '',
        j.seconds === null ? '' : j.seconds.toFixed(2),
        j.attempts,
        j.doneBy ?? '',
        (j.error ?? '').replace(/[\t\n]/g, ' '),
      ].join('\t'),
    );
    writePrivateFile(this.statusFile, redact([header, ...lines].join('\n') + '\n'));
  }
}
