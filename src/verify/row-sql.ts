/**
 * The SQL that verify runs on both servers. Rows are never shipped to pgconvoy to be
 * compared: each server hashes its own rows and returns a few numbers per chunk.
 *
 * Row hash: a 64-bit hash per row over the columns both sides have, named explicitly (so
 * column order on disk does not matter); see row-hash.ts for how values are hashed.
 *
 * Chunk checksum: count(*) plus the sum of the row hashes (as numeric: no overflow). A sum
 * does not depend on row order, so there is no ORDER BY and no sort: one pass over the
 * chunk; and unlike XOR it counts a duplicated row twice. A changed row goes unnoticed only
 * if its old and new hashes collide (odds 2^-64).
 *
 * Row text (`ROW(c1, c2, ...)::text`) is used only to show and group the rows of a small
 * differing range of a table without a primary key: record output quotes '' as `""`, writes
 * NULL as nothing and quotes values with blanks, commas, quotes or parentheses, so NULL, ''
 * and 'a ' all print differently.
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import { qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';
import type { TableRef } from '../plan/chunk.js';
import { bucketSql as bucketOf, rowHashSql, type HashedColumn } from './row-hash.js';

export interface RowShape {
  table: TableRef;
  /** Columns compared (present on both sides), in source order, with how each is hashed. */
  hashed: HashedColumn[];
  /** The primary key, with the source's column types; undefined when there is none. */
  key: { name: string; type: string }[] | undefined;
  /** The sides' encodings differ: hash the UTF-8 bytes, not the server's own. */
  convert: boolean;
  /**
   * Read the table with its partitions (its layout differs between the sides, see
   * layouts.ts); otherwise ONLY its own rows (its partitions and children are compared apart).
   */
  whole?: boolean;
}

export interface Checksum {
  n: string;
  /** Sum of the row hashes. */
  s: string;
}

/** The names of the compared columns, in source order. */
export const columnNames = (shape: RowShape): string[] => shape.hashed.map((c) => c.name);

const from = (shape: RowShape) =>
  `FROM ${shape.whole ? '' : 'ONLY '}${qualifiedName(shape.table.schema, shape.table.name)}`;
const where = (cond: string) => (cond ? ` WHERE ${cond}` : '');
const rowText = (shape: RowShape) => `ROW(${columnNames(shape).map(quoteIdent).join(', ')})::text`;
const rowHash = (shape: RowShape) => rowHashSql(shape.hashed, shape.convert);
/** The key's hash: seeded apart from the row hash. */
const keyHash = (shape: RowShape) =>
  rowHashSql(
    keyColumns(shape).map(
      (k) =>
        shape.hashed.find((c) => c.name === k.name) ?? {
          name: k.name,
          type: undefined,
          hash: 'text',
          notNull: false,
        },
    ),
    shape.convert,
    shape.hashed.length,
  );

function keyColumns(shape: RowShape): { name: string; type: string }[] {
  if (!shape.key) throw new Error(`table ${shape.table.schema}.${shape.table.name} has no primary key`);
  return shape.key;
}
const keyArray = (shape: RowShape) =>
  `ARRAY[${keyColumns(shape)
    .map((k) => `${quoteIdent(k.name)}::text`)
    .join(', ')}]::text[]`;

const SUMS = (h: string) => `pg_catalog.count(*) AS n, COALESCE(pg_catalog.sum(${h}), 0)::text AS s`;
/** A bucket as hex digits (computed once per group, not per row). */
const hexBucket = (bucket: string, digits: number) =>
  `pg_catalog.lpad(pg_catalog.to_hex(${bucket}), ${digits}, '0')`;

/** Count and hash sum of the rows matching `cond` ('' for all). */
export function checksumSql(shape: RowShape, cond: string): string {
  return `SELECT ${SUMS(rowHash(shape))}
${from(shape)}${where(cond)}`;
}

/**
 * Count and hash sum of several whole tables in one statement, `i` numbering them in the
 * given order (`countOnly`: the count alone, `s` 0). See table-batches.ts.
 */
export function batchChecksumSql(tables: { shape: RowShape; countOnly: boolean }[]): string {
  return tables
    .map(
      ({ shape, countOnly }, i) =>
        `SELECT ${i} AS i, ${countOnly ? `pg_catalog.count(*) AS n, '0' AS s` : SUMS(rowHash(shape))} ${from(shape)}`,
    )
    .join('\nUNION ALL ');
}

/** The exact number of rows (verify's counts-only mode). */
export function countSql(shape: RowShape): string {
  return `SELECT pg_catalog.count(*)::text AS n ${from(shape)}`;
}

