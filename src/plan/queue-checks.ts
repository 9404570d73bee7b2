/**
 * Checks of queue-file lines that compare values in the column's own type, on the server
 * (so `01` and `1` are one integer, and text follows the column's collation), plus the
 * integer range conversion that must not overflow. Used by queue-plan.ts.
 * `type` always comes from format_type() in the catalog, never from the file. Checked on 13, 15, 17.
 */
import type pg from 'pg';
import type { QueueLine } from './queue-file.js';

/**
 * The type to cast a file's values to: format_type with typmod -1 gives the type without a
 * length (`bpchar`, `"bit"`), where format_type(oid, NULL) gives `character` and `bit`, which
 * mean char(1) and bit(1) — a cast to them truncates 'abcde' to 'a' and selects the wrong rows.
 */
export const LITERAL_TYPE_SQL = 'pg_catalog.format_type(a.atttypid, -1)';

const INTEGER_MAX: Record<string, bigint> = {
  smallint: 32767n,
  integer: 2147483647n,
  bigint: 9223372036854775807n,
};

/**
 * Flexy's inclusive `high` as pgconvoy's exclusive bound: high + 1, or undefined (no upper
 * bound) when high is the type's largest value (high + 1 would not be a valid value).
 */
export function exclusiveIntegerHigh(type: string, high: string): string | undefined {
  const max = INTEGER_MAX[type];
  const h = BigInt(high);
  return max !== undefined && h >= max ? undefined : (h + 1n).toString();
}

/** I lines whose low is above their high (an empty range: a typo that would copy nothing). */
export async function invertedRanges(
  client: pg.Client,
  type: string,
  lines: QueueLine[],
): Promise<QueueLine[]> {
  const res = await client.query<{ i: number }>(
    `SELECT r.i FROM ROWS FROM (pg_catalog.unnest($1::int[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS r(i, lo, hi)
     WHERE r.hi IS NOT NULL AND r.lo::${type} > r.hi::${type} ORDER BY r.i`,
    [lines.map((_, i) => i), lines.map((l) => l.low ?? null), lines.map((l) => l.high ?? null)],
  );
  return res.rows.flatMap((r) => lines[r.i] ?? []);
}

/** Pairs of V lines whose values are equal in the column's type (`1`, `01`, `+1`): rows copied twice. */
export async function equalValues(
  client: pg.Client,
  type: string,
  lines: QueueLine[],
): Promise<{ earlier: QueueLine; later: QueueLine }[]> {
  const res = await client.query<{ a: number; b: number }>(
    `WITH v(i, x) AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::int[]), pg_catalog.unnest($2::text[])))
     SELECT a.i AS a, b.i AS b FROM v a JOIN v b ON a.i < b.i AND a.x::${type} = b.x::${type}
     WHERE NOT EXISTS (SELECT 1 FROM v c WHERE c.i < a.i AND c.x::${type} = a.x::${type})
     ORDER BY b.i`,
    [lines.map((_, i) => i), lines.map((l) => l.value ?? null)],
  );
  return res.rows.flatMap((r) => {
    const earlier = lines[r.a];
    const later = lines[r.b];
    return earlier && later ? [{ earlier, later }] : [];
  });
}
