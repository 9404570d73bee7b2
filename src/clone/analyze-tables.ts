/**
 * ANALYZE on the target, several tables at once (one session each), so the planner has
 * statistics before the application arrives. Used at the end of clone and of cutover.
 * Tables in `vacuum` are VACUUMed first: chunked loads cannot use COPY FREEZE, and until a
 * vacuum sets the visibility map, index-only scans read the heap. The VACUUMs run before any
 * ANALYZE, because a running ANALYZE's snapshot keeps a concurrent VACUUM from marking the
 * freshly loaded pages all-visible (VACUUMs ignore each other).
 *
 * Small tables (known `bytes` up to SMALL_ANALYZE_BYTES) are analyzed many to a statement:
 * `ANALYZE a, b, c` takes one round trip for all and still one transaction per table.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { TableRef } from '../plan/chunk.js';
import { runLimited } from '../util/pool.js';
import { qualifiedName } from '../util/sql.js';

/** Tables up to this size are analyzed together, ANALYZE_BATCH to a statement. */
const SMALL_ANALYZE_BYTES = 8 * 1024 ** 2;
const ANALYZE_BATCH = 100;

export async function analyzeTables(
  target: ConnectionSpec,
  tables: readonly (TableRef & { bytes?: number })[],
  jobs: number,
  vacuum: ReadonlySet<string> = new Set(),
): Promise<void> {
  const sessions: pg.Client[] = [];
  try {
    for (let i = 0; i < Math.max(1, Math.min(jobs, tables.length)); i++) {
      sessions.push(await openClient(target, { applicationName: `pgconvoy analyze ${i + 1}` }));
    }
    const free = [...sessions];
    const run = (command: string, list: readonly string[]) =>
      runLimited(list, sessions.length, async (name) => {
        const client = free.pop();
        if (!client) throw new Error('no free ANALYZE session');
        try {
          await client.query(`${command} ${name}`);
        } finally {
          free.push(client);
        }
      });
    const names = tables.map((t) => qualifiedName(t.schema, t.name));
    await run(
      'VACUUM',
      names.filter((n) => vacuum.has(n)),
    );
    const small = (t: TableRef & { bytes?: number }) =>
      t.bytes !== undefined && t.bytes <= SMALL_ANALYZE_BYTES;
    const groups: string[] = tables.filter((t) => !small(t)).map((t) => qualifiedName(t.schema, t.name));
    const smallNames = tables.filter(small).map((t) => qualifiedName(t.schema, t.name));
    for (let i = 0; i < smallNames.length; i += ANALYZE_BATCH)
      groups.push(smallNames.slice(i, i + ANALYZE_BATCH).join(', '));
    await run('ANALYZE', groups);
  } finally {
    await Promise.all(sessions.map((s) => s.end().catch(() => undefined)));
  }
}
