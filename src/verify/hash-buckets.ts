/**
 * Tables without an integer split column. Heap block ranges cannot be compared between
 * servers (each lays rows out its own way), so rows are grouped by what they are: the
 * top hex digits of the 64-bit hash of the primary key, or of the row when there is no key.
 * One pass per side gives a checksum per bucket; a changed row stays in its key's bucket on
 * both sides. Differing buckets are split further by more hex digits (one more pass over
 * only those buckets) until few rows are left, and those rows are compared (row-diff.ts).
 */
import { diffContent, diffKeyed } from './row-diff.js';
import { bucketNumber, MAX_BUCKET_DIGITS } from './row-hash.js';
import { bucketSql, contentBucketRowsSql, keyedBucketRowsSql, type Checksum } from './row-sql.js';
import { sameChecksum, type TableJob } from './table-job.js';
import { VERIFY_DEFAULTS, type ChunkPlace } from './types.js';
import type { WorkerPair } from './worker-pair.js';

/** Hex digits of the first level: about leafRows rows per bucket, at most 16^4 buckets. */
export function firstLevelDigits(estimatedRows: number): number {
  let digits = 1;
  while (digits < 4 && 16 ** digits * VERIFY_DEFAULTS.leafRows < estimatedRows) digits++;
  return digits;
}

type Buckets = Map<string, Checksum>;

async function buckets(
  pair: WorkerPair,
  job: TableJob,
  digits: number,
  within?: { digits: number; prefixes: string[] },
): Promise<[Buckets, Buckets]> {
  const [s, t] = await pair.both<Checksum & { b: string }>(
    within ? `hash buckets of ${within.prefixes.length} bucket(s)` : 'hash buckets',
    bucketSql(job.shape, digits, within?.digits),
    within ? [within.prefixes.map(bucketNumber)] : [],
  );
  const map = (rows: (Checksum & { b: string })[]) => new Map(rows.map((r) => [r.b, r]));
  return [map(s), map(t)];
}

function differing([s, t]: [Buckets, Buckets]): string[] {
  const keys = [...new Set([...s.keys(), ...t.keys()])].sort();
  return keys.filter((k) => !sameChecksum(s.get(k), t.get(k)));
}

const rowsIn = ([s, t]: [Buckets, Buckets], prefixes: string[]) =>
  prefixes.reduce((sum, p) => sum + Math.max(Number(s.get(p)?.n ?? 0), Number(t.get(p)?.n ?? 0)), 0);

/** Compares one table by hash buckets; returns whether it matched. */
export async function verifyHashed(pair: WorkerPair, job: TableJob, onNarrow: () => void): Promise<boolean> {
  const top = firstLevelDigits(job.estimatedRows);
  let level = await buckets(pair, job, top);
  for (const c of level[0].values()) job.sourceRows += Number(c.n);
  for (const c of level[1].values()) job.targetRows += Number(c.n);
  job.chunksTotal = 16 ** top;
  const topDiffering = differing(level);
  job.chunksDiffering = topDiffering.length;
  if (!topDiffering.length) return true;
  if (job.budget.remaining <= 0) {
    job.budget.truncated = true;
    return false;
  }
  onNarrow();
  // Each differing bucket holds at least one difference: following max-diffs of them is enough.
  let digits = top;
  let selected = topDiffering.slice(0, job.budget.remaining);
  if (selected.length < topDiffering.length) job.budget.truncated = true;
  while (digits < MAX_BUCKET_DIGITS && rowsIn(level, selected) > VERIFY_DEFAULTS.fetchCap) {
    const next = Math.min(MAX_BUCKET_DIGITS, digits + 2);
    level = await buckets(pair, job, next, { digits, prefixes: selected });
    digits = next;
    const found = differing(level);
    selected = found.slice(0, job.budget.remaining);
    if (selected.length < found.length) job.budget.truncated = true;
  }
  const place = (bucket: string | undefined): ChunkPlace => ({
    label: `hash bucket ${bucket ?? '?'}`,
    range: `hash bucket ${bucket ?? '?'}${digits > top ? ` (narrowed to ${digits} hex digits)` : ''}`,
  });
  const where = {
    what: `${selected.length} hash bucket(s)`,
    params: [selected.map(bucketNumber)],
    place,
  };
  job.differences.push(
    ...(job.shape.key
      ? await diffKeyed(
          pair,
          job.shape,
          { ...where, sql: keyedBucketRowsSql(job.shape, digits, top) },
          job.budget,
        )
      : await diffContent(pair, { ...where, sql: contentBucketRowsSql(job.shape, digits, top) }, job.budget)),
  );
  return false;
}
