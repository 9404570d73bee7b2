/**
 * What only the process doing the work knows, kept for its --http page and /metrics: the
 * event log, bytes copied so far (in-flight chunks included, where the ledger counts a
 * chunk once it commits), what each worker does now, index builds, the cutover's steps,
 * verification results, and errors with their codes and hints.
 *
 * Memory stays flat: the log and the error list keep the latest entries only.
 */
import type { CloneEvent } from '../clone/run-clone.js';
import type { CutoverEvent } from '../cutover/run-cutover.js';
import type { RelayEvent, RelayProgressEvent } from '../relay/run-relay.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import type { VerifyEvent } from '../verify/types.js';
import { displayName } from '../util/sql.js';
import { redact } from '../util/redact.js';

const KEEP_EVENTS = 300;
const KEEP_ERRORS = 50;

export interface LogEntry {
  at: string;
  level: 'info' | 'warning' | 'error';
  message: string;
}

export interface ErrorEntry {
  at: string;
  code: string;
  message: string;
  hint: string | undefined;
}

export interface VerifyProgress {
  tablesDone: number;
  tablesTotal: number;
  tablesDiffering: number;
  chunksChecked: number;
  chunksDiffering: number;
  differing: string[];
}

export interface LiveView {
  command: string;
  startedAt: string;
  phase: string | undefined;
  /** Bytes this process has streamed into the target, chunks in flight included. */
  bytesCopied: number;
  workers: { worker: string; what: string; since: string }[];
  indexBuilds: { table: string; items: number; seconds: number }[];
  cutoverSteps: { step: string; state: 'start' | 'done'; ms: number | undefined }[];
  verify: VerifyProgress | undefined;
  /** The latest progress of the relay this process runs (its own lag: WAL received, not yet committed). */
  relay: (Omit<RelayProgressEvent, 'type'> & { at: string }) | undefined;
  errors: ErrorEntry[];
  errorsByCode: Record<string, number>;
  events: LogEntry[];
}

/** The hint for a copy job that failed for good: the CLI's resume advice. */
export const FAILED_JOB_HINT =
  'fix the cause, then run the same command again: failed jobs are retried, done ones are kept';

export class LiveRecorder {
  private readonly startedAt = new Date().toISOString();
  private phase: string | undefined;
  private bytesCopied = 0;
  private readonly workers = new Map<string, { what: string; since: string }>();
  private readonly indexBuilds: LiveView['indexBuilds'] = [];
  private readonly cutoverSteps: LiveView['cutoverSteps'] = [];
  private verifyProgress: VerifyProgress | undefined;
  private relayProgress: LiveView['relay'];
  private readonly errors: ErrorEntry[] = [];
  private readonly errorsByCode = new Map<string, number>();
  private readonly events: LogEntry[] = [];

  constructor(readonly command: string) {}

  log(level: LogEntry['level'], message: string): void {
    this.events.push({ at: new Date().toISOString(), level, message: redact(message) });
    if (this.events.length > KEEP_EVENTS) this.events.shift();
  }

  /** An error the run reports (a failed job, or the error that ended the command). */
  error(code: string, message: string, hint: string | undefined): void {
    this.errors.push({ at: new Date().toISOString(), code, message: redact(message), hint });
    if (this.errors.length > KEEP_ERRORS) this.errors.shift();
    this.errorsByCode.set(code, (this.errorsByCode.get(code) ?? 0) + 1);
    this.log('error', `${code}: ${message}`);
  }

  /** The error a command ends with, as `reportError` prints it. */
  failure(err: unknown): void {
    if (err instanceof PgconvoyError) {
      const server = serverErrorFields(err.cause);
      const detail = server?.detail ? ` (${server.detail})` : '';
      this.error(err.code, err.message + detail, err.hint);
    } else this.error('INTERNAL', errorMessage(err), undefined);
  }

