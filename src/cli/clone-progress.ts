/**
 * Seeing a clone run: on a TTY a live view redrawn in place (phase, tables done/total,
 * bytes copied/estimated, MB/s, ETA, jobs in flight); otherwise one plain line per event,
 * which is what logs and CI want.
 */
import type { CloneEvent, CloneSummary } from '../clone/run-clone.js';
import { formatBytes, formatCount, formatDuration } from '../util/format.js';
import { displayName } from '../util/sql.js';
import { err, out } from './output.js';
import { textTable } from '../util/text-table.js';

const name = (t: { schema: string; name: string }) => displayName(t.schema, t.name);

export class CloneProgress {
  private phase = '';
  private totalBytes = 0;
  private copied = 0;
  private jobsTotal = 0;
  private jobsDone = 0;
  private tablesTotal = 0;
  private readonly tablesDone = new Set<string>();
  private readonly inFlight = new Map<string, string>();
  private copyStarted = 0;
  private timer: NodeJS.Timeout | undefined;
  private drawnLines = 0;

  constructor(
    private readonly live: boolean,
    private readonly quiet: boolean,
  ) {}

  handle(e: CloneEvent): void {
    switch (e.type) {
      case 'phase':
        if (e.state === 'start') this.phase = e.phase;
        if (e.phase === 'copy' && e.state === 'start') {
          this.copyStarted = Date.now();
          if (this.live) this.timer = setInterval(() => this.draw(), 250);
        }
        if (e.phase === 'copy' && e.state !== 'start') this.stopLive();
        this.line(
          e.state === 'start'
            ? `phase ${e.phase}: started`
            : e.state === 'done'
              ? `phase ${e.phase}: done in ${formatDuration((e.seconds ?? 0) * 1000)}`
              : `phase ${e.phase}: skipped (${e.detail ?? ''})`,
        );
        break;
      case 'planned':
        this.jobsTotal = e.jobs.length;
        this.jobsDone = e.jobs.filter((j) => j.state === 'done').length;
        this.totalBytes = e.jobs.filter((j) => j.state !== 'done').reduce((s, j) => s + j.estimatedBytes, 0);
        this.tablesTotal = new Set(e.jobs.map((j) => name(j.table))).size;
        this.line(
          `plan: ${e.jobs.length} job(s) over ${this.tablesTotal} table(s), ${this.jobsDone} already done, ~${formatBytes(this.totalBytes)} to copy`,
        );
        break;
      case 'job-start':
        this.inFlight.set(
          e.worker,
          `${name(e.job.table)}${e.job.chunkCount > 1 ? ` (${e.job.chunkLabel})` : ''}`,
        );
        if (!this.live) this.line(`copy: ${e.worker} started ${this.inFlight.get(e.worker) ?? ''}`);
        break;
      case 'job-done':
        this.inFlight.delete(e.worker);
        this.jobsDone++;
        this.line(
          `copy: ${name(e.job.table)}${e.job.chunkCount > 1 ? ` ${e.job.chunkLabel}` : ''}: ${formatCount(e.rows)} rows, ${formatBytes(e.bytes)} in ${formatDuration(e.seconds * 1000)} (${this.jobsDone}/${this.jobsTotal} jobs)`,
        );
        break;
      case 'job-retry':
        this.line(
          `copy: ${e.job ? name(e.job.table) : 'worker'}: transient failure (${e.error}); retry ${e.attempt} in ${formatDuration(e.delayMs)}`,
        );
        break;
      case 'job-failed':
        this.inFlight.delete(e.worker);
        this.line(`copy: ${name(e.job.table)} ${e.job.chunkLabel}: FAILED: ${e.error}`);
        break;
      case 'bytes':
        this.copied += e.n;
        break;
      case 'tables-indexed':
        for (const t of e.tables) this.tablesDone.add(name(t));
        this.line(
          `indexes: ${name(e.tables[0]!)}${e.tables.length > 1 ? ` and ${e.tables.length - 1} other small table(s)` : ''}: ` +
            `${e.items} index(es)/constraint(s) built in ${formatDuration(e.seconds * 1000)}`,
        );
        break;
      case 'warning':
        this.line(`warning: ${e.message}`, true);
        break;
      case 'info':
        this.line(e.message);
        break;
    }
  }

