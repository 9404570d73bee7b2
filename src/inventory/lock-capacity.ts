/**
 * The size of a server's shared lock table, which bounds how many objects one transaction
 * may lock or create: pg_dump locks every table it dumps in one transaction, and a schema
 * applied in one transaction holds a lock on every relation it creates. PostgreSQL sizes the
 * table at start-up as max_locks_per_transaction × (MaxBackends + max_prepared_transactions),
 * MaxBackends being max_connections + autovacuum workers + 1 + max_worker_processes +
 * max_wal_senders; a transaction that needs more fails with "out of shared memory"
 * (SQLSTATE 53200), and raising the setting takes a restart. Checked on 13, 15, 17.
 */
import type pg from 'pg';

export interface LockCapacity {
  maxLocksPerTransaction: number;
  /** max_connections + max_prepared_transactions: the sessions the setting is meant to be shared by. */
  sessions: number;
  /** Every process slot the lock table is sized for (MaxBackends + max_prepared_transactions). */
  processSlots: number;
  /** Lock table entries the server allocated: maxLocksPerTransaction × processSlots. */
  entries: number;
}

const SETTINGS = [
  'max_locks_per_transaction',
  'max_connections',
  'max_prepared_transactions',
  'autovacuum_max_workers',
  // 18+: the autovacuum slots the lock table is sized for (autovacuum_max_workers may be lower).
  'autovacuum_worker_slots',
  'max_worker_processes',
  'max_wal_senders',
];

export async function readLockCapacity(client: pg.Client): Promise<LockCapacity> {
  const res = await client.query<{ name: string; setting: string }>(
    'SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY($1::text[])',
    [SETTINGS],
  );
  const s = new Map(res.rows.map((r) => [r.name, Number(r.setting)]));
  const get = (name: string) => s.get(name) ?? 0;
  const autovacuum = s.get('autovacuum_worker_slots') ?? get('autovacuum_max_workers');
  const maxLocksPerTransaction = get('max_locks_per_transaction') || 64;
  const prepared = get('max_prepared_transactions');
  const processSlots =
    get('max_connections') + autovacuum + 1 + get('max_worker_processes') + get('max_wal_senders') + prepared;
  return {
    maxLocksPerTransaction,
    sessions: get('max_connections') + prepared,
    processSlots,
    entries: maxLocksPerTransaction * processSlots,
  };
}

/**
 * How many locks one transaction of ours may take on the target while `otherSessions` of ours
 * work beside it: half the table the settings promise to max_connections sessions (the rest is
 * the application's and the autovacuum's), less a full share for each other session, and never
 * less than one session's own share.
 */
export function lockBudget(capacity: LockCapacity, otherSessions: number): number {
  const promised = capacity.maxLocksPerTransaction * capacity.sessions;
  return Math.max(
    capacity.maxLocksPerTransaction,
    Math.floor(promised / 2) - otherSessions * capacity.maxLocksPerTransaction,
  );
}

/** The max_locks_per_transaction that gives `needed` lock table entries, with a quarter to spare. */
export function maxLocksNeeded(capacity: LockCapacity, needed: number): number {
  return Math.max(capacity.maxLocksPerTransaction + 1, Math.ceil((needed * 1.25) / capacity.processSlots));
}

/** The hint for "out of shared memory" (SQLSTATE 53200), wherever it comes from. */
export function lockShortageHint(needed?: { capacity: LockCapacity; locks: number }): string {
  const value = needed
    ? ` to at least ${maxLocksNeeded(needed.capacity, needed.locks)} (now ${needed.capacity.maxLocksPerTransaction})`
    : '';
  return (
    `the server's lock table is full (SQLSTATE 53200): raise max_locks_per_transaction${value} ` +
    `(ALTER SYSTEM SET max_locks_per_transaction = …; it takes a restart of that server), or lower --jobs and --index-jobs`
  );
}
