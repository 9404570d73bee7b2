/**
 * How a row becomes one 64-bit hash inside the server, cheaply and the same way on every
 * major from 12 on.
 *
 * Each compared column is hashed on its own with one of PostgreSQL's extended hash functions
 * (the ones hash partitioning uses, so their results do not change between majors), seeded by
 * the column's position; the row hash is the XOR of its column hashes. NULL hashes to a
 * constant of its own per position (left out for columns NOT NULL on both sides), so NULL,
 * '' and 0 differ, and two values that trade columns change the row hash.
 *
 * A hash function compares values by *equality*, verify needs *identity*: numeric 1.0 and
 * 1.00 are equal but print differently, so are float 0 and -0, intervals '1 day' and
 * '24 hours', jsonb numbers, citext 'A' and 'a'; enum hashes are label OIDs, which differ
 * between servers. So only types whose hash function sees every bit of the value hash
 * directly; every other type hashes its text (the output function, with verify's pinned
 * settings — session.ts), which is what `ROW(...)::text` used to print, at a fraction of the
 * cost (measured on PostgreSQL 15 over 9.2 M rows of bigint/int/smallint/timestamp columns:
 * direct hashes 3.1 s, md5 of the row text 25–38 s).
 *
 * Text is hashed under the "C" collation: with a nondeterministic collation the hash would
 * treat 'A' and 'a' alike. When the two servers' encodings differ, text is hashed as its
 * UTF-8 bytes (through md5, the one byte-string hash SQL can call).
 *
 * A column whose type differs between the sides (int4 on one, int8 on the other) hashes its
 * text on both, so equal values still compare equal.
 */
import { quoteIdent } from '../util/sql.js';

/** How one column is hashed. */
export type ColumnHash =
  /** Its own type's hash function, which sees every bit of the value. */
  | 'direct'
  /** Hashed as timestamp (timestamptz in UTC, date at midnight): both injective. */
  | 'as-timestamp'
  /** float: the bits, but zero (0 or -0) as text. */
  | 'float'
  /** bpchar: its output keeps trailing blanks, its cast to text does not. */
  | 'bpchar-text'
  /** Everything else: the value as text. */
  | 'text';

export interface HashedColumn {
  name: string;
  /** Base type in pg_catalog (domains resolved), or undefined for other types. */
  type: string | undefined;
  hash: ColumnHash;
  /** NOT NULL on both sides: no NULL marker needed (one step less per value). */
  notNull: boolean;
}

/** pg_catalog base types whose extended hash function sees every bit of the value. */
const DIRECT: Record<string, string> = {
  int2: 'hashint2extended',
  int4: 'hashint4extended',
  int8: 'hashint8extended',
  oid: 'hashoidextended',
  text: 'hashtextextended',
  varchar: 'hashtextextended',
  timestamp: 'timestamp_hash_extended',
  time: 'time_hash_extended',
  uuid: 'uuid_hash_extended',
};

/** How a column is hashed, from its base type on each side (undefined: not a pg_catalog type). */
export function columnHash(sourceType: string | undefined, targetType: string | undefined): ColumnHash {
  if (sourceType === undefined || sourceType !== targetType) return 'text';
  if (sourceType in DIRECT || sourceType === 'bool') return 'direct';
  if (sourceType === 'timestamptz' || sourceType === 'date') return 'as-timestamp';
  if (sourceType === 'float4' || sourceType === 'float8') return 'float';
  if (sourceType === 'bpchar') return 'bpchar-text';
  return 'text';
}

const MASK64 = (1n << 64n) - 1n;
/** A 64-bit constant per position (golden-ratio steps), as a signed SQL literal. */
function nullMarker(position: number): string {
  const u = (BigInt(position + 1) * 0x9e3779b97f4a7c15n) & MASK64;
  const signed = u >= 1n << 63n ? u - (1n << 64n) : u;
  return `(${signed})::pg_catalog.int8`;
}

function textHash(text: string, seed: number, convert: boolean): string {
  const bytes = convert ? `pg_catalog.md5(pg_catalog.convert_to(${text}, 'UTF8'))` : text;
  return `pg_catalog.hashtextextended(${bytes} COLLATE pg_catalog."C", ${seed})`;
}

/** One column's hash; `position` seeds it (and its NULL marker). */
function columnHashSql(column: HashedColumn, position: number, convert: boolean): string {
  const c = quoteIdent(column.name);
  const seed = position + 1;
  const type = column.type ?? '';
  let h: string;
  switch (column.hash) {
    case 'direct':
      if (type === 'bool') h = `pg_catalog.hashint4extended(${c}::pg_catalog.int4, ${seed})`;
      else if (DIRECT[type] === 'hashtextextended') h = textHash(c, seed, convert);
      else h = `pg_catalog.${DIRECT[type] ?? 'hashtextextended'}(${c}, ${seed})`;
      break;
    case 'as-timestamp':
      h = `pg_catalog.timestamp_hash_extended(${c}::pg_catalog.timestamp, ${seed})`;
      break;
    case 'float':
      // Zero (0 or -0) goes by its text: the float hash gives both the same value.
      h = `CASE WHEN ${c} = (0)::pg_catalog.${type} THEN ${textHash(`${c}::pg_catalog.text`, seed, false)}
             ELSE pg_catalog.hash${type}extended(${c}, ${seed}) END`;
      break;
    case 'bpchar-text':
      h = textHash(`pg_catalog.textin(pg_catalog.bpcharout(${c}))`, seed, convert);
      break;
    case 'text':
      h = textHash(`${c}::pg_catalog.text`, seed, convert);
      break;
  }
  return column.notNull ? h : `COALESCE(${h}, ${nullMarker(position)})`;
}

/**
 * The 64-bit hash of a row over `columns` (an int8 expression). `offset` shifts the seeds so
 * that a key hash and a row hash of the same columns differ.
 */
export function rowHashSql(columns: HashedColumn[], convert: boolean, offset = 0): string {
  if (!columns.length) return `(0)::pg_catalog.int8`;
  return `(${columns.map((c, i) => columnHashSql(c, offset + i, convert)).join('\n   # ')})`;
}

/** Hex digits of a bucket at most: buckets are the top bits of a 64-bit hash, kept positive. */
export const MAX_BUCKET_DIGITS = 15;

/** The bucket of `hash` at `digits` hex digits, as an int8 expression. */
export function bucketSql(hash: string, digits: number): string {
  const bits = 4 * Math.min(digits, MAX_BUCKET_DIGITS);
  return `((${hash} >> ${64 - bits}) & ${(1n << BigInt(bits)) - 1n})`;
}

/** A bucket's hex label as users see it (`3f`), as the number SQL compares. */
export const bucketNumber = (label: string) => BigInt(`0x${label}`).toString();
