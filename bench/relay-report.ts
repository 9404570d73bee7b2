/**
 * `--relay`: the results as a readable report (changes/s per method with the ratio to the
 * subscription, lag percentiles, CPU and peak RSS, load averages).
 */
import type { ResourceReading } from './measure.js';
import type { RelayBenchOptions, RelayMethodResult } from './relay-bench.js';

const kb = (r: ResourceReading | undefined) => (r ? `${(r.peakRssKb / 1024).toFixed(0)} MB` : '-');
const cpu = (r: ResourceReading | undefined) =>
  r
    ? `${r.cpuSeconds.toFixed(1)} s` +
      (r.userSeconds !== undefined
        ? ` (user ${r.userSeconds.toFixed(1)}, sys ${(r.systemSeconds ?? 0).toFixed(1)})`
        : '')
    : '-';

function pad(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '))
    .join('\n');
}

export function renderRelayReport(
  o: RelayBenchOptions,
  results: RelayMethodResult[],
  header: { source: string; target: string; cpus: number; notes: string[] },
): string {
  const out: string[] = [
    `pgconvoy relay benchmark: ${header.source} → ${header.target}, ${header.cpus} CPUs`,
    `change stream: single-row INSERT 25% / UPDATE 50% / DELETE 25%, one change per transaction, over ${o.tables} tables of ${o.rowsPerTable} seed rows (bigint primary key)`,
    '',
    `1. throughput: ${o.changes} transactions queued with the apply paused, then applied`,
  ];
  const base = results.find((r) => r.id === 'subscription')?.throughput?.changesPerSecond;
  const rows = [
    [
      'method',
      'changes',
      'apply s',
      'changes/s',
      'vs subscription',
      'start s',
      'client CPU',
      'peak RSS',
      'server CPU',
      'load',
    ],
  ];
  for (const r of results) {
    const t = r.throughput;
    if (!t) {
      rows.push([r.id, `FAILED: ${r.error ?? '?'}`]);
      continue;
    }
    rows.push([
      r.id,
      String(t.changes),
      t.applySeconds.toFixed(1),
      t.changesPerSecond.toFixed(0),
      base ? `${(t.changesPerSecond / base).toFixed(2)}×` : '-',
      t.startSeconds.toFixed(1),
      cpu(t.client),
      kb(t.client),
      `${t.serverCpuSeconds.toFixed(1)} s`,
      t.loadAverage.toFixed(2),
    ]);
  }
  out.push(pad(rows), '', `2. lag at ${o.rate} tx/s for ${o.seconds} s (sampled every second)`);
  const lagRows = [
    [
      'method',
      'tx/s',
      'lag s p50/p95/max',
      'lag kB p50/p95/max',
      'drain s',
      'client CPU',
      'peak RSS',
      'server CPU',
      'load',
    ],
  ];
  for (const r of results) {
    const l = r.lag;
    if (!l) continue;
    lagRows.push([
      r.id,
      l.achievedRate.toFixed(0),
      `${l.seconds.p50.toFixed(2)}/${l.seconds.p95.toFixed(2)}/${l.seconds.max.toFixed(2)}`,
      `${(l.bytes.p50 / 1024).toFixed(0)}/${(l.bytes.p95 / 1024).toFixed(0)}/${(l.bytes.max / 1024).toFixed(0)}`,
      l.drainSeconds.toFixed(2),
      cpu(l.client),
      kb(l.client),
      `${l.serverCpuSeconds.toFixed(1)} s`,
      l.loadAverage.toFixed(2),
    ]);
  }
  out.push(pad(lagRows), '', 'notes:', ...header.notes.map((n) => `  - ${n}`));
  return out.join('\n');
}

export const RELAY_NOTES = [
  'changes/s counts rows changed (an UPDATE or DELETE of a key already deleted changes nothing and is not counted), from the slot becoming active to the target holding the heartbeat written after the backlog',
  'start s: from resuming the apply (ALTER SUBSCRIPTION … ENABLE, or spawning pgconvoy replicate) to the slot being active; not in changes/s',
  "lag seconds: how old the target heartbeat (moved every 50 ms on the source) is when the source has a newer one, so ±50 ms; lag bytes: pg_current_wal_lsn() − the slot's confirmed_flush_lsn (WAL of every database of the source server)",
  "client CPU and peak RSS: the relay process (getrusage at exit); the subscription has no client process. server CPU: the walsender and the apply worker (subscription) or the relay's target session, from /proc",
  'load: the 1-minute load average when the measurement started; the machine is shared',
  'pgcopydb follow is not measured here (see README)',
];
