/**
 * The order in which copy jobs are handed to workers.
 *
 * The rule, and why:
 *  1. Tables copied whole: largest first. The longest single jobs must start first, or one
 *     worker is still copying a big table long after the others are idle (LPT scheduling).
 *  2. Tables cut into chunks: round-robin, biggest table first — chunk 1 of every split table,
 *     then chunk 2 of each, … (each table's chunks keep their given order). Every big table
 *     starts in the first round instead of waiting for the bigger ones to be used up; smaller
 *     split tables finish early, so their indexes are built while the biggest still copies;
 *     the biggest table's chunks, all about one chunk in size, keep every worker busy to the end.
 *  3. The two lists are merged by job size (the larger head goes first): a whole table bigger
 *     than a chunk starts before the chunks, and the small tables come last, where they fill
 *     the gaps so all workers finish at about the same time.
 * A table with a single job counts as copied whole. Ties keep tables apart by tableKey, so the
 * order is deterministic.
 */

export interface SchedulableJob {
  /** Identifies the table (e.g. `schema.name`); jobs of one table share it. */
  tableKey: string;
  estimatedBytes: number;
}

export function scheduleJobs<T extends SchedulableJob>(jobs: T[]): T[] {
  const byTable = new Map<string, T[]>();
  for (const job of jobs) {
    const list = byTable.get(job.tableKey);
    if (list) list.push(job);
    else byTable.set(job.tableKey, [job]);
  }
  const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const total = (list: T[]) => list.reduce((sum, j) => sum + j.estimatedBytes, 0);

  const whole = [...byTable.values()]
    .filter((list) => list.length === 1)
    .map((list) => list[0] as T)
    .sort((a, b) => b.estimatedBytes - a.estimatedBytes || byKey(a.tableKey, b.tableKey));

  const split = [...byTable.entries()]
    .filter(([, list]) => list.length > 1)
    .sort(([ka, a], [kb, b]) => total(b) - total(a) || byKey(ka, kb))
    .map(([, list]) => list);
  const rounds = Math.max(0, ...split.map((list) => list.length));
  const chunks: T[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const list of split) {
      const job = list[round];
      if (job !== undefined) chunks.push(job);
    }
  }

  const out: T[] = [];
  let w = 0;
  let c = 0;
  while (w < whole.length || c < chunks.length) {
    const nextWhole = whole[w];
    const nextChunk = chunks[c];
    if (
      nextWhole !== undefined &&
      (nextChunk === undefined || nextWhole.estimatedBytes >= nextChunk.estimatedBytes)
    ) {
      out.push(nextWhole);
      w++;
    } else if (nextChunk !== undefined) {
      out.push(nextChunk);
      c++;
    }
  }
  return out;
}
