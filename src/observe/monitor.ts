/**
 * Watches one target database for the dashboard: reads its snapshot every interval over
 * one read-only session (plus a short source session per look while an online migration
 * needs its lag), and keeps the history the charts draw (bytes and lag over the run).
 *
 * However many pages are open, the servers are read once per interval. History memory is
 * flat: when full, every other point is dropped (the chart keeps the whole run, coarser).
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { PgconvoyError, errorMessage } from '../errors.js';
import { redact } from '../util/redact.js';
import type { LiveRecorder, LiveView } from './live.js';
import { readSnapshot, type Snapshot } from './snapshot.js';

const KEEP_POINTS = 600;
/** Throughput is measured over this much of the latest history. */
const RATE_WINDOW_MS = 30_000;

export interface HistoryPoint {
  /** Milliseconds since the epoch. */
  t: number;
  bytes: number;
  rows: number;
  lagBytes: number | undefined;
  lagSeconds: number | undefined;
  /** Changes the relay has applied (ledger counter); undefined where no relay runs. */
  relayChanges: number | undefined;
}

/** A job being copied now, by whichever process or machine. */
export interface WorkerNow {
  worker: string;
  /** `table chunk`. */
  what: string;
  /** When it started, where this process runs the worker (others' start is not recorded). */
  since: string | undefined;
}

export interface DatabaseView {
  database: string;
  /** `user@host:port/db`: never a password. */
  target: string;
  snapshot: Snapshot | undefined;
  /** Why the last look failed (the ledger could not be read). */
  error: { message: string; hint: string | undefined } | undefined;
  history: HistoryPoint[];
  throughputBytesPerSecond: number | undefined;
  etaSeconds: number | undefined;
  /** What every worker copies now: the ledger's running jobs, and this process' newer ones. */
  workers: WorkerNow[];
  /** The relay's apply rate over the latest history. */
  relayChangesPerSecond: number | undefined;
  /** Share of the estimated bytes that are copied, 0..1. */
  progress: number | undefined;
  live: LiveView | undefined;
}

export interface MonitorOptions {
  target: ConnectionSpec;
  source: ConnectionSpec | undefined;
  ledgerSchema: string;
  intervalMs: number;
  live: LiveRecorder | undefined;
}

async function openReadOnly(spec: ConnectionSpec): Promise<pg.Client> {
  const client = await openClient(spec, { applicationName: 'pgconvoy dashboard' });
  // The dashboard only reads: say so to the server too.
  await client.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY');
  return client;
}

/**
 * What every worker copies now: the ledger's running jobs (every worker, on every machine:
 * what the summary counts), where this process' own workers are told by their events
 * instead (newer than the last look). This process' events alone would miss the workers of
 * other processes, and show none whenever its own are between chunks.
 */
function workersNow(s: Snapshot | undefined, live: LiveView | undefined): WorkerNow[] {
  const mine = live?.workers ?? [];
  const isMine = (ledgerName: string) =>
    mine.some((w) => ledgerName === w.worker || ledgerName.startsWith(`${w.worker} from `));
  const out: WorkerNow[] = (s?.workers ?? [])
    .filter((w) => !isMine(w.worker))
    .map((w) => ({ worker: w.worker, what: `${w.table} ${w.chunk}`, since: undefined }));
  for (const w of mine) out.push({ worker: w.worker, what: w.what, since: w.since });
  return out.sort((a, b) => a.worker.localeCompare(b.worker) || a.what.localeCompare(b.what));
}

