/**
 * The SQL that verify runs on both servers. Rows are never shipped to pgferry to be
 * compared: each server hashes its own rows and returns a few numbers per chunk.
 *
 * Row text: `ROW(c1, c2, ...)::text` over the columns both sides have, named explicitly (so
 * column order on disk does not matter). Record output quotes an empty string as `""`,
 * writes NULL as nothing, and quotes any value with white space, commas, quotes or
 * parentheses, so NULL, '' and 'a ' all print differently; with the session settings
 * pinned (session.ts) a value prints the same on every major from 12 on.
 *
 * Chunk checksum: count(*) plus the sums of the two 64-bit halves of md5(row text), as
 * numeric (no overflow). Sums do not depend on row order, so there is no ORDER BY and no
 * sort: one pass over the chunk. Two independent 64-bit sums make an accidental match of
 * different contents vanishingly unlikely. `OFFSET 0` keeps each hash a column of its
 * subquery: pulled up, it would be computed once per reference (twice the work).
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import { qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';
import type { TableRef } from '../plan/chunk.js';

export interface RowShape {
  table: TableRef;
  /** Columns compared (present on both sides), in source order. */
  columns: string[];
  /** The primary key, with the source's column types; undefined when there is none. */
  key: { name: string; type: string }[] | undefined;
  /** The sides' encodings differ: hash the UTF-8 bytes, not the server's own. */
  convert: boolean;
}

export interface Checksum {
  n: string;
  s1: string;
  s2: string;
}

const from = (shape: RowShape) => `FROM ONLY ${qualifiedName(shape.table.schema, shape.table.name)}`;
const where = (cond: string) => (cond ? ` WHERE ${cond}` : '');
const rowText = (shape: RowShape) => `ROW(${shape.columns.map(quoteIdent).join(', ')})::text`;
const hash = (shape: RowShape, text: string) =>
  shape.convert ? `pg_catalog.md5(pg_catalog.convert_to(${text}, 'UTF8'))` : `pg_catalog.md5(${text})`;

function keyColumns(shape: RowShape): { name: string; type: string }[] {
  if (!shape.key) throw new Error(`table ${shape.table.schema}.${shape.table.name} has no primary key`);
  return shape.key;
}
const keyText = (shape: RowShape) =>
  `ROW(${keyColumns(shape)
    .map((k) => quoteIdent(k.name))
    .join(', ')})::text`;
const keyArray = (shape: RowShape) =>
  `ARRAY[${keyColumns(shape)
    .map((k) => `${quoteIdent(k.name)}::text`)
    .join(', ')}]::text[]`;

const SUMS = (h: string) => `pg_catalog.count(*) AS n,
       COALESCE(pg_catalog.sum(('x' || pg_catalog.substr(${h}, 1, 16))::bit(64)::int8), 0)::text AS s1,
       COALESCE(pg_catalog.sum(('x' || pg_catalog.substr(${h}, 17, 16))::bit(64)::int8), 0)::text AS s2`;

/** Count and hash sums of the rows matching `cond` ('' for all). */
export function checksumSql(shape: RowShape, cond: string): string {
  return `SELECT ${SUMS('h')}
FROM (SELECT ${hash(shape, rowText(shape))} AS h ${from(shape)}${where(cond)} OFFSET 0) q`;
}

/** Smallest and largest value of the split column. */
export function keyBoundsSql(shape: RowShape, column: string): string {
  const c = quoteIdent(column);
  return `SELECT pg_catalog.min(${c})::text AS lo, pg_catalog.max(${c})::text AS hi ${from(shape)}`;
}

/** Rows of a small range: the key and the row hash (tables with a primary key). */
export function keyedRowsSql(shape: RowShape, cond: string): string {
  return `SELECT ${keyArray(shape)} AS k, ${hash(shape, rowText(shape))} AS h ${from(shape)}${where(cond)}`;
}

/** Rows of a small range by content, with how often each occurs (tables without a key). */
export function contentRowsSql(shape: RowShape, cond: string): string {
  return `SELECT r, pg_catalog.count(*) AS n
FROM (SELECT ${rowText(shape)} COLLATE pg_catalog."C" AS r ${from(shape)}${where(cond)}) q
GROUP BY r`;
}

/**
 * Hash buckets (tables without an integer split column): rows grouped by the first
 * `prefix` hex digits of md5(key text) — or of the row text when there is no key — with a
 * checksum per bucket, in one pass. `$1` (text[]) restricts to buckets of `within` digits.
 */
export function bucketSql(shape: RowShape, prefix: number, within: number | undefined): string {
  return `SELECT pg_catalog.substr(hid, 1, ${prefix}) AS b, ${SUMS('hrow')}
FROM (${hashedRows(shape)}) q${within ? `\nWHERE pg_catalog.substr(hid, 1, ${within}) = ANY($1::text[])` : ''}
GROUP BY 1`;
}

function hashedRows(shape: RowShape): string {
  if (shape.key) {
    return `SELECT ${hash(shape, keyText(shape))} AS hid, ${hash(shape, rowText(shape))} AS hrow ${from(shape)} OFFSET 0`;
  }
  return `SELECT h AS hid, h AS hrow FROM (SELECT ${hash(shape, rowText(shape))} AS h ${from(shape)} OFFSET 0) q0`;
}

/**
 * Rows of the buckets `$1` (text[] of `prefix` hex digits), keyed (tables with a key), each
 * with `b`, its bucket at the first level (`top` digits).
 */
export function keyedBucketRowsSql(shape: RowShape, prefix: number, top: number): string {
  return `SELECT k, h, pg_catalog.substr(hid, 1, ${top}) AS b
FROM (SELECT ${keyArray(shape)} AS k, ${hash(shape, keyText(shape))} AS hid, ${hash(shape, rowText(shape))} AS h ${from(shape)} OFFSET 0) q
WHERE pg_catalog.substr(hid, 1, ${prefix}) = ANY($1::text[])`;
}

/** Rows of the buckets `$1` by content, with how often each occurs (tables without a key). */
export function contentBucketRowsSql(shape: RowShape, prefix: number, top: number): string {
  return `SELECT r, pg_catalog.count(*) AS n, pg_catalog.min(pg_catalog.substr(h, 1, ${top})) AS b
FROM (SELECT r, ${hash(shape, 'r')} AS h
      FROM (SELECT ${rowText(shape)} COLLATE pg_catalog."C" AS r ${from(shape)} OFFSET 0) q0 OFFSET 0) q
WHERE pg_catalog.substr(h, 1, ${prefix}) = ANY($1::text[])
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
  const values = shape.columns.length
    ? `ARRAY[${shape.columns.map((c) => `${quoteIdent(c)}::text`).join(', ')}]::text[]`
    : `ARRAY[]::text[]`;
  return `SELECT ${keyArray(shape)} AS k, ${values} AS v ${from(shape)}
WHERE ${match || 'false'}`;
}
