/**
 * A chunk is the part of one table that one job copies (and that verify checksums): the
 * whole table, a range of an integer key, a range of heap blocks, or rows with one value.
 *
 * Range bounds are half-open, [low, high): adjacent chunks share a bound value and never a
 * row. `low`/`high` undefined means unbounded on that side. Rows whose key is NULL belong to
 * the chunk with `includeNulls` (the first chunk of a key-range split), so nothing is lost.
 */
import { displayName, qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';

export type Chunk =
  | { kind: 'whole' }
  | {
      kind: 'key-range';
      column: string;
      columnType: string;
      low?: string;
      high?: string;
      /** `high` is included (Flexy's inclusive ranges on non-integer columns); default excluded. */
      highInclusive?: boolean;
      includeNulls: boolean;
    }
  | { kind: 'block-range'; fromBlock: number; toBlock?: number }
  | { kind: 'value'; column: string; columnType: string; value: string | null }
  /**
   * The rows of one partition of a partitioned source table whose target is a plain table
   * (copy/partitioned-source.ts): read from the partition, loaded into the parent's name.
   */
  | { kind: 'partition'; schema: string; name: string };

export interface TableRef {
  schema: string;
  name: string;
}

/** A table's key in a Map or Set: no separator can be confused with a name's characters. */
export const tableKey = (t: TableRef): string => JSON.stringify([t.schema, t.name]);

/**
 * The WHERE condition selecting a chunk's rows, as SQL with every value a quoted literal cast
 * to the column's type (COPY cannot take bind parameters). Empty string for the whole table.
 */
export function chunkCondition(chunk: Chunk): string {
  switch (chunk.kind) {
    case 'whole':
      return '';
    case 'key-range': {
      const col = quoteIdent(chunk.column);
      const lit = (v: string) => `${quoteLiteral(v)}::${chunk.columnType}`;
      const parts: string[] = [];
      if (chunk.low !== undefined) parts.push(`${col} >= ${lit(chunk.low)}`);
      if (chunk.high !== undefined)
        parts.push(`${col} ${chunk.highInclusive ? '<=' : '<'} ${lit(chunk.high)}`);
      const range = parts.length ? parts.join(' AND ') : 'true';
      return chunk.includeNulls ? `((${range}) OR ${col} IS NULL)` : `(${range})`;
    }
    case 'block-range': {
      // ctid comparisons use a TID range scan on PostgreSQL 14+; older servers filter a sequential scan.
      const parts = [`ctid >= '(${chunk.fromBlock},0)'::pg_catalog.tid`];
      if (chunk.toBlock !== undefined) parts.push(`ctid < '(${chunk.toBlock},0)'::pg_catalog.tid`);
      return `(${parts.join(' AND ')})`;
    }
    case 'value': {
      const col = quoteIdent(chunk.column);
      return chunk.value === null
        ? `(${col} IS NULL)`
        : `(${col} = ${quoteLiteral(chunk.value)}::${chunk.columnType})`;
    }
    case 'partition':
      // Not a condition on the table: the chunk is a table of its own (chunkTable).
      return '';
  }
}

/** The source table a chunk's rows are read from: the table itself, or one partition of it. */
export function chunkTable(table: TableRef, chunk: Chunk): TableRef {
  return chunk.kind === 'partition' ? { schema: chunk.schema, name: chunk.name } : table;
}

/** `SELECT cols FROM table [WHERE cond]`, for COPY (...) TO STDOUT and for checksums. */
export function chunkSelect(table: TableRef, columns: string[], chunk: Chunk): string {
  const cond = chunkCondition(chunk);
  const cols = columns.map(quoteIdent).join(', ');
  const from = chunkTable(table, chunk);
  return `SELECT ${cols} FROM ONLY ${qualifiedName(from.schema, from.name)}${cond ? ` WHERE ${cond}` : ''}`;
}

/** Short human label: "id [1000, 2000)", "blocks [0, 512)", "whole table". */
export function chunkLabel(chunk: Chunk): string {
  switch (chunk.kind) {
    case 'whole':
      return 'whole table';
    case 'key-range':
      return `${chunk.column} [${chunk.low ?? '-inf'}, ${chunk.high ?? '+inf'}${chunk.highInclusive ? ']' : ')'}${chunk.includeNulls ? ' + NULL' : ''}`;
    case 'block-range':
      return `blocks [${chunk.fromBlock}, ${chunk.toBlock ?? 'end'})`;
    case 'value':
      return `${chunk.column} = ${chunk.value === null ? 'NULL' : quoteLiteral(chunk.value)}`;
    case 'partition':
      return `partition ${displayName(chunk.schema, chunk.name)}`;
  }
}
