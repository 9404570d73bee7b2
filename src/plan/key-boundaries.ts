/**
 * Where to cut an integer key so that key ranges hold similar numbers of rows, without
 * reading the table. Two sources, both equi-depth (so skewed or sparse keys do not matter,
 * unlike (max-min)/n):
 *
 *  - the column's statistics (`pg_stats.histogram_bounds`, plus `most_common_vals` as point
 *    masses) when they are fresh (few rows modified since the last ANALYZE) and fine enough
 *    (at least BUCKETS_PER_CHUNK buckets per chunk): no read at all;
 *  - otherwise a sample of random heap pages (`TABLESAMPLE SYSTEM`), a bounded read whatever
 *    the table's size, whose quantiles the server computes (percentile_disc).
 *
 * Every boundary returned is a key value as text (exact for int8 above 2^53: never a JS number).
 * Checked on 13, 15, 17.
 */
import type pg from 'pg';
import type { TableInfo } from '../inventory/inventory.js';
import { qualifiedName, quoteIdent } from '../util/sql.js';

/** Statistics are used only when at most this fraction of the rows changed since ANALYZE. */
const MAX_MODIFIED_FRACTION = 0.05;
/** A chunk must span this many histogram buckets (each is ±1 bucket precise). */
const BUCKETS_PER_CHUNK = 10;
/**
 * Pages read by the sample. Rows of one page usually hold neighbouring keys, so precision
 * comes from the number of pages per chunk: 128 give about ±9 % per chunk. Never fewer than
 * 2000 pages, never more than 100 000 (800 MB of random reads, for a table of thousands of chunks).
 */
export const defaultSamplePages = (chunks: number): number => Math.min(100_000, Math.max(2000, 128 * chunks));
/** Keys sorted by the server: about 30 000 for a few chunks, more for thousands. */
const sampleKeysFor = (chunks: number): number => Math.min(1_000_000, Math.max(30_000, 100 * chunks));

export interface KeyBoundaries {
  /** Sorted, distinct inner boundaries; chunk i is [b(i-1), b(i)). */
  bounds: string[];
  source: 'statistics' | 'sample';
  /** Keys the sample sorted (0 for statistics). */
  sampledKeys: number;
}

