/**
 * Tables with an integer split column: key-range chunks (plan/chunk.ts), one checksum per
 * chunk and side. A differing chunk is bisected on the key — both halves re-checksummed on
 * both sides, only differing halves followed — until a range holds few rows; then that
 * range's rows are compared by key (row-diff.ts). Rows whose key is NULL travel with the
 * first chunk and, when it is bisected, get a chunk of their own.
 */
import { chunkCondition, chunkLabel, type Chunk } from '../plan/chunk.js';
import { keyRangeChunks, keyRanges, MAX_CHUNKS } from '../plan/split-table.js';
import { diffContent, diffKeyed, type RangeWhere } from './row-diff.js';
import { checksumSql, contentRowsSql, keyBoundsSql, keyedRowsSql, type Checksum } from './row-sql.js';
import { sameChecksum, type TableJob } from './table-job.js';
import { VERIFY_DEFAULTS, type ChunkPlace, type RowDifference } from './types.js';
import type { WorkerPair } from './worker-pair.js';

type RangeChunk = Extract<Chunk, { kind: 'key-range' } | { kind: 'value' }>;

/**
 * Reads the key's bounds on both sides (for bisection), then cuts the key into about
 * rows/chunkRows chunks: where the copy would, else into equal widths of [min, max].
 */
export async function planKeyRanges(
  pair: WorkerPair,
  job: TableJob,
  chunkRows: number,
): Promise<RangeChunk[]> {
  const split = job.split;
  if (!split) throw new Error('planKeyRanges needs a split column');
  const [s, t] = await pair.both<{ lo: string | null; hi: string | null }>(
    'the key range',
    keyBoundsSql(job.shape, split.name),
  );
  const los = [s[0]?.lo, t[0]?.lo].filter((v): v is string => typeof v === 'string').map(BigInt);
  const his = [s[0]?.hi, t[0]?.hi].filter((v): v is string => typeof v === 'string').map(BigInt);
  if (!los.length || !his.length) return keyRanges(split.name, split.type, []);
  const lo = los.reduce((a, b) => (b < a ? b : a));
  const hi = his.reduce((a, b) => (b > a ? b : a));
  job.keyMin = lo;
  job.keyMax = hi;
  const wanted = Math.min(MAX_CHUNKS, Math.max(1, Math.ceil(job.estimatedRows / chunkRows)));
  // Where the copy cuts (equi-depth from the source's statistics or a page sample), so that
  // chunks hold similar row counts even when keys are skewed or sparse.
  if (job.sourceTable && wanted > 1) {
    const extent = { min: String(lo), max: String(hi) };
    const cut = await keyRangeChunks(pair.source.client, job.sourceTable, split, wanted, extent);
    if (cut && cut.chunks.length > 1) return cut.chunks;
  }
  const span = hi - lo + 1n;
  const n = BigInt(wanted) > span ? span : BigInt(wanted);
  const width = (span + n - 1n) / n;
  const bounds: string[] = [];
  for (let i = 1n; i < n; i++) bounds.push(String(lo + width * i));
  return keyRanges(split.name, split.type, bounds);
}

const place = (top: RangeChunk, leaf: RangeChunk): ChunkPlace => ({
  label: chunkLabel(top),
  ...(top.kind === 'key-range' && top.low !== undefined ? { low: top.low } : {}),
  ...(top.kind === 'key-range' && top.high !== undefined ? { high: top.high } : {}),
  range: chunkLabel(leaf),
});

async function checksums(pair: WorkerPair, job: TableJob, chunk: RangeChunk): Promise<[Checksum, Checksum]> {
  const [s, t] = await pair.both<Checksum>(
    `the checksum of ${chunkLabel(chunk)}`,
    checksumSql(job.shape, chunkCondition(chunk)),
  );
  const zero = { n: '0', s: '0' };
  return [s[0] ?? zero, t[0] ?? zero];
}

/** The halves of a range (and its NULL keys apart), or undefined when it cannot be cut. */
function bisect(job: TableJob, chunk: RangeChunk): RangeChunk[] | undefined {
  if (chunk.kind !== 'key-range') return undefined;
  const nulls: RangeChunk[] = chunk.includeNulls
    ? [{ kind: 'value', column: chunk.column, columnType: chunk.columnType, value: null }]
    : [];
  const lo = chunk.low !== undefined ? BigInt(chunk.low) : job.keyMin;
  const hi =
    chunk.high !== undefined ? BigInt(chunk.high) : job.keyMax === undefined ? undefined : job.keyMax + 1n;
  if (lo === undefined || hi === undefined || hi - lo <= 1n) {
    return nulls.length ? [{ ...chunk, includeNulls: false }, ...nulls] : undefined;
  }
  const mid = String(lo + (hi - lo) / 2n);
  return [
    { ...chunk, high: mid, includeNulls: false },
    { ...chunk, low: mid, includeNulls: false },
    ...nulls,
  ];
}

async function fetchRange(
  pair: WorkerPair,
  job: TableJob,
  top: RangeChunk,
  leaf: RangeChunk,
): Promise<RowDifference[]> {
  const cond = chunkCondition(leaf);
  const where = (sql: string): RangeWhere => ({
    what: chunkLabel(leaf),
    sql,
    params: [],
    place: () => place(top, leaf),
  });
  return job.shape.key
    ? diffKeyed(pair, job.shape, where(keyedRowsSql(job.shape, cond)), job.budget)
    : diffContent(pair, where(contentRowsSql(job.shape, cond)), job.budget);
}

async function narrow(
  pair: WorkerPair,
  job: TableJob,
  top: RangeChunk,
  chunk: RangeChunk,
  sums: [Checksum, Checksum],
): Promise<RowDifference[]> {
  const rows = Math.max(Number(sums[0].n), Number(sums[1].n));
  const halves = rows <= VERIFY_DEFAULTS.leafRows ? undefined : bisect(job, chunk);
  if (!halves) {
    if (rows > VERIFY_DEFAULTS.fetchCap) {
      if (job.budget.remaining <= 0) return [];
      job.budget.remaining--;
      return [
        {
          kind: 'not listed',
          chunk: place(top, chunk),
          sourceRows: Number(sums[0].n),
          targetRows: Number(sums[1].n),
        },
      ];
    }
    return fetchRange(pair, job, top, chunk);
  }
  const found: RowDifference[] = [];
  for (const half of halves) {
    const sub = await checksums(pair, job, half);
    if (sameChecksum(sub[0], sub[1])) continue;
    if (job.budget.remaining <= 0) {
      job.budget.truncated = true;
      break;
    }
    found.push(...(await narrow(pair, job, top, half, sub)));
  }
  return found;
}

/** Checksums one chunk on both sides and, when it differs, names the rows (within budget). */
export async function verifyKeyRange(
  pair: WorkerPair,
  job: TableJob,
  chunk: RangeChunk,
  onNarrow: () => void,
): Promise<boolean> {
  const sums = await checksums(pair, job, chunk);
  job.sourceRows += Number(sums[0].n);
  job.targetRows += Number(sums[1].n);
  if (sameChecksum(sums[0], sums[1])) return true;
  job.chunksDiffering++;
  if (job.budget.remaining <= 0) {
    job.budget.truncated = true;
    return false;
  }
  onNarrow();
  job.differences.push(...(await narrow(pair, job, chunk, chunk, sums)));
  return false;
}
