/**
 * /metrics: the dashboard's views as Prometheus metric families. Names follow the
 * ecosystem's rules: prefix `pgconvoy_`, base units (bytes, seconds), `_total` on counters.
 * Counters come from the ledger (so a restarted process or `serve` elsewhere reports the
 * same figures), except `pgconvoy_errors_total` and the verify counters, which count what
 * this process saw. Every sample carries the target `database` it is about.
 */
import type { DatabaseView } from './monitor.js';
import type { MetricFamily } from './prom-text.js';

/** Chunk copy durations: 0.1 s to about 30 min. */
const CHUNK_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800];
const JOB_STATES = ['pending', 'running', 'done', 'failed'] as const;
const TABLE_STATES = ['pending', 'copying', 'done', 'failed'] as const;
const ONLINE_PHASES = ['copying', 'replicating', 'cutover', 'done', 'rolled-back'] as const;

type Plain = Extract<MetricFamily, { type: 'counter' | 'gauge' }>;

function family(name: string, type: 'counter' | 'gauge', help: string): Plain {
  return { name, type, help, samples: [] };
}

/** Every counter and gauge, empty. */
function plainFamilies() {
  return {
    up: family(
      'pgconvoy_ledger_up',
      'gauge',
      'Whether the last look at the target ledger succeeded (1) or not (0).',
    ),
    rows: family(
      'pgconvoy_copied_rows_total',
      'counter',
      'Rows copied into the target, per table (done jobs).',
    ),
    bytes: family(
      'pgconvoy_copied_bytes_total',
      'counter',
      'COPY bytes loaded into the target, per table (done jobs).',
    ),
    estimated: family('pgconvoy_table_estimated_bytes', 'gauge', 'Estimated size of each table to copy.'),
    tables: family('pgconvoy_tables', 'gauge', 'Tables by copy state.'),
    jobs: family('pgconvoy_jobs', 'gauge', 'Copy jobs (chunks) by state.'),
    indexed: family(
      'pgconvoy_index_builds_total',
      'counter',
      'Tables whose indexes and constraints are built.',
    ),
    throughput: family(
      'pgconvoy_copy_throughput_bytes_per_second',
      'gauge',
      'Copy throughput over the last 30 seconds.',
    ),
    eta: family('pgconvoy_copy_eta_seconds', 'gauge', 'Estimated time until the copy is done.'),
    lagBytes: family(
      'pgconvoy_replication_lag_bytes',
      'gauge',
      'Source WAL not yet applied and confirmed by the subscriber.',
    ),
    lagSeconds: family('pgconvoy_replication_lag_seconds', 'gauge', 'Replication replay lag.'),
    retained: family(
      'pgconvoy_slot_retained_wal_bytes',
      'gauge',
      'WAL the publishing server keeps for the slot.',
    ),
    slotActive: family(
      'pgconvoy_slot_active',
      'gauge',
      'Whether a subscriber streams from the slot (1) or not (0).',
    ),
    applyErrors: family(
      'pgconvoy_replication_apply_errors_total',
      'counter',
      'Apply errors of the subscription (PostgreSQL 15+).',
    ),
    phase: family('pgconvoy_online_phase', 'gauge', 'The online migration phase: 1 for the current one.'),
    frozen: family(
      'pgconvoy_source_frozen',
      'gauge',
      'Whether cutover holds the source database frozen (1) or not (0).',
    ),
    blocked: family(
      'pgconvoy_cutover_writes_blocked_seconds',
      'gauge',
      'How long writes were (or are being) blocked by cutover.',
    ),
    verifyTables: family(
      'pgconvoy_verify_tables_differing',
      'gauge',
      'Tables verification found different (this process).',
    ),
    verifyChunks: family(
      'pgconvoy_verify_chunks_checked_total',
      'counter',
      'Chunks verification compared (this process).',
    ),
    verifyBad: family(
      'pgconvoy_verify_chunks_differing_total',
      'counter',
      'Chunks verification found different (this process).',
    ),
    errors: family('pgconvoy_errors_total', 'counter', 'Errors this process reported, by code.'),
    relayPosition: family(
      'pgconvoy_relay_applied_position_bytes',
      'gauge',
      "The relay's applied source LSN (ledger), as a byte position in the source's WAL.",
    ),
    relayLagBytes: family(
      'pgconvoy_relay_lag_bytes',
      'gauge',
      "Source WAL after the relay's applied position (needs the source).",
    ),
    relayLagSeconds: family(
      'pgconvoy_relay_lag_seconds',
      'gauge',
      'Age of the oldest source commit the relay has not committed on the target (the relay process; else the walsender replay lag).',
    ),
    relayChanges: family(
      'pgconvoy_relay_changes_applied_total',
      'counter',
      'Row changes the relay applied to the target since start (ledger).',
    ),
    relayTransactions: family(
      'pgconvoy_relay_transactions_applied_total',
      'counter',
      'Source transactions the relay applied to the target since start (ledger).',
    ),
    relayRate: family(
      'pgconvoy_relay_apply_rate_changes_per_second',
      'gauge',
      'Row changes the relay applied per second over the last 30 seconds.',
    ),
    relayApplied: family(
      'pgconvoy_relay_last_applied_timestamp_seconds',
      'gauge',
      'When the relay last committed on the target or confirmed it had caught up (Unix time).',
    ),
    relayRunning: family(
      'pgconvoy_relay_running',
      'gauge',
      'Whether a relay streams the slot (1) or not (0) (needs the source).',
    ),
    failedJobs: family(
      'pgconvoy_failed_jobs',
      'gauge',
      'Copy jobs marked failed in the ledger (retried by the next run).',
    ),
  };
}

