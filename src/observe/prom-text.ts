/**
 * The Prometheus text exposition format (version 0.0.4), written from a snapshot.
 *
 * Why not prom-client: its metrics are process-local objects that count up as things
 * happen, while pgconvoy's figures are read whole from the ledger on the target (so `serve`
 * on another machine, or after a crash, reports the same counters as the process doing the
 * work). Rendering a snapshot is the whole job, and the format is small: HELP and TYPE
 * lines, escaped label values, histograms as cumulative `_bucket{le=…}`, `_sum`, `_count`.
 */

export type Labels = Record<string, string>;

export interface Sample {
  labels: Labels;
  value: number;
}

export interface HistogramSample {
  labels: Labels;
  /** Upper bounds, ascending; +Inf is added. */
  buckets: readonly number[];
  /** The observed values. */
  values: readonly number[];
}

export type MetricFamily =
  | { name: string; help: string; type: 'counter' | 'gauge'; samples: Sample[] }
  | { name: string; help: string; type: 'histogram'; samples: HistogramSample[] };

/** The media type Prometheus asks for in Accept and expects back. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  for (const k of keys) {
    // A bad name here is pgconvoy's bug, never the user's data: fail loudly in tests.
    if (!LABEL.test(k) || k.startsWith('__')) throw new Error(`invalid Prometheus label name "${k}"`);
  }
  return `{${keys.map((k) => `${k}="${escapeLabelValue(labels[k] ?? '')}"`).join(',')}}`;
}

function histogramLines(name: string, s: HistogramSample): string[] {
  if ('le' in s.labels) throw new Error(`histogram ${name} must not have a label "le"`);
  const lines: string[] = [];
  const sorted = [...s.values].sort((a, b) => a - b);
  let i = 0;
  for (const bound of s.buckets) {
    while (i < sorted.length && (sorted[i] ?? 0) <= bound) i++;
    lines.push(`${name}_bucket${labelText({ ...s.labels, le: formatValue(bound) })} ${i}`);
  }
  lines.push(`${name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${sorted.length}`);
  lines.push(`${name}_sum${labelText(s.labels)} ${formatValue(sorted.reduce((a, b) => a + b, 0))}`);
  lines.push(`${name}_count${labelText(s.labels)} ${sorted.length}`);
  return lines;
}

/** The exposition of these families, in order; a family without samples still says HELP/TYPE. */
export function renderMetrics(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const f of families) {
    if (!NAME.test(f.name)) throw new Error(`invalid Prometheus metric name "${f.name}"`);
    if (seen.has(f.name)) throw new Error(`metric ${f.name} is written twice`);
    seen.add(f.name);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
    lines.push(`# TYPE ${f.name} ${f.type}`);
    if (f.type === 'histogram') {
      for (const s of f.samples) lines.push(...histogramLines(f.name, s));
    } else {
      for (const s of f.samples) lines.push(`${f.name}${labelText(s.labels)} ${formatValue(s.value)}`);
    }
  }
  return lines.join('\n') + '\n';
}
