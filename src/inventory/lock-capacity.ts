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
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { userSchemas } from '../util/catalog-sql.js';

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

/** What one transaction of pg_dump, and the copy's snapshot session, lock on the source. */
export interface SourceLockNeeds {
  /** Tables, views, materialized views and foreign tables pg_dump reads definitions of in its transaction. */
  dumped: number;
  /** Sequences the snapshot session reads (their values are taken in the copy's snapshot). */
  sequences: number;
}

export async function readSourceLockNeeds(client: pg.Client, ledgerSchema: string): Promise<SourceLockNeeds> {
  const res = await client.query<{ dumped: string; sequences: string }>(
    `SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')) AS dumped,
            count(*) FILTER (WHERE c.relkind = 'S') AS sequences
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE ${userSchemas()} AND n.nspname <> $1`,
    [ledgerSchema],
  );
  return { dumped: Number(res.rows[0]?.dumped ?? 0), sequences: Number(res.rows[0]?.sequences ?? 0) };
}

/** Lock table entries held right now by other sessions (fast-path locks take none). */
export async function locksHeld(client: pg.Client): Promise<number> {
  const res = await client.query<{ n: string }>(
    'SELECT count(*) AS n FROM pg_catalog.pg_locks WHERE NOT fastpath AND pid IS DISTINCT FROM pg_catalog.pg_backend_pid()',
  );
  return Number(res.rows[0]?.n ?? 0);
}

/**
 * The refusal when one transaction on the source would need more of its lock table than there
 * is (pg_dump locks every table it dumps at once), or undefined when it fits.
 */
export function sourceLockShortage(
  capacity: LockCapacity,
  needs: SourceLockNeeds,
  held: number,
): { message: string; hint: string; needed: number; value: number } | undefined {
  const needed = Math.max(needs.dumped, needs.sequences) + held;
  if (needed <= capacity.entries) return undefined;
  const value = maxLocksNeeded(capacity, needed);
  const what =
    needs.dumped >= needs.sequences
      ? `pg_dump would lock ${needs.dumped} tables and views in one transaction`
      : `reading ${needs.sequences} sequences in the copy's snapshot would lock them all in one transaction`;
  return {
    needed,
    value,
    message:
      `the source's lock table is too small: ${what}${held ? ` (and other sessions hold ${held} locks now)` : ''}, ` +
      `but it has room for ${capacity.entries} (max_locks_per_transaction ${capacity.maxLocksPerTransaction} × ${capacity.processSlots} process slots)`,
    hint:
      `nothing was written; set max_locks_per_transaction to at least ${value} on the source ` +
      `(ALTER SYSTEM SET max_locks_per_transaction = ${value}; then restart the source server: the setting takes effect only at start)`,
  };
}

/** Refuses, before anything is written, a source whose lock table one dump transaction would overflow. */
export async function checkSourceLocks(source: pg.Client, ledgerSchema: string): Promise<void> {
  const shortage = sourceLockShortage(
    await readLockCapacity(source),
    await readSourceLockNeeds(source, ledgerSchema),
    await locksHeld(source),
  );
  if (shortage)
    throw new PgconvoyError(shortage.message, {
      code: 'SOURCE_LOCK_TABLE_TOO_SMALL',
      exitCode: EXIT.source,
      hint: shortage.hint,
      details: { locksNeeded: shortage.needed, maxLocksPerTransaction: shortage.value },
    });
}