  private line(text: string, always = false): void {
    if (this.quiet && !always) return;
    if (this.live) this.clear();
    err(text);
    if (this.live && this.timer) this.draw();
  }

  private clear(): void {
    if (this.drawnLines > 0) process.stderr.write(`\x1b[${this.drawnLines}A\x1b[0J`);
    this.drawnLines = 0;
  }

  private draw(): void {
    this.clear();
    const seconds = (Date.now() - this.copyStarted) / 1000;
    const rate = seconds > 0 ? this.copied / seconds : 0;
    const left = Math.max(0, this.totalBytes - this.copied);
    const eta = rate > 0 ? formatDuration((left / rate) * 1000) : '?';
    const pct = this.totalBytes > 0 ? Math.min(100, (this.copied / this.totalBytes) * 100) : 0;
    const width = 30;
    const bar = '#'.repeat(Math.round((pct / 100) * width)).padEnd(width, '.');
    const lines = [
      `[${bar}] ${pct.toFixed(0)}%  ${formatBytes(this.copied)} / ~${formatBytes(this.totalBytes)}  ${formatBytes(rate)}/s  ETA ${eta}`,
      `phase ${this.phase}  jobs ${this.jobsDone}/${this.jobsTotal}  tables indexed ${this.tablesDone.size}/${this.tablesTotal}`,
      ...[...this.inFlight.entries()].map(([w, what]) => `  ${w}: ${what}`),
    ];
    process.stderr.write(lines.join('\n') + '\n');
    this.drawnLines = lines.length;
  }

  private stopLive(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.live) this.clear();
  }

  finish(): void {
    this.stopLive();
  }
}

export function printCloneSummary(s: CloneSummary, resumeCommand: string): void {
  out('');
  out(
    `${s.ok ? 'clone complete' : 'clone NOT complete'}: ${s.source} → ${s.target} in ${formatDuration(s.seconds * 1000)}`,
  );
  out(
    `  ${formatCount(s.rows)} rows, ${formatBytes(s.bytes)} copied` +
      (s.seconds > 0
        ? `, ${formatBytes(s.bytes / Math.max(0.001, s.phases.find((p) => p.phase === 'copy')?.seconds ?? s.seconds))}/s during the copy`
        : ''),
  );
  out(
    '  phases: ' +
      s.phases
        .map((p) => `${p.phase} ${p.state === 'skipped' ? 'skipped' : formatDuration(p.seconds * 1000)}`)
        .join(', '),
  );
  out('');
  out(
    textTable(
      ['TABLE', 'ROWS', 'BYTES', 'JOBS', 'SECONDS', 'STATE'],
      s.tables.map((t) => [
        name(t.table),
        formatCount(t.rows),
        formatBytes(t.bytes),
        String(t.jobs),
        t.seconds.toFixed(1),
        t.state,
      ]),
      '  ',
    ),
  );
  for (const w of s.warnings) out(`  warning: ${w}`);
  if (s.failed.length > 0) {
    out('');
    out(`  ${s.failed.length} job(s) failed:`);
    for (const j of s.failed) out(`    ${name(j.table)} ${j.chunkLabel}: ${j.error ?? ''}`);
  }
  out(`  run files: ${s.runDir}`);
  // The ledger stays for resume and status; the operator decides when it may go.
  if (s.ok)
    out(`  the ledger stays on the target; pgconvoy clean --target ... removes it when no longer needed`);
  if (!s.ok) {
    out('');
    out(`  to resume, run the same command again:`);
    out(`    ${resumeCommand}`);
  }
}
