/**
 * The apply worker's last error, from the subscribing server's own log. PostgreSQL keeps
 * only error counts in SQL (pg_stat_subscription_stats, 15+); the message itself ("logical
 * replication target relation … is missing replicated column …") is written to the log.
 * When the server writes its log to files (logging_collector) and pgconvoy's role may read
 * them (superuser or pg_read_server_files), the tail of the current file is searched for
 * the last ERROR whose CONTEXT names this subscription's replication origin.
 *
 * Best effort and read-only: undefined whenever the log cannot be read. Checked with
 * PostgreSQL 17 as the subscriber.
 */
import type pg from 'pg';

/** How much of the log's end is read. */
const TAIL_BYTES = 256 * 1024;

const TAIL_SQL = `
SELECT 'pg_' || s.oid::text AS origin,
       pg_catalog.pg_read_file(f.name, greatest((pg_catalog.pg_stat_file(f.name)).size - $2, 0), $2) AS text
FROM (SELECT pg_catalog.pg_current_logfile() AS name) f
JOIN pg_catalog.pg_subscription s ON s.subname = $1
  AND s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
WHERE f.name IS NOT NULL`;

export interface ApplyError {
  message: string;
  /** The log line's beginning (its timestamp, as log_line_prefix writes it). */
  logged: string;
}

/** The last error logged by the apply worker of subscription `name`, when the log can be read. */
export async function readApplyError(client: pg.Client, name: string): Promise<ApplyError | undefined> {
  let row: { origin: string; text: string | null } | undefined;
  try {
    row = (await client.query<{ origin: string; text: string | null }>(TAIL_SQL, [name, TAIL_BYTES])).rows[0];
  } catch {
    return undefined; // no right to read server files, or no such file: the count has to do
  }
  if (!row?.text) return undefined;
  const lines = row.text.split('\n');
  const origin = `replication origin "${row.origin}"`;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!(lines[i] ?? '').includes(origin)) continue;
    for (let j = i - 1; j >= Math.max(0, i - 4); j--) {
      const m = /^(.*?)\s*ERROR:\s+(.*)$/.exec(lines[j] ?? '');
      if (m) return { message: m[2] ?? '', logged: (m[1] ?? '').trim() };
    }
  }
  return undefined;
}