/** The families for these databases, in a fixed order (empty families still say HELP/TYPE). */
export function metricFamilies(views: readonly DatabaseView[]): MetricFamily[] {
  const f = plainFamilies();
  const chunks: MetricFamily = {
    name: 'pgconvoy_chunk_duration_seconds',
    type: 'histogram',
    help: 'Copy time of each done job (chunk).',
    samples: [],
  };
  for (const v of views) {
    const db = { database: v.database };
    const add = (fam: Plain, value: number | undefined, labels: Record<string, string> = {}) => {
      if (value !== undefined && Number.isFinite(value))
        fam.samples.push({ labels: { ...db, ...labels }, value });
    };
    add(f.up, v.error ? 0 : 1);
    const s = v.snapshot;
    if (s) {
      for (const t of s.tables) {
        const labels = { schema: t.schema, table: t.name };
        add(f.rows, t.rows, labels);
        add(f.bytes, t.bytes, labels);
        add(f.estimated, t.estimatedBytes, labels);
      }
      for (const state of TABLE_STATES)
        add(f.tables, s.tables.filter((t) => t.state === state).length, { state });
      for (const state of JOB_STATES) add(f.jobs, s.counts[state], { state });
      add(f.indexed, s.tables.filter((t) => t.indexed).length);
      add(f.failedJobs, s.counts.failed);
      chunks.samples.push({ labels: db, buckets: CHUNK_BUCKETS, values: s.chunkSeconds });
      const o = s.online;
      if (o) {
        const dir = { direction: o.direction ?? 'forward' };
        if (o.direction) {
          add(f.lagBytes, o.lagBytes, dir);
          add(f.lagSeconds, o.lagSeconds, dir);
          add(f.retained, o.retainedWalBytes, { slot: o.slot });
          add(f.slotActive, o.slotActive === undefined ? undefined : Number(o.slotActive), { slot: o.slot });
          add(f.applyErrors, o.applyErrors, dir);
        }
        for (const phase of ONLINE_PHASES) add(f.phase, Number(o.phase === phase), { phase });
        add(f.frozen, Number(o.frozen));
        add(f.blocked, o.writesBlockedSeconds);
      }
    }
    const r = s?.relay;
    if (r) {
      const ownLag = v.live?.relay?.lagSeconds;
      add(f.relayPosition, r.appliedPosition);
      add(f.relayLagBytes, r.lagBytes ?? v.live?.relay?.lagBytes);
      add(f.relayLagSeconds, ownLag ?? s?.online?.lagSeconds);
      add(f.relayChanges, r.changes);
      add(f.relayTransactions, r.transactions);
      add(f.relayRate, v.relayChangesPerSecond);
      add(f.relayApplied, Date.parse(r.appliedAt) / 1000);
      add(f.relayRunning, r.running === undefined ? undefined : Number(r.running));
    }
    add(f.throughput, v.throughputBytesPerSecond);
    add(f.eta, v.etaSeconds);
    const live = v.live;
    if (live) {
      for (const [code, n] of Object.entries(live.errorsByCode)) add(f.errors, n, { code });
      if (live.verify) {
        add(f.verifyTables, live.verify.tablesDiffering);
        add(f.verifyChunks, live.verify.chunksChecked);
        add(f.verifyBad, live.verify.chunksDiffering);
      }
    }
  }
  const families: MetricFamily[] = Object.values(f);
  families.splice(6, 0, chunks);
  return families;
}
