/**
 * The other sessions of the source database during a write freeze, and its count of rows
 * written: what the freeze ends, waits for, and proves still (see write-freeze.ts).
 */
import type pg from 'pg';
import { serverErrorFields } from '../errors.js';

export interface Session {
  pid: number;
  usename: string | null;
  application_name: string | null;
  backend_type: string | null;
  state: string | null;
  writing: boolean;
  /** Started before the gate closed: may still write without asking to. */
  before_gate: boolean;
}

// Every backend in this database that could write: not walsenders (they stream, the forward
// subscription's among them), not autovacuum, not parallel workers (their leader is ended).
const SESSIONS_SQL = `
SELECT a.pid, a.usename, a.application_name, a.backend_type, a.state,
       a.backend_xid IS NOT NULL AS writing,
       a.backend_start <= $2::timestamptz AS before_gate
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = pg_catalog.current_database()
  AND a.backend_type NOT IN ('walsender', 'autovacuum worker', 'parallel worker')
  AND a.pid <> ALL ($1::int[])
ORDER BY a.pid`;

// Rows written to user tables by committed (and aborted) transactions: pgconvoy's sessions
// on the source only read, and catalog writes (autovacuum's ANALYZE, say) are not counted.
const WRITES_SQL = `
SELECT COALESCE(pg_catalog.sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::text AS writes
FROM pg_catalog.pg_stat_user_tables`;

/** The database's rows written to user tables, as of now (not the transaction's snapshot). */
export async function countWrites(source: pg.Client): Promise<string> {
  await source.query('SELECT pg_catalog.pg_stat_clear_snapshot()');
  const res = await source.query<{ writes: string }>(WRITES_SQL);
  return res.rows[0]?.writes ?? '0';
}

/** The database's sessions other than `ownPids`; `before_gate` compares with `gateAt`. */
export async function sessions(source: pg.Client, ownPids: number[], gateAt: string): Promise<Session[]> {
  return (await source.query<Session>(SESSIONS_SQL, [ownPids, gateAt])).rows;
}

export const describeSession = (s: Session) =>
  `pid ${s.pid} ${s.backend_type ?? ''} role "${s.usename ?? '?'}" application "${s.application_name ?? ''}" ${s.state ?? ''}${s.writing ? ' (in a writing transaction)' : ''}`;

/** Terminates the sessions; returns how many were signalled and which were refused. */
export async function terminate(
  source: pg.Client,
  list: Session[],
): Promise<{ ended: number; refused: Session[] }> {
  let ended = 0;
  const refused: Session[] = [];
  for (const s of list) {
    try {
      const res = await source.query<{ ok: boolean }>('SELECT pg_catalog.pg_terminate_backend($1) AS ok', [
        s.pid,
      ]);
      if (res.rows[0]?.ok) ended++;
    } catch (err) {
      if (serverErrorFields(err)?.code !== '42501') throw err;
      refused.push(s);
    }
  }
  return { ended, refused };
}
