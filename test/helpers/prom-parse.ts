/**
 * A strict parser of the Prometheus text format (0.0.4) for tests, with the naming rules
 * `promtool check metrics` enforces: valid names, TYPE before samples and once, counters
 * ending in `_total`, base units (no `_milliseconds`, `_kilobytes`, …), histograms with
 * ascending cumulative buckets whose +Inf equals `_count`, no series twice.
 */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  samples: ParsedSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const NON_BASE_UNITS =
  /_(milliseconds|microseconds|nanoseconds|minutes|hours|days|kilobytes|megabytes|gigabytes|bits|percent)(_|$)/;

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) throw new Error(`bad labels in: ${line}`);
    const key = m[1]!;
    if (key in labels) throw new Error(`label ${key} twice in: ${line}`);
    labels[key] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    at = re.lastIndex;
  }
  return labels;
}

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const v = Number(text);
  if (text === '' || Number.isNaN(v)) throw new Error(`bad value in: ${line}`);
  return v;
}

function familyOf(sample: string, families: Map<string, ParsedFamily>): ParsedFamily | undefined {
  const direct = families.get(sample);
  if (direct) return direct;
  const base = sample.replace(/_(bucket|sum|count)$/, '');
  const f = families.get(base);
  return f?.type === 'histogram' || f?.type === 'summary' ? f : undefined;
}

function checkHistogram(f: ParsedFamily): void {
  const series = new Map<string, ParsedSample[]>();
  for (const s of f.samples.filter((x) => x.name.endsWith('_bucket'))) {
    const { le, ...rest } = s.labels;
    if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
    const key = JSON.stringify(rest);
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  for (const [key, buckets] of series) {
    let lastLe = -Infinity;
    let lastCount = 0;
    for (const b of buckets) {
      const le = parseValue(b.labels.le!, b.name);
      if (le <= lastLe) throw new Error(`${f.name}${key}: buckets not ascending`);
      if (b.value < lastCount) throw new Error(`${f.name}${key}: buckets not cumulative`);
      lastLe = le;
      lastCount = b.value;
    }
    if (lastLe !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    const count = f.samples.find((s) => s.name === `${f.name}_count` && JSON.stringify(s.labels) === key);
    if (!count || count.value !== lastCount) throw new Error(`${f.name}${key}: _count differs from +Inf`);
    if (!f.samples.some((s) => s.name === `${f.name}_sum` && JSON.stringify(s.labels) === key))
      throw new Error(`${f.name}${key}: no _sum`);
  }
}

export function parsePrometheusText(text: string): Map<string, ParsedFamily> {
  const families = new Map<string, ParsedFamily>();
  const seen = new Set<string>();
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
      const f = families.get(name) ?? { name, type: 'untyped', help: '', samples: [] };
      if (kind === 'TYPE') {
        if (f.type !== 'untyped') throw new Error(`TYPE twice for ${name}`);
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest))
          throw new Error(`bad type ${rest}`);
        if (f.samples.length > 0) throw new Error(`TYPE after samples for ${name}`);
        f.type = rest;
      } else f.help = rest;
      families.set(name, f);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const name = m[1]!;
    const f = familyOf(name, families);
    if (!f || f.type === 'untyped') throw new Error(`sample ${name} has no TYPE before it`);
    const labels = parseLabels(m[2] ?? '', line);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(key)) throw new Error(`series twice: ${line}`);
    seen.add(key);
    f.samples.push({ name, labels, value: parseValue(m[3]!, line) });
  }
  for (const f of families.values()) {
    if (!f.name.startsWith('pgconvoy_')) throw new Error(`${f.name}: not prefixed pgconvoy_`);
    if (!f.help) throw new Error(`${f.name}: no HELP`);
    if (f.type === 'counter' && !f.name.endsWith('_total'))
      throw new Error(`counter ${f.name} must end in _total`);
    if (f.type !== 'counter' && f.name.endsWith('_total'))
      throw new Error(`non-counter ${f.name} ends in _total`);
    if (NON_BASE_UNITS.test(f.name)) throw new Error(`${f.name}: use base units (seconds, bytes)`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`. */
export function sampleValue(
  families: Map<string, ParsedFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = familyOf(name, families);
  const matches = (family?.samples ?? []).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${matches.length} samples`);
  return matches[0]?.value;
}