  clone(e: CloneEvent): void {
    switch (e.type) {
      case 'bytes':
        this.bytesCopied += e.n;
        return;
      case 'phase':
        if (e.state === 'start') this.phase = e.phase;
        this.log('info', `phase ${e.phase}: ${e.state}${e.detail ? ` (${e.detail})` : ''}`);
        return;
      case 'planned':
        this.log('info', `plan: ${e.jobs.length} job(s)`);
        return;
      case 'job-start': {
        const what = `${displayName(e.job.table.schema, e.job.table.name)} ${e.job.chunkLabel}`;
        this.workers.set(e.worker, { what, since: new Date().toISOString() });
        return;
      }
      case 'job-done':
        this.workers.delete(e.worker);
        this.log(
          'info',
          `copied ${displayName(e.job.table.schema, e.job.table.name)} ${e.job.chunkLabel}: ${e.rows} rows`,
        );
        return;
      case 'job-retry':
        this.log('warning', `retry ${e.attempt} after a transient failure: ${e.error}`);
        return;
      case 'job-failed':
        this.workers.delete(e.worker);
        this.error(
          'JOB_FAILED',
          `${displayName(e.job.table.schema, e.job.table.name)} ${e.job.chunkLabel}: ${e.error}`,
          FAILED_JOB_HINT,
        );
        return;
      case 'tables-indexed': {
        const names = e.tables.map((t) => displayName(t.schema, t.name));
        // Small tables are built together: the build's items and time are shared among them.
        for (const table of names)
          this.indexBuilds.push({ table, items: e.items / names.length, seconds: e.seconds / names.length });
        this.log(
          'info',
          `indexes of ${names.slice(0, 3).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''} built`,
        );
        return;
      }
      case 'warning':
      case 'info':
        this.log(e.type, e.message);
        return;
    }
  }

  cutover(e: CutoverEvent): void {
    if (e.type !== 'step') return this.log(e.type, e.message);
    this.phase = `cutover: ${e.step}`;
    const entry = { step: e.step, state: e.state, ms: e.ms };
    const at = this.cutoverSteps.findIndex((s) => s.step === e.step);
    if (at >= 0) this.cutoverSteps[at] = entry;
    else this.cutoverSteps.push(entry);
    this.log('info', `cutover ${e.step}: ${e.state}${e.detail ? ` (${e.detail})` : ''}`);
  }

  verify(e: VerifyEvent): void {
    const v = (this.verifyProgress ??= {
      tablesDone: 0,
      tablesTotal: 0,
      tablesDiffering: 0,
      chunksChecked: 0,
      chunksDiffering: 0,
      differing: [],
    });
    if (e.type === 'planned') v.tablesTotal = e.tables;
    else if (e.type === 'chunk-done') {
      v.chunksChecked++;
      if (!e.match) v.chunksDiffering++;
    } else if (e.type === 'table-done') {
      v.tablesDone = e.tablesDone;
      if (e.result.status !== 'match') {
        v.tablesDiffering++;
        v.differing.push(`${displayName(e.result.schema, e.result.name)}: ${e.result.status}`);
        this.log('warning', `verify: ${displayName(e.result.schema, e.result.name)}: ${e.result.status}`);
      }
    }
  }

  relay(e: RelayEvent): void {
    if (e.type !== 'progress') return this.log(e.type, e.message);
    const { type: _type, ...progress } = e;
    this.phase = 'relay';
    this.relayProgress = { ...progress, at: new Date().toISOString() };
  }

  view(): LiveView {
    return {
      command: this.command,
      startedAt: this.startedAt,
      phase: this.phase,
      bytesCopied: this.bytesCopied,
      workers: [...this.workers].map(([worker, w]) => ({ worker, ...w })),
      indexBuilds: [...this.indexBuilds],
      cutoverSteps: [...this.cutoverSteps],
      verify: this.verifyProgress ? { ...this.verifyProgress } : undefined,
      relay: this.relayProgress,
      errors: [...this.errors],
      errorsByCode: Object.fromEntries(this.errorsByCode),
      events: [...this.events],
    };
  }
}
