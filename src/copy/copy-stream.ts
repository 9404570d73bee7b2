/**
 * One job's data path: `COPY (SELECT …) TO STDOUT` on the source piped straight into
 * `COPY … FROM STDIN` on the target. Bytes flow through `pipeline()`; nothing is parsed or
 * buffered beyond the streams' own high-water marks, so memory stays flat whatever the size.
 * An error on either side destroys the pipeline: the target gets CopyFail and its COPY (and
 * transaction) rolls back.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { chunkCondition, chunkTable, type Chunk, type TableRef } from '../plan/chunk.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import type { Side } from '../connect/resolve.js';
import { accessDeniedError } from './read-denied.js';
import { noPartitionError } from './partitioned-target.js';

export interface CopyStreamOptions {
  table: TableRef;
  columns: string[];
  chunk: Chunk;
  format: 'binary' | 'text';
  /** COPY … FREEZE: only when the table was truncated in this same transaction. */
  freeze: boolean;
  /** Called with byte counts as data flows (for progress). */
  onBytes?: (n: number) => void;
  /** Which server each end is, for errors (default: read the source, load the target). */
  sides?: { read: Side; load: Side };
}

export interface CopyStreamResult {
  rows: number;
  bytes: number;
}

/** The two COPY statements of a job (also shown by --dry-run). */
export function copyStatements(o: Omit<CopyStreamOptions, 'onBytes' | 'sides'>): { out: string; in: string } {
  const table = qualifiedName(o.table.schema, o.table.name);
  const from = chunkTable(o.table, o.chunk);
  const read = qualifiedName(from.schema, from.name);
  const cols = o.columns.map(quoteIdent).join(', ');
  const cond = chunkCondition(o.chunk);
  const fmt = o.format === 'binary' ? 'FORMAT binary' : 'FORMAT text';
  // COPY table TO reads only that table, never its children: the same as SELECT … FROM ONLY.
  const out = cond
    ? `COPY (SELECT ${cols} FROM ONLY ${read} WHERE ${cond}) TO STDOUT (${fmt})`
    : `COPY ${read} (${cols}) TO STDOUT (${fmt})`;
  const into = `COPY ${table} (${cols}) FROM STDIN (${fmt}${o.freeze ? ', FREEZE' : ''})`;
  return { out, in: into };
}

class ByteCounter extends Transform {
  bytes = 0;
  constructor(private readonly onBytes: ((n: number) => void) | undefined) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    done(null, chunk);
  }
}

export async function copyStream(
  source: pg.Client,
  target: pg.Client,
  o: CopyStreamOptions,
): Promise<CopyStreamResult> {
  const sql = copyStatements(o);
  const reader = source.query(copyTo(sql.out));
  const writer = target.query(copyFrom(sql.in));
  const counter = new ByteCounter(o.onBytes);
  // The first error decides which end failed; the other end's error is only the teardown.
  let readError: unknown;
  reader.once('error', (err: unknown) => (readError = err));
  try {
    await pipeline(reader, counter, writer);
  } catch (err) {
    const sides = o.sides ?? { read: 'source', load: 'target' };
    const name = displayName(o.table.schema, o.table.name);
    // A target error may also reach the reader (the pipeline destroys it with that error):
    // only the target ever says that no partition takes a row.
    throw (
      (err === readError
        ? accessDeniedError(err, sides.read, name)
        : accessDeniedError(err, sides.load, name, true)) ??
      noPartitionError(err, name) ??
      err
    );
  }
  return { rows: writer.rowCount ?? 0, bytes: counter.bytes };
}