const cmp = (a: string, b: string): number => {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/** Sorted, distinct, strictly above `min` and at most `max` (a boundary at min would give an empty chunk). */
export function cleanBounds(values: string[], min: string, max: string): string[] {
  const sorted = values.filter((v) => cmp(v, min) > 0 && cmp(v, max) <= 0).sort(cmp);
  return sorted.filter((v, i) => i === 0 || v !== sorted[i - 1]);
}

interface StatsRow {
  null_frac: number;
  bounds: string[] | null;
  mcv: string[] | null;
  mcf: number[] | null;
  reltuples: number;
  modified: string | null;
}

// pg_stats is readable for columns the role may SELECT. Checked on 13, 15, 17.
const STATS_SQL = `
SELECT s.null_frac,
       s.histogram_bounds::text::pg_catalog.int8[]::pg_catalog.text[] AS bounds,
       s.most_common_vals::text::pg_catalog.int8[]::pg_catalog.text[] AS mcv,
       s.most_common_freqs AS mcf,
       c.reltuples::float8 AS reltuples,
       st.n_mod_since_analyze::text AS modified
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
LEFT JOIN pg_catalog.pg_stat_all_tables st ON st.relid = c.oid
WHERE c.oid = $1 AND s.attname = $2 AND NOT s.inherited`;

/**
 * Boundaries from fresh statistics, or undefined. Candidates are the histogram bounds and the
 * most common values, each with the fraction of rows estimated below it; for each target
 * quantile the candidate closest to it is taken.
 */
export async function boundsFromStatistics(
  client: pg.Client,
  table: TableInfo,
  column: string,
  chunks: number,
): Promise<string[] | undefined> {
  const row = (await client.query<StatsRow>(STATS_SQL, [table.oid, column])).rows[0];
  if (!row?.bounds || row.modified === null || row.reltuples <= 0) return undefined;
  if (Number(row.modified) > MAX_MODIFIED_FRACTION * row.reltuples) return undefined;
  const buckets = row.bounds.length - 1;
  if (buckets < BUCKETS_PER_CHUNK * chunks) return undefined;
  const mcv = row.mcv ?? [];
  const mcf = row.mcf ?? [];
  const histMass = Math.max(0, 1 - row.null_frac - mcf.reduce((a, b) => a + b, 0));
  const perBucket = histMass / buckets;
  const bounds = row.bounds;
  /** Histogram mass below v: whole buckets below it, half of the one it falls in. */
  const histBelow = (v: string): number => {
    const exact = bounds.indexOf(v);
    if (exact >= 0) return exact * perBucket;
    const under = bounds.filter((b) => cmp(b, v) < 0).length;
    return Math.max(0, Math.min(buckets, under - 0.5)) * perBucket;
  };
  const mcvBelow = (v: string): number =>
    mcv.reduce((sum, m, i) => (cmp(m, v) < 0 ? sum + (mcf[i] ?? 0) : sum), 0);
  const candidates = [...bounds, ...mcv].map((v) => ({ v, below: histBelow(v) + mcvBelow(v) }));
  const total = 1 - row.null_frac;
  const picked: string[] = [];
  for (let i = 1; i < chunks; i++) {
    const target = (total * i) / chunks;
    let best = candidates[0];
    for (const c of candidates) {
      if (best === undefined || Math.abs(c.below - target) < Math.abs(best.below - target)) best = c;
    }
    if (best) picked.push(best.v);
  }
  return picked;
}

/**
 * The sampling query: random pages (SYSTEM), then at most about `keepFraction` of their keys,
 * sorted once by the server. Exported so that tests can EXPLAIN it.
 */
export function keySampleQuery(
  table: TableInfo,
  column: string,
  percent: number,
  keepFraction: number,
  chunks: number,
): { text: string; values: unknown[] } {
  const col = quoteIdent(column);
  const from =
    percent >= 100
      ? `ONLY ${qualifiedName(table.schema, table.name)}`
      : `ONLY ${qualifiedName(table.schema, table.name)} TABLESAMPLE SYSTEM ($2::pg_catalog.float4) REPEATABLE (42)`;
  const keep = keepFraction >= 1 ? '' : ` AND pg_catalog.random() < ${keepFraction.toFixed(6)}`;
  const fractions = Array.from({ length: chunks - 1 }, (_, i) => (i + 1) / chunks);
  return {
    text: `
SELECT pg_catalog.percentile_disc($1::pg_catalog.float8[]) WITHIN GROUP (ORDER BY s.k)::pg_catalog.text[] AS q,
       pg_catalog.count(*)::int8 AS n
FROM (SELECT ${col}::pg_catalog.int8 AS k FROM ${from}) s
WHERE s.k IS NOT NULL${keep}`,
    values: percent >= 100 ? [fractions] : [fractions, percent],
  };
}

/** Boundaries from a sample of `samplePages` random pages of a table of `blocks` pages. */
export async function boundsFromSample(
  client: pg.Client,
  table: TableInfo,
  column: string,
  chunks: number,
  blocks: number,
  samplePages: number,
): Promise<{ bounds: string[]; sampledKeys: number }> {
  const percent = blocks <= 0 ? 100 : Math.min(100, (100 * samplePages) / blocks);
  // Rows per page from the last VACUUM/ANALYZE when known; 100 (a narrow row) otherwise.
  const stats = await client.query<{ reltuples: number; relpages: number }>(
    'SELECT reltuples::float8 AS reltuples, relpages FROM pg_catalog.pg_class WHERE oid = $1',
    [table.oid],
  );
  const s = stats.rows[0];
  const rowsPerPage = s && s.reltuples > 0 && s.relpages > 0 ? s.reltuples / s.relpages : 100;
  const expected = Math.min(samplePages, Math.max(blocks, 1)) * rowsPerPage;
  const keepFraction = Math.min(1, sampleKeysFor(chunks) / Math.max(1, expected));
  const q = keySampleQuery(table, column, percent, keepFraction, chunks);
  const res = await client.query<{ q: (string | null)[] | null; n: string }>(q.text, q.values);
  const row = res.rows[0];
  const bounds = (row?.q ?? []).filter((v): v is string => v !== null);
  return { bounds, sampledKeys: Number(row?.n ?? 0) };
}

/** Smallest and largest non-NULL key, from the index (two index probes), or undefined when there is none. */
export async function keyExtent(
  client: pg.Client,
  table: TableInfo,
  column: string,
): Promise<{ min: string; max: string } | undefined> {
  const col = quoteIdent(column);
  const tbl = qualifiedName(table.schema, table.name);
  const one = async (dir: 'ASC' | 'DESC') =>
    (
      await client.query<{ k: string }>(
        `SELECT ${col}::pg_catalog.text AS k FROM ONLY ${tbl} WHERE ${col} IS NOT NULL ORDER BY ${col} ${dir} LIMIT 1`,
      )
    ).rows[0]?.k;
  const min = await one('ASC');
  const max = await one('DESC');
  return min === undefined || max === undefined ? undefined : { min, max };
}

/** Inner boundaries for `chunks` key ranges: statistics when fresh and fine enough, else a sample. */
export async function keyBoundaries(
  client: pg.Client,
  table: TableInfo,
  column: string,
  chunks: number,
  extent: { min: string; max: string },
  blocks: number,
  samplePages: number,
): Promise<KeyBoundaries> {
  const fromStats = await boundsFromStatistics(client, table, column, chunks);
  if (fromStats) {
    const bounds = cleanBounds(fromStats, extent.min, extent.max);
    if (bounds.length > 0) return { bounds, source: 'statistics', sampledKeys: 0 };
  }
  const sample = await boundsFromSample(client, table, column, chunks, blocks, samplePages);
  return {
    bounds: cleanBounds(sample.bounds, extent.min, extent.max),
    source: 'sample',
    sampledKeys: sample.sampledKeys,
  };
}
