/** The chunk planners `clone` chooses from, and the name its workers go by. */
import os from 'node:os';
import { planTableChunks } from '../plan/split-table.js';
import type { ChunkPlanner } from './clone-types.js';

export const defaultWorkerPrefix = (): string => `${os.hostname()}-${process.pid}`;

/** Whole tables only; the chunk planner of `plan/` replaces this for big tables. */
export const wholeTables: ChunkPlanner = () =>
  Promise.resolve({ chunks: [{ kind: 'whole' }], method: 'whole' });

/** Tables above `splitLargerThan` cut into chunks of about `chunkBytes` (see plan/split-table.ts). */
export function chunkedTables(splitLargerThan: number, chunkBytes: number): ChunkPlanner {
  return (client, table, serverMajor) =>
    table.bytes <= splitLargerThan
      ? Promise.resolve({ chunks: [{ kind: 'whole' }], method: 'whole' })
      : planTableChunks(client, table, { chunkBytes, serverMajor });
}
