/**
 * What the benchmark prints and keeps: per method the median, min and max time over the
 * rounds that succeeded and the ratio to pgconvoy; pgconvoy's peak RSS and CPU seconds; its
 * data phase against the floor at the same number of streams; and the raw results as JSON
 * under os.tmpdir() (the repository is no place for machine-specific figures).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { textTable } from '../src/util/text-table.js';
import { formatBytes } from '../src/util/format.js';
import type { Dataset } from './dataset.js';
import type { MethodResult } from './method.js';

export interface RunRecord {
  round: number;
  method: string;
  targetDatabase: string;
  startedAt: string;
  /** 1-minute load average when the run started: other work on the machine skews figures. */
  loadAverage: number;
  result: MethodResult;
}

export interface BenchReport {
  startedAt: string;
  options: {
    sizeBytes: number;
    jobs: number;
    runs: number;
    only: string[];
    singleTable: boolean;
    manyTables?: number | undefined;
    sourceMajor: number;
    targetMajor: number | undefined;
  };
  machine: { cpus: number; memoryBytes: number; node: string; platform: string };
  servers: { source: string; target: string; notes: string[] };
  binDir: string;
  /** Why a flag was or was not passed to pgconvoy, and similar remarks for the reader. */
  notes: string[];
  dataset: Dataset;
  methods: { id: string; label: string; short: string; jobs: number; commands: string[] }[];
  runs: RunRecord[];
}