export class Monitor {
  private client: pg.Client | undefined;
  private snapshot: Snapshot | undefined;
  private error: DatabaseView['error'];
  private history: HistoryPoint[] = [];
  private timer: NodeJS.Timeout | undefined;
  private looking: Promise<void> | undefined;
  private first: Promise<void> | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly o: MonitorOptions) {}

  get database(): string {
    return this.o.target.database;
  }

  onUpdate(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Settles once the first look is done (the page and the API never show an empty view). */
  ready(): Promise<void> {
    return (this.first ??= this.refresh());
  }

  start(): void {
    void this.ready();
    this.timer = setInterval(() => void this.refresh(), this.o.intervalMs);
    this.timer.unref();
  }

  /** One look at the servers; looks asked for while one runs share it. */
  refresh(): Promise<void> {
    this.looking ??= this.look().finally(() => {
      this.looking = undefined;
      for (const l of this.listeners) l();
    });
    return this.looking;
  }

  private async look(): Promise<void> {
    try {
      this.client ??= await openReadOnly(this.o.target);
      const wantsSource = this.o.source !== undefined && this.snapshot?.online !== undefined;
      let source: pg.Client | undefined;
      let sourceProblem: string | undefined;
      try {
        source = wantsSource && this.o.source ? await openReadOnly(this.o.source) : undefined;
      } catch (err) {
        sourceProblem = errorMessage(err);
      }
      try {
        this.snapshot = await readSnapshot(this.client, source, this.o.ledgerSchema);
      } catch (err) {
        // A source session ended by cutover's freeze must not hide the target's ledger.
        if (!source) throw err;
        sourceProblem = errorMessage(err);
        this.snapshot = await readSnapshot(this.client, undefined, this.o.ledgerSchema);
      } finally {
        await source?.end().catch(() => undefined);
      }
      if (sourceProblem && this.snapshot.online)
        this.snapshot.online.warnings.push(`the source could not be read: ${redact(sourceProblem)}`);
      this.error = undefined;
      this.record(this.snapshot);
    } catch (err) {
      await this.client?.end().catch(() => undefined);
      this.client = undefined;
      this.error = {
        message: redact(errorMessage(err)),
        hint: err instanceof PgconvoyError ? err.hint : undefined,
      };
    }
  }

  private record(s: Snapshot): void {
    const live = this.o.live?.view();
    this.history.push({
      t: Date.parse(s.at),
      // In-flight bytes of this process move the chart between chunk commits.
      bytes: Math.max(s.bytesDone, live?.bytesCopied ?? 0),
      rows: s.rowsDone,
      lagBytes: s.online?.lagBytes,
      lagSeconds: s.online?.lagSeconds,
      relayChanges: s.relay?.changes,
    });
    if (this.history.length > KEEP_POINTS) this.history = this.history.filter((_, i) => i % 2 === 1);
  }

  /** Growth per second of one figure of the history over the latest RATE_WINDOW_MS. */
  private rate(figure: (p: HistoryPoint) => number | undefined): number | undefined {
    const last = this.history.at(-1);
    const to = last && figure(last);
    if (!last || to === undefined) return undefined;
    const first = this.history.find((p) => p.t >= last.t - RATE_WINDOW_MS && figure(p) !== undefined);
    const from = first && figure(first);
    if (!first || from === undefined || first.t === last.t) return undefined;
    return Math.max(0, ((to - from) * 1000) / (last.t - first.t));
  }

  view(): DatabaseView {
    const s = this.snapshot;
    const rate = this.rate((p) => p.bytes);
    const live = this.o.live?.view();
    const progress =
      s && s.bytesEstimated > 0 ? Math.min(1, s.estimatedBytesDone / s.bytesEstimated) : undefined;
    // Estimates are relation sizes and the copy counts COPY bytes: convert by the ratio seen so far.
    const copyBytesPerEstimated = s && s.estimatedBytesDone > 0 ? s.bytesDone / s.estimatedBytesDone : 1;
    const left = s ? (s.bytesEstimated - s.estimatedBytesDone) * copyBytesPerEstimated : 0;
    return {
      database: this.o.target.database,
      target: describeConnection(this.o.target),
      snapshot: s,
      error: this.error,
      history: this.history,
      throughputBytesPerSecond: rate,
      etaSeconds: rate && left > 0 ? left / rate : left <= 0 && s?.ledger ? 0 : undefined,
      progress,
      workers: workersNow(s, live),
      relayChangesPerSecond: this.rate((p) => p.relayChanges),
      live,
    };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.looking;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}
