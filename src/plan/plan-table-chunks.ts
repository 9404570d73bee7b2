/**
 * Cutting one big table into chunks that several workers copy at once.
 *
 * With an integer split column (leading column of a valid btree index): key ranges whose
 * boundaries are quantiles of a sample of the key, so chunks hold similar numbers of rows
 * even when keys are skewed or sparse ((max-min)/n would not). The sample reads a bounded
 * number of random pages (TABLESAMPLE SYSTEM), never the whole table: planning a
 * multi-terabyte table costs the same few thousand page reads as a small one.
 *
 * Without one: ranges of heap blocks (ctid). PostgreSQL 14+ reads each range with a TID
 * Range Scan; older servers filter a sequential scan per chunk (correct, but every chunk
 * reads the whole table), which the caller is told about.
 *
 * Chunks are half-open and cover everything: the first key range has no low bound and takes
 * the NULL keys, the last has no high bound (rows added after planning are not lost), and
 * the last block range is open-ended. Checked on 13, 15, 17.
 */
import type pg from 'pg';
import type { TableInfo } from '../inventory/inventory.js';
import { qualifiedName, quoteIdent } from '../util/sql.js';
import type { Chunk } from './chunk.js';

/**
 * Pages read by the sample. Rows of one page usually hold neighbouring keys, so precision
 * comes from the number of pages per chunk: at least 64 (about ±12 % per boundary), never
 * fewer than 2000 in all, and at most 100 000 (800 MB of random reads for a table of
 * thousands of chunks).
 */
const samplePagesFor = (chunks: number): number => Math.min(100_000, Math.max(2000, 64 * chunks));
const MAX_CHUNKS = 10_000;

export interface ChunkPlan {
  chunks: Chunk[];
  method: 'whole' | 'key-range' | 'block-range';
  note?: string;
}

export interface ChunkPlanOptions {
  /** Tables at most this big are copied whole. */
  splitLargerThan: number;
  chunkBytes: number;
  serverMajor: number;
  /** Pages the key sample reads (default: see samplePagesFor). */
  samplePages?: number;
}

export async function planTableChunks(
  client: pg.Client,
  table: TableInfo,
  o: ChunkPlanOptions,
): Promise<ChunkPlan> {
  if (table.bytes <= o.splitLargerThan || table.bytes <= o.chunkBytes)
    return { chunks: [{ kind: 'whole' }], method: 'whole' };
  const wanted = Math.min(MAX_CHUNKS, Math.ceil(table.bytes / o.chunkBytes));
  if (table.splitColumn) {
    const bounds = await sampleQuantiles(
      client,
      table,
      table.splitColumn.name,
      wanted,
      o.samplePages ?? samplePagesFor(wanted),
    );
    if (bounds.length > 0) {
      const column = table.splitColumn.name;
      const columnType = table.splitColumn.type;
      const chunks: Chunk[] = [];
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
      return { chunks, method: 'key-range' };
    }
  }
  const blocks = await blockCount(client, table);
  const per = Math.max(1, Math.ceil(blocks / wanted));
  const chunks: Chunk[] = [];
  for (let from = 0; from < blocks || chunks.length === 0; from += per) {
    const to = from + per;
    chunks.push(
      to >= blocks
        ? { kind: 'block-range', fromBlock: from }
        : { kind: 'block-range', fromBlock: from, toBlock: to },
    );
    if (to >= blocks) break;
  }
  return {
    chunks,
    method: 'block-range',
    ...(o.serverMajor < 14
      ? {
          note: `PostgreSQL ${o.serverMajor} has no TID range scans: each of the ${chunks.length} chunks of ${table.schema}.${table.name} scans the whole table (add an index on an integer key to split it by key instead)`,
        }
      : {}),
  };
}

/**
 * The wanted-1 inner boundaries (as text, exact for int8) of the key distribution, from a
 * sample of random pages. Duplicate boundaries (heavily repeated keys) are merged.
 */
async function sampleQuantiles(
  client: pg.Client,
  table: TableInfo,
  column: string,
  wanted: number,
  samplePages: number,
): Promise<string[]> {
  const pages = await client.query<{ relpages: number }>(
    'SELECT relpages FROM pg_catalog.pg_class WHERE oid = $1',
    [table.oid],
  );
  const relpages = Math.max(1, pages.rows[0]?.relpages ?? 1);
  const percent = Math.min(100, (100 * samplePages) / relpages);
  const col = quoteIdent(column);
  const tbl = qualifiedName(table.schema, table.name);
  const sample =
    percent >= 100 ? `ONLY ${tbl}` : `ONLY ${tbl} TABLESAMPLE SYSTEM (${percent.toFixed(6)}) REPEATABLE (42)`;
  // percentile_disc over the sample: one sort of a few hundred thousand keys at most.
  const fractions = Array.from({ length: wanted - 1 }, (_, i) => (i + 1) / wanted);
  if (fractions.length === 0) return [];
  const res = await client.query<{ q: string[] | null }>(
    `SELECT pg_catalog.percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY ${col})::text[] AS q FROM ${sample} WHERE ${col} IS NOT NULL`,
    [fractions],
  );
  const quantiles = res.rows[0]?.q ?? [];
  const out: string[] = [];
  for (const q of quantiles) if (q !== null && out.at(-1) !== q) out.push(q);
  // The lowest boundary equal to the minimum would make an empty first chunk: harmless, kept simple.
  return out;
}

async function blockCount(client: pg.Client, table: TableInfo): Promise<number> {
  const res = await client.query<{ blocks: string }>(
    `SELECT (pg_catalog.pg_relation_size($1::oid) / pg_catalog.current_setting('block_size')::int8)::text AS blocks`,
    [table.oid],
  );
  return Number(res.rows[0]?.blocks ?? 0);
}

/**
 * Schedule order: largest work first, chunks of different tables interleaved (chunk 1 of
 * every big table, then chunk 2, …) so that every big table starts early and the workers
 * stay busy to the end with the small tables last.
 */
export function scheduleJobs<T extends { tableKey: string; estimatedBytes: number; ordinal: number }>(
  jobs: T[],
): T[] {
  return [...jobs].sort(
    (a, b) =>
      b.estimatedBytes - a.estimatedBytes || a.ordinal - b.ordinal || a.tableKey.localeCompare(b.tableKey),
  );
}