export interface Stats {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

export function stats(values: readonly number[]): Stats | undefined {
  if (values.length === 0) return undefined;
  return { n: values.length, median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

const sec = (s: number | undefined) => (s === undefined || !Number.isFinite(s) ? '-' : `${s.toFixed(2)} s`);
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;
const rate = (bytes: number, seconds: number) => `${(bytes / 1024 ** 2 / seconds).toFixed(0)} MB/s`;

function okRuns(report: BenchReport, id: string): MethodResult[] {
  return report.runs.filter((r) => r.method === id && r.result.ok).map((r) => r.result);
}

/** The pgconvoy method ratios are taken against: clone at --jobs, else the first clone. */
export function referenceMethod(report: BenchReport): BenchReport['methods'][number] | undefined {
  const clones = report.methods.filter((m) => m.id.startsWith('clone'));
  return clones.find((m) => m.jobs === report.options.jobs) ?? clones[0];
}

function pgconvoyLines(report: BenchReport, id: string, label: string): string[] {
  const runs = okRuns(report, id);
  const res = runs.map((r) => r.pgconvoy?.resources).filter((r) => r !== undefined);
  if (res.length === 0) return [`${label}: no resource readings`];
  const rss = stats(res.map((r) => r.peakRssKb));
  const cpu = stats(res.map((r) => r.cpuSeconds));
  const user = median(res.map((r) => r.userSeconds ?? NaN));
  const sys = median(res.map((r) => r.systemSeconds ?? NaN));
  const split = Number.isFinite(user) ? ` (user ${sec(user)} + sys ${sec(sys)})` : '';
  const phaseNames = [...new Set(runs.flatMap((r) => r.pgconvoy?.phases.map((p) => p.phase) ?? []))];
  const phases = phaseNames.map((p) => {
    const m = median(runs.map((r) => r.pgconvoy?.phases.find((x) => x.phase === p)?.seconds ?? NaN));
    return `${p} ${m.toFixed(2)}`;
  });
  return [
    `${label}: peak RSS median ${mb(rss?.median ?? NaN)} (max ${mb(rss?.max ?? NaN)}), ` +
      `CPU of the pgconvoy process median ${sec(cpu?.median)}${split}, max ${sec(cpu?.max)} [${res[0]?.source}]`,
    `  phases, median seconds: ${phases.join(', ')}`,
  ];
}

function dataPhaseLine(report: BenchReport, copyText: number): string | undefined {
  const floor = report.methods.find((m) => m.id === 'floor');
  if (!floor) return undefined;
  const clone = report.methods.find((m) => m.id.startsWith('clone') && m.jobs === floor.jobs);
  if (!clone) return `data phase: no pgconvoy run with ${floor.jobs} stream(s) to compare with the floor`;
  const copy = median(
    okRuns(report, clone.id)
      .map((r) => r.pgconvoy?.copySeconds)
      .filter((s) => s !== undefined),
  );
  const own = median(
    okRuns(report, clone.id)
      .map((r) => r.pgconvoy?.bytes)
      .filter((b) => b !== undefined),
  );
  const floorSec = stats(okRuns(report, floor.id).map((r) => r.seconds))?.median;
  if (!Number.isFinite(copy) || floorSec === undefined) return 'data phase: not enough successful runs';
  return (
    `data phase at ${floor.jobs} stream(s), same data (${formatBytes(copyText)} as COPY text): ` +
    `pgconvoy copy phase median ${sec(copy)} = ${rate(copyText, copy)} (pgconvoy counted ${formatBytes(own)} on its wire); ` +
    `floor ${sec(floorSec)} = ${rate(copyText, floorSec)}; pgconvoy reaches ${((floorSec / copy) * 100).toFixed(0)}% of the floor`
  );
}

/** The printed report. */
export function renderReport(report: BenchReport): string {
  const d = report.dataset;
  const copyText = d.tables.reduce((s, t) => s + t.copyTextBytes, 0);
  const ref = referenceMethod(report);
  const refMedian = ref ? stats(okRuns(report, ref.id).map((r) => r.seconds))?.median : undefined;
  const rows = report.methods.map((m) => {
    const all = report.runs.filter((r) => r.method === m.id).length;
    const s = stats(okRuns(report, m.id).map((r) => r.seconds));
    let ratio = '-';
    if (m.id === ref?.id) ratio = '1.00× (reference)';
    else if (s && refMedian)
      ratio = `${m.short} / ${ref?.short ?? 'pgconvoy'} = ${(s.median / refMedian).toFixed(2)}×`;
    return [m.label, `${s?.n ?? 0}/${all}`, sec(s?.median), sec(s?.min), sec(s?.max), ratio];
  });
  const lines = [
    `pgconvoy bench: source ${report.servers.source} → target ${report.servers.target}, ` +
      `--jobs ${report.options.jobs}, ${report.options.runs} interleaved round(s)` +
      (report.options.singleTable ? ', single table' : ''),
    report.options.manyTables
      ? `dataset: ${d.tables.length} tables of ${d.tables[0]?.rows ?? 0} rows (primary key, index, foreign key), ` +
        `on disk ${formatBytes(d.databaseBytes)} (generated in ${sec(d.generateSeconds)})`
      : `dataset: asked ${formatBytes(report.options.sizeBytes)}, on disk ${formatBytes(d.databaseBytes)} ` +
        `(generated in ${sec(d.generateSeconds)}); ` +
        d.tables
          .map((t) => `${t.name} ${t.rows.toLocaleString('en-US')} rows ${formatBytes(t.bytes)}`)
          .join(', '),
    `machine: ${report.machine.cpus} CPUs, ${formatBytes(report.machine.memoryBytes)} RAM, node ${report.machine.node}; ` +
      `load average at run starts ${Math.min(...report.runs.map((r) => r.loadAverage)).toFixed(1)}–` +
      `${Math.max(...report.runs.map((r) => r.loadAverage)).toFixed(1)} (other work makes figures noisy)`,
    '',
    textTable(['METHOD', 'OK', 'MEDIAN', 'MIN', 'MAX', 'VS PGCONVOY (time ratio)'], rows),
    '',
  ];
  for (const m of report.methods.filter((x) => x.id.startsWith('clone')))
    lines.push(...pgconvoyLines(report, m.id, m.label));
  const dataPhase = dataPhaseLine(report, copyText);
  if (dataPhase) lines.push(dataPhase);
  for (const n of [...report.servers.notes, ...report.notes]) lines.push(`note: ${n}`);
  const failed = report.runs.filter((r) => !r.result.ok);
  for (const f of failed) lines.push(`FAILED round ${f.round} ${f.method}: ${f.result.error ?? '?'}`);
  lines.push('', 'commands (<bin> = ' + report.binDir + '; passwords only in PGPASSWORD):');
  for (const m of report.methods) for (const c of m.commands) lines.push(`  ${m.id}: ${c}`);
  return lines.join('\n');
}

/** Writes the raw results; returns the file's path. */
export function writeResults(
  report: BenchReport,
  dir = path.join(os.tmpdir(), 'pgconvoy-bench-results'),
): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${report.startedAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  return file;
}
