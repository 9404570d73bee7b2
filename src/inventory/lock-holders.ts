/**
 * Who holds the lock pgconvoy waited for in vain: the sessions of the source database that
 * hold a lock on the named tables in a mode that conflicts with the one pgconvoy asked for,
 * described as a DBA would look them up (pid, user, application, state, how long their
 * transaction is open, their last statement). Read right after a lock_timeout, so the
 * holder is usually still there. Checked on 13, 15, 17.
 */
import type pg from 'pg';

/** The lock modes that conflict with `mode` (the table in PostgreSQL's "Explicit Locking" chapter). */
const CONFLICTS: Record<'AccessShareLock' | 'ShareUpdateExclusiveLock', string[]> = {
  AccessShareLock: ['AccessExclusiveLock'],
  ShareUpdateExclusiveLock: [
    'ShareUpdateExclusiveLock',
    'ShareLock',
    'ShareRowExclusiveLock',
    'ExclusiveLock',
    'AccessExclusiveLock',
  ],
};

const HOLDERS_SQL = `
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS relation, l.pid, l.mode,
       a.usename AS "user", a.application_name AS application, a.state,
       pg_catalog.floor(extract(epoch FROM pg_catalog.now() - a.xact_start))::int AS seconds,
       pg_catalog.left(pg_catalog.regexp_replace(a.query, '\\s+', ' ', 'g'), 100) AS query
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_class c ON c.oid = l.relation
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
  AND l.mode = ANY ($1::text[])
  AND ($2::text[] IS NULL OR l.relation IN (SELECT pg_catalog.to_regclass(x) FROM pg_catalog.unnest($2::text[]) x))
ORDER BY a.xact_start NULLS LAST, l.pid`;

/**
 * One line per session holding a conflicting lock on one of `tables` (qualified names, quoted
 * as needed; null: any table of the database), e.g.
 * `pid 4711 holds AccessExclusiveLock on public.orders (user app, application "psql", idle in transaction, transaction open 42 s: LOCK TABLE …)`.
 */
export async function lockHolders(
  client: pg.Client,
  tables: string[] | null,
  wanted: keyof typeof CONFLICTS,
): Promise<string[]> {
  const res = await client.query<{
    relation: string;
    pid: number;
    mode: string;
    user: string | null;
    application: string | null;
    state: string | null;
    seconds: number | null;
    query: string | null;
  }>(HOLDERS_SQL, [CONFLICTS[wanted], tables]);
  return res.rows.map((r) => {
    const about = [
      r.user ? `user ${r.user}` : undefined,
      r.application ? `application "${r.application}"` : undefined,
      r.state ?? undefined,
      r.seconds !== null ? `transaction open ${r.seconds} s` : undefined,
    ].filter(Boolean);
    // The holder's statement helps find it; one that names a password is not repeated.
    const query = r.query && !/password/i.test(r.query) ? `: ${r.query}` : '';
    return `pid ${r.pid} holds ${r.mode} on ${r.relation}${about.length ? ` (${about.join(', ')}${query})` : ''}`;
  });
}

/** The end of a LOCK_TIMEOUT hint: who to wait for or end, and how to wait longer. */
export function lockHoldersHint(holders: string[]): string {
  const who = holders.length
    ? `${holders.join('; ')}. Let it finish or end it (SELECT pg_terminate_backend(pid))`
    : 'the holder has gone since; see pg_locks and pg_stat_activity on the source if it comes back';
  return `${who}, or give --lock-wait-timeout more time, then run the same command again`;
}
