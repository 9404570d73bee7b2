/**
 * Naming the rows that differ, once a differing chunk has been narrowed to a small range
 * (or a few hash buckets): both sides send that range's keys and row hashes only; keys on
 * one side are missing or extra, keys whose hash differs are fetched in full from both
 * sides (by primary key, at most --max-diffs of them) to name the changed columns. Tables
 * without a primary key are compared as multisets of row texts.
 */
import { columnNames, rowsByKeySql, type RowShape } from './row-sql.js';
import type { ChunkPlace, RowDifference } from './types.js';
import type { WorkerPair } from './worker-pair.js';

/** How many more row differences a table may list; shared by its chunks. */
export interface DiffBudget {
  remaining: number;
  truncated: boolean;
}

export function takeFromBudget<T>(budget: DiffBudget, items: T[]): T[] {
  if (items.length > budget.remaining) budget.truncated = true;
  const taken = items.slice(0, Math.max(0, budget.remaining));
  budget.remaining -= taken.length;
  return taken;
}

/** Integers in numeric order, everything else as text. */
function compareText(a: string, b: string): number {
  if (/^-?\d+$/.test(a) && /^-?\d+$/.test(b)) {
    const d = BigInt(a) - BigInt(b);
    return d < 0n ? -1 : d > 0n ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const c = compareText(a[i] ?? '', b[i] ?? '');
    if (c !== 0) return c;
  }
  return 0;
}

const keyId = (k: string[]) => JSON.stringify(k);

interface KeyedRow {
  k: string[];
  h: string;
  /** The hash bucket the row is in (hash-bucket tables). */
  b?: string;
}

/** Which rows to fetch, and where each fetched row was found. */
export interface RangeWhere {
  /** Names the range in error messages. */
  what: string;
  sql: string;
  params: unknown[];
  place: (bucket: string | undefined) => ChunkPlace;
}

/** Differences among keyed rows fetched from both sides for one small range. */
export async function diffKeyed(
  pair: WorkerPair,
  shape: RowShape,
  where: RangeWhere,
  budget: DiffBudget,
): Promise<RowDifference[]> {
  const [src, tgt] = await pair.both<KeyedRow>(`rows of ${where.what}`, where.sql, where.params);
  const source = new Map(src.map((r) => [keyId(r.k), r]));
  const target = new Map(tgt.map((r) => [keyId(r.k), r]));
  const found: { kind: 'missing on target' | 'extra on target' | 'changed'; key: string[]; b?: string }[] =
    [];
  for (const [id, s] of source) {
    const t = target.get(id);
    if (!t) found.push({ kind: 'missing on target', key: s.k, b: s.b });
    else if (t.h !== s.h) found.push({ kind: 'changed', key: s.k, b: s.b });
  }
  for (const [id, t] of target) {
    if (!source.has(id)) found.push({ kind: 'extra on target', key: t.k, b: t.b });
  }
  found.sort((a, b) => compareKeys(a.key, b.key));
  const listed = takeFromBudget(budget, found);

  const keys = shape.key ?? [];
  const keyRecord = (k: string[]) => Object.fromEntries(keys.map((c, i) => [c.name, k[i] ?? '']));
  const changedKeys = listed.filter((f) => f.kind === 'changed').map((f) => f.key);
  const values = new Map<string, { s?: (string | null)[]; t?: (string | null)[] }>();
  if (changedKeys.length) {
    const [sv, tv] = await pair.both<{ k: string[]; v: (string | null)[] }>(
      `changed rows of ${where.what}`,
      rowsByKeySql(shape, changedKeys),
    );
    for (const r of sv) values.set(keyId(r.k), { ...values.get(keyId(r.k)), s: r.v });
    for (const r of tv) values.set(keyId(r.k), { ...values.get(keyId(r.k)), t: r.v });
  }
  return listed.map((f): RowDifference => {
    const place = where.place(f.b);
    if (f.kind !== 'changed') return { kind: f.kind, chunk: place, key: keyRecord(f.key) };
    const v = values.get(keyId(f.key));
    const columns = columnNames(shape)
      .map((name, i) => ({ name, source: v?.s?.[i] ?? null, target: v?.t?.[i] ?? null }))
      .filter((c, i) => !sameValue(v?.s?.[i], v?.t?.[i]));
    return { kind: 'changed', chunk: place, key: keyRecord(f.key), columns };
  });
}

/** NULL and '' are different values; undefined (row not fetched) equals nothing. */
function sameValue(a: string | null | undefined, b: string | null | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  return a === b;
}

interface ContentRow {
  r: string;
  n: string;
  b?: string;
}

/** Differences among row texts (with multiplicity) fetched from both sides. */
export async function diffContent(
  pair: WorkerPair,
  where: RangeWhere,
  budget: DiffBudget,
): Promise<RowDifference[]> {
  const [src, tgt] = await pair.both<ContentRow>(`rows of ${where.what}`, where.sql, where.params);
  const counts = new Map<string, { s: number; t: number; b: string | undefined }>();
  for (const r of src) counts.set(r.r, { s: Number(r.n), t: 0, b: r.b });
  for (const r of tgt) counts.set(r.r, { s: counts.get(r.r)?.s ?? 0, t: Number(r.n), b: r.b });
  const found = [...counts.entries()]
    .filter(([, c]) => c.s !== c.t)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return takeFromBudget(budget, found).map(([row, c]) => ({
    kind: 'content',
    chunk: where.place(c.b),
    row,
    sourceCount: c.s,
    targetCount: c.t,
  }));
}
