import { InvalidArgumentError } from 'commander';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('expected a whole number of 1 or more');
  return n;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000 };

/** A time as PostgreSQL's settings take it: 500 (milliseconds, as pg_dump reads it), 500ms, 30s, 2min, 1h. */
export function milliseconds(value: string): number {
  const m = /^\s*(\d+)\s*(ms|s|min|h)?\s*$/.exec(value);
  const n = m ? Number(m[1]) * UNIT_MS[m[2] ?? 'ms']! : NaN;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a time of 1 ms or more, e.g. 30s, 2min or 500 (milliseconds)');
  return n;
}
