/**
 * Cutting one big table into chunks that several workers copy at once, without reading the
 * table to plan it (a peer tool's planning query ran for hours on a multi-terabyte table).
 *
 * - With an integer split column (leading column of a valid btree index): key ranges whose
 *   boundaries are equi-depth (see key-boundaries.ts: fresh statistics, else a bounded page
 *   sample), so chunks hold similar numbers of rows even when keys are skewed or sparse.
 *   min/max come from two index probes.
 * - Without one (or when the key cannot be cut): ranges of heap blocks (ctid), of equal
 *   numbers of blocks. PostgreSQL 14+ reads each with a TID Range Scan; 13 and older filter a
 *   sequential scan per chunk (correct, but each chunk reads the whole table): `note` says so.
 *
 * Coverage: ranges are half-open [low, high). The first key range has no low bound and takes
 * the NULL keys; the last has no high bound; the last block range is open-ended (rows in
 * blocks added after planning are not lost). So every row is in exactly one chunk.
 * Checked on 13, 15, 17.
 */
import type pg from 'pg';
import type { TableInfo } from '../inventory/inventory.js';
import { displayName } from '../util/sql.js';
import type { Chunk } from './chunk.js';
import { defaultSamplePages, keyBoundaries, keyExtent, type KeyBoundaries } from './key-boundaries.js';

export { scheduleJobs } from './schedule-jobs.js';

/** More chunks than this are not useful (and their plan would not be cheap). */
export const MAX_CHUNKS = 10_000;

export interface SplitPlan {
  chunks: Chunk[];
  method: 'whole' | 'key-range' | 'block-range';
  /** Something the user should be told (a slow method on this server version). */
  note?: string;
  /** Where key boundaries came from (key-range only). */
  boundarySource?: 'statistics' | 'sample';
}

export interface SplitOptions {
  /** Wanted size of a chunk, in bytes of the table (heap + TOAST, as TableInfo.bytes). */
  chunkBytes: number;
  /** The source's major version (TID range scans exist from 14). */
  serverMajor: number;
  /** Pages the key sample reads (default: defaultSamplePages(chunks)). */
  samplePages?: number;
}

/**
 * The chunks of `table`: [{kind: 'whole'}] when it is not above `chunkBytes` (the caller
 * decides which tables to split at all), else about ceil(bytes / chunkBytes) chunks.
 *
 * @example
 *   const plan = await planTableChunks(source, table, { chunkBytes: 256 * 1024 ** 2, serverMajor: 17 });
 *   // plan.chunks: [{kind:'key-range', column:'id', high:'81234', includeNulls:true}, …]
 *   for (const c of plan.chunks) sql = `COPY (${chunkSelect(table, cols, c)}) TO STDOUT`;
 */
export async function planTableChunks(
  client: pg.Client,
  table: TableInfo,
  options: SplitOptions,
): Promise<SplitPlan> {
  if (table.bytes <= options.chunkBytes) return { chunks: [{ kind: 'whole' }], method: 'whole' };
  const wanted = Math.min(MAX_CHUNKS, Math.ceil(table.bytes / options.chunkBytes));
  const blocks = await blockCount(client, table);
  if (table.splitColumn) {
    const extent = await keyExtent(client, table, table.splitColumn.name);
    if (extent) {
      const cut = await keyRangeChunks(client, table, table.splitColumn, wanted, extent, {
        blocks,
        samplePages: options.samplePages,
      });
      if (cut) return { chunks: cut.chunks, method: 'key-range', boundarySource: cut.source };
    }
  }
  const chunks = blockRanges(blocks, wanted);
  if (chunks.length < 2) return { chunks: [{ kind: 'whole' }], method: 'whole' };
  return {
    chunks,
    method: 'block-range',
    ...(options.serverMajor < 14
      ? {
          note:
            `PostgreSQL ${options.serverMajor} has no TID range scans: each of the ${chunks.length} chunks of ` +
            `${displayName(table.schema, table.name)} scans the whole table (an index on an integer key lets ` +
            `pgconvoy split it by key instead)`,
        }
      : {}),
  };
}

export type KeyRangeChunk = Extract<Chunk, { kind: 'key-range' }>;

/**
 * About `chunks` equi-depth key ranges of `table` over `extent` (the key's smallest and
 * largest value), or undefined when neither statistics nor a sample gave a boundary. Used by
 * planTableChunks and by verify, which cuts its chunks where the copy cuts them.
 */
export async function keyRangeChunks(
  client: pg.Client,
  table: TableInfo,
  key: { name: string; type: string },
  chunks: number,
  extent: { min: string; max: string },
  options: { blocks?: number; samplePages?: number | undefined } = {},
): Promise<{ chunks: KeyRangeChunk[]; source: KeyBoundaries['source'] } | undefined> {
  const blocks = options.blocks ?? (await blockCount(client, table));
  const samplePages = options.samplePages ?? defaultSamplePages(chunks);
  const found = await keyBoundaries(client, table, key.name, chunks, extent, blocks, samplePages);
  if (found.bounds.length === 0) return undefined;
  return { chunks: keyRanges(key.name, key.type, found.bounds), source: found.source };
}

/** Key ranges from sorted inner boundaries: (-inf, b1) + NULLs, [b1, b2), …, [bn, +inf). */
export function keyRanges(column: string, columnType: string, bounds: string[]): KeyRangeChunk[] {
  const chunks: KeyRangeChunk[] = [];
  let low: string | undefined;
  for (const high of [...bounds, undefined]) {
    chunks.push({
      kind: 'key-range',
      column,
      columnType,
      ...(low !== undefined ? { low } : {}),
      ...(high !== undefined ? { high } : {}),
      includeNulls: low === undefined,
    });
    low = high;
  }
  return chunks;
}

/** `wanted` ranges of equal numbers of blocks (±1), the last one open-ended. */
export function blockRanges(blocks: number, wanted: number): Chunk[] {
  const n = Math.max(1, Math.min(wanted, blocks));
  const chunks: Chunk[] = [];
  for (let i = 0; i < n; i++) {
    const fromBlock = Math.floor((i * blocks) / n);
    const toBlock = Math.floor(((i + 1) * blocks) / n);
    chunks.push(
      i === n - 1 ? { kind: 'block-range', fromBlock } : { kind: 'block-range', fromBlock, toBlock },
    );
  }
  return chunks;
}

/** Heap blocks now on disk (pg_class.relpages may be stale or 0 before the first VACUUM/ANALYZE). */
async function blockCount(client: pg.Client, table: TableInfo): Promise<number> {
  const res = await client.query<{ blocks: string }>(
    `SELECT (pg_catalog.pg_relation_size($1::pg_catalog.oid, 'main')
             / pg_catalog.current_setting('block_size')::int8)::text AS blocks`,
    [table.oid],
  );
  return Number(res.rows[0]?.blocks ?? 0);
}