/** Smallest and largest value of the split column. */
export function keyBoundsSql(shape: RowShape, column: string): string {
  const c = quoteIdent(column);
  return `SELECT pg_catalog.min(${c})::text AS lo, pg_catalog.max(${c})::text AS hi ${from(shape)}`;
}

/** Rows of a small range: the key and the row hash (tables with a primary key). */
export function keyedRowsSql(shape: RowShape, cond: string): string {
  return `SELECT ${keyArray(shape)} AS k, ${rowHash(shape)}::text AS h ${from(shape)}${where(cond)}`;
}

/** Rows of a small range by content, with how often each occurs (tables without a key). */
export function contentRowsSql(shape: RowShape, cond: string): string {
  return `SELECT r, pg_catalog.count(*) AS n
FROM (SELECT ${rowText(shape)} COLLATE pg_catalog."C" AS r ${from(shape)}${where(cond)}) q
GROUP BY r`;
}

/**
 * Hash buckets (tables without an integer split column): rows grouped by the top `digits`
 * hex digits of their key hash — or of their row hash when there is no key — with a
 * checksum per bucket, in one pass. `$1` (int8[]) restricts to buckets of `within` digits.
 */
export function bucketSql(shape: RowShape, digits: number, within: number | undefined): string {
  return `SELECT ${hexBucket('bucket', digits)} AS b, ${SUMS('hrow')}
FROM (SELECT ${bucketOf('hid', digits)} AS bucket, hrow
      FROM (${hashedRows(shape)}) q0${within ? `\n      WHERE ${bucketOf('hid', within)} = ANY($1::pg_catalog.int8[])` : ''}) q
GROUP BY bucket`;
}

/** The bucket (`digits` hex digits) of each row matching `cond`: where verify looks for it. */
export function rowBucketSql(shape: RowShape, digits: number, cond: string): string {
  const hid = shape.key ? keyHash(shape) : rowHash(shape);
  return `SELECT ${hexBucket(bucketOf(hid, digits), digits)} AS b ${from(shape)}${where(cond)}`;
}

function hashedRows(shape: RowShape): string {
  if (shape.key) {
    return `SELECT ${keyHash(shape)} AS hid, ${rowHash(shape)} AS hrow ${from(shape)} OFFSET 0`;
  }
  return `SELECT h AS hid, h AS hrow FROM (SELECT ${rowHash(shape)} AS h ${from(shape)} OFFSET 0) q1`;
}

/**
 * Rows of the buckets `$1` (int8[] of `digits` hex digits), keyed (tables with a key), each
 * with `b`, its bucket at the first level (`top` digits).
 */
export function keyedBucketRowsSql(shape: RowShape, digits: number, top: number): string {
  return `SELECT k, h::text AS h, ${hexBucket(bucketOf('hid', top), top)} AS b
FROM (SELECT ${keyArray(shape)} AS k, ${keyHash(shape)} AS hid, ${rowHash(shape)} AS h ${from(shape)} OFFSET 0) q
WHERE ${bucketOf('hid', digits)} = ANY($1::pg_catalog.int8[])`;
}

/** Rows of the buckets `$1` by content, with how often each occurs (tables without a key). */
export function contentBucketRowsSql(shape: RowShape, digits: number, top: number): string {
  return `SELECT r, pg_catalog.count(*) AS n, pg_catalog.min(${hexBucket(bucketOf('h', top), top)}) AS b
FROM (SELECT ${rowText(shape)} COLLATE pg_catalog."C" AS r, ${rowHash(shape)} AS h ${from(shape)} OFFSET 0) q
WHERE ${bucketOf('h', digits)} = ANY($1::pg_catalog.int8[])
GROUP BY r`;
}

/** Every compared column as text, for the rows with these keys (one text[] per key). */
export function rowsByKeySql(shape: RowShape, keys: string[][]): string {
  const cols = keyColumns(shape);
  const match = keys
    .map(
      (values) =>
        '(' +
        cols
          .map((c, i) => `${quoteIdent(c.name)} = ${quoteLiteral(values[i] ?? '')}::${c.type}`)
          .join(' AND ') +
        ')',
    )
    .join('\n   OR ');
  const names = columnNames(shape);
  const values = names.length
    ? `ARRAY[${names.map((c) => `${quoteIdent(c)}::text`).join(', ')}]::text[]`
    : `ARRAY[]::text[]`;
  return `SELECT ${keyArray(shape)} AS k, ${values} AS v ${from(shape)}
WHERE ${match || 'false'}`;
}
