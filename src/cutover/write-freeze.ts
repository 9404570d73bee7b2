/**
 * The write freeze of a cutover: after it, no transaction can commit a write in the migrated
 * database on the source, whoever runs it, and pgconvoy proves that before it takes the
 * freeze point (the source WAL position up to which the target must have applied).
 *
 * The gate touches this database only, never a role or another database of the server:
 * 1. The database's state before the freeze (who holds CONNECT, its own
 *    default_transaction_read_only) is written to the TARGET's ledger first, so rollback
 *    restores exactly that even after a crash, and a rerun never records the frozen state
 *    as "before".
 * 2. `ALTER DATABASE … SET default_transaction_read_only = on`: every session that starts
 *    from now on, superusers and pgconvoy's own role included, is read-only; a plain write
 *    fails with SQLSTATE 25006. (Logical replication apply workers ignore the setting, so
 *    back-replication into the source still applies. pgconvoy's own sessions turn it off
 *    when they connect: see connect/open-client.ts.)
 * 3. CONNECT on the database is revoked from PUBLIC and from every role holding it, except
 *    pgconvoy's own, the role the forward subscription streams as and --keep-login roles
 *    (granted CONNECT first when they only had it through PUBLIC). Other roles' clients get
 *    "permission denied for database" at connect. Superusers ignore CONNECT; step 2 holds them.
 * 4. Every other session connected to the database (client backends and background workers
 *    such as pg_cron's; not walsenders, autovacuum or parallel workers) is terminated, and
 *    pgconvoy waits until they are gone.
 *
 * The proof does not sample sessions. Once the gate is in place, a session that started
 * before it is the only kind that can write without deliberately overriding the read-only
 * default; the proof requires that none of those is left (they cannot come back), and that
 * the database's count of rows written to its user tables (pg_stat_user_tables: inserted +
 * updated + deleted, which pgconvoy's own sessions never move) stays still across the
 * check interval. Any movement fails the round: the other sessions are ended again and the
 * round repeats until the timeout, which fails the freeze. At the end of cutover,
 * confirmFreeze ends the other sessions once more (which flushes their statistics) and
 * requires the count to be where the proof left it, before forward replication is dropped:
 * a session that overrode the read-only default and wrote is caught there.
 *
 * Needs the database's owner or a superuser (steps 2, 3); ending other roles' sessions needs
 * pg_signal_backend (or superuser for superusers' sessions): without it, pgconvoy waits for
 * them to end and names them. Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import {
  readFreeze,
  recordFreezeGrants,
  recordFreezePlan,
  recordFreezeProof,
  type ConnectGrant,
} from '../replicate/freeze-record.js';
import { quoteIdent } from '../util/sql.js';
import { CONNECT_HOLDERS_SQL, DATABASE_READ_ONLY_SQL, releaseFreeze } from './database-gate.js';
import { countWrites, describeSession, sessions, terminate, type Session } from './source-sessions.js';

export { releaseFreeze } from './database-gate.js';
import { sleep } from '../util/wait.js';
import { serverMajor } from '../inventory/server-info.js';

export interface FreezeOptions {
  /** pgconvoy's session on the source database. */
  source: pg.Client;
  /** pgconvoy's session on the target database (the ledger). */
  target: pg.Client;
  ledgerSchema: string;
  /** The forward slot: the role its walsender streams as keeps CONNECT. */
  slotName: string;
  /** Roles that keep CONNECT, besides pgconvoy's own. */
  keepConnect: string[];
  /** pgconvoy's own backends on the source (never terminated). */
  ownPids: number[];
  intervalMs: number;
  timeoutMs: number;
  onInfo: (message: string) => void;
}

export interface KeptRole {
  name: string;
  reason: string;
}

export interface FreezeResult {
  database: string;
  /** Grantees (roles, or PUBLIC) that lost CONNECT on the database in this run. */
  revoked: string[];
  kept: KeptRole[];
  /** Sessions ended in this run. */
  terminated: number;
  /** The source's WAL position once writes were proven to have stopped. */
  freezeLsn: string;
  /** Rows written to the database's user tables, as counted at the proof. */
  writes: string;
  /** When the gate closed (ms since the epoch). */
  startedAt: number;
  notes: string[];
}

function gateError(what: string, err: unknown): PgconvoyError {
  const fields = serverErrorFields(err);
  return new PgconvoyError(`could not ${what} on the source: ${errorMessage(err)}`, {
    code: 'FREEZE_FAILED',
    exitCode: EXIT.source,
    hint:
      fields?.code === '42501'
        ? "the write freeze needs the source database's owner or a superuser (it changes the database's CONNECT privilege and its default_transaction_read_only); connect as one, then run cutover again. What was already changed was restored"
        : 'what was already changed was restored; fix the cause and run cutover again',
    cause: err,
  });
}

/** Closes the gate, ends the other sessions, proves that writes stopped. See the module comment. */
export async function freezeWrites(o: FreezeOptions): Promise<FreezeResult> {
  return proveFrozen(o, await closeGate(o));
}

/** The gate as closed: what the proof needs and the result reports. */
interface ClosedGate {
  db: string;
  qdb: string;
  keep: Map<string, string>;
  toRevoke: string[];
  startedAt: number;
  gateAt: string;
  /** An earlier run's freeze was still in place. */
  resumed: boolean;
  notes: string[];
}

/** Steps 1–3 of the module comment: the state before recorded, then read-only and CONNECT revoked. */
async function closeGate(o: FreezeOptions): Promise<ClosedGate> {
  const { source } = o;
  const me = await source.query<{ cur: string; ses: string; db: string; superuser: boolean }>(
    `SELECT current_user AS cur, session_user AS ses, pg_catalog.current_database() AS db,
            (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser`,
  );
  const db = me.rows[0]?.db ?? '';
  const streamer = await source.query<{ usename: string | null }>(
    `SELECT a.usename FROM pg_catalog.pg_replication_slots s
     JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1`,
    [o.slotName],
  );
  const keep = new Map<string, string>();
  for (const r of [me.rows[0]?.cur, me.rows[0]?.ses]) if (r) keep.set(r, "pgconvoy's own role");
  const streamingRole = streamer.rows[0]?.usename;
  if (streamingRole && !keep.has(streamingRole))
    keep.set(streamingRole, 'the role the forward subscription streams as');
  for (const r of o.keepConnect) if (!keep.has(r)) keep.set(r, '--keep-connect');

  const earlier = await readFreeze(o.target, o.ledgerSchema);
  const holders = (await source.query<ConnectGrant>(CONNECT_HOLDERS_SQL)).rows;
  const priorReadOnly =
    (await source.query<{ value: string | null }>(DATABASE_READ_ONLY_SQL)).rows[0]?.value ?? null;
  await recordFreezePlan(o.target, o.ledgerSchema, {
    database: db,
    priorConnect: holders,
    priorReadOnly,
    granted: [],
  });
  const resumed = earlier !== undefined && earlier.releasedAt === null;

  // Kept roles that could only connect through PUBLIC get CONNECT of their own.
  const existing = await source.query<{ rolname: string; rolsuper: boolean }>(
    'SELECT rolname, rolsuper FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])',
    [[...keep.keys()]],
  );
  const direct = new Set(holders.map((h) => h.grantee));
  const toGrant = existing.rows.filter((r) => !r.rolsuper && !direct.has(r.rolname)).map((r) => r.rolname);
  const toRevoke = holders.map((h) => h.grantee).filter((g) => !keep.has(g));
  const qdb = quoteIdent(db);
  const startedAt = Date.now();
  try {
    await recordFreezeGrants(o.target, o.ledgerSchema, toGrant);
    await source.query(`ALTER DATABASE ${qdb} SET default_transaction_read_only = on`);
    for (const role of toGrant) await source.query(`GRANT CONNECT ON DATABASE ${qdb} TO ${quoteIdent(role)}`);
    for (const g of toRevoke)
      await source.query(
        `REVOKE CONNECT ON DATABASE ${qdb} FROM ${g === 'PUBLIC' ? 'PUBLIC' : quoteIdent(g)} CASCADE`,
      );
  } catch (err) {
    await releaseFreeze(source, o.target, o.ledgerSchema).catch(() => undefined);
    throw gateError('close the write gate of the database', err);
  }
  const gateAt = (await source.query<{ t: string }>('SELECT pg_catalog.clock_timestamp()::text AS t')).rows[0]
    ?.t;
  if (!gateAt) throw new Error('the source did not say what time it is');
  if (toRevoke.length > 0)
    o.onInfo(
      `revoked CONNECT on database ${qdb} from ${toRevoke.map((r) => (r === 'PUBLIC' ? r : `"${r}"`)).join(', ')}`,
    );
  o.onInfo(`database ${qdb} is read-only for every new session`);
  const stillHolding = (await source.query<ConnectGrant>(CONNECT_HOLDERS_SQL)).rows.filter(
    (h) => !keep.has(h.grantee),
  );
  const notes: string[] = [];
  if (stillHolding.length > 0)
    notes.push(
      `still holding CONNECT (granted by another role): ${stillHolding.map((h) => h.grantee).join(', ')}; their new sessions are read-only`,
    );
  return { db, qdb, keep, toRevoke, startedAt, gateAt, resumed, notes };
}

/** Step 4 and the proof: ends the other sessions until none from before the gate is left and writes stand still. */
async function proveFrozen(o: FreezeOptions, gate: ClosedGate): Promise<FreezeResult> {
  const { source } = o;
  const { db, qdb, keep, toRevoke, startedAt, gateAt, resumed, notes } = gate;
  let terminated = 0;
  const deadline = Date.now() + o.timeoutMs;
  const settleMs = Math.max(o.intervalMs, 200);
  for (;;) {
    // End every other session (those that started after the gate are read-only, but the
    // application should notice); wait until those that started before the gate are gone.
    const others = await sessions(source, o.ownPids, gateAt);
    const { ended, refused } = await terminate(source, others);
    terminated += ended;
    const early = others.filter((s) => s.before_gate);
    if (early.length > 0) {
      if (Date.now() > deadline)
        throw notFrozen(
          early,
          refused.filter((s) => s.before_gate),
          kept(keep),
          o.timeoutMs,
        );
      await sleep(50);
      continue;
    }
    // None before the gate is left, and none can start before it any more. A backend that
    // read the database's settings just before the gate closed shows up within moments:
    // wait, look again, and count the writes across the interval.
    const before = await countWrites(source);
    await sleep(settleMs);
    const late = await sessions(source, o.ownPids, gateAt);
    const after = await countWrites(source);
    const lsn = (await source.query<{ lsn: string }>('SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn'))
      .rows[0]?.lsn;
    if (late.some((s) => s.before_gate) || before !== after || !lsn) {
      if (before !== after)
        o.onInfo(
          `rows were written in database ${qdb} during the check (${BigInt(after) - BigInt(before)}): ending its sessions and checking again`,
        );
      if (Date.now() > deadline) {
        const { refused: r } = await terminate(source, late);
        throw notFrozen(late, r, kept(keep), o.timeoutMs, before !== after);
      }
      continue;
    }
    await recordFreezeProof(o.target, o.ledgerSchema, { lsn, writes: after });
    if (resumed) notes.push('the freeze of an earlier run was in place: re-established and proven again');
    return {
      database: db,
      revoked: toRevoke,
      kept: kept(keep),
      terminated,
      freezeLsn: lsn,
      writes: after,
      startedAt,
      notes,
    };
  }
}

const kept = (keep: Map<string, string>): KeptRole[] => [...keep].map(([name, reason]) => ({ name, reason }));

function notFrozen(
  list: Session[],
  refused: Session[],
  keptRoles: KeptRole[],
  timeoutMs: number,
  moved = false,
): PgconvoyError {
  const why = moved
    ? `rows kept being written in the source database during the check (a session that turns default_transaction_read_only off, or a subscription applying into it)`
    : `${list.length} session(s) that started before the freeze are still connected`;
  return new PgconvoyError(
    `writes to the source did not stop within ${Math.round(timeoutMs / 1000)} s: ${why}`,
    {
      code: 'WRITES_NOT_FROZEN',
      exitCode: EXIT.blocked,
      hint: `${refused.length > 0 ? `pgconvoy may not end ${refused.length} of them (GRANT pg_signal_backend TO the source role, or end them yourself); ` : ''}stop these clients, then run cutover again; or pgconvoy rollback to open the database again. Sessions: ${list.map(describeSession).join('; ') || 'none now'}. Roles that keep CONNECT: ${keptRoles.map((k) => k.name).join(', ')}`,
      details: { sessions: list },
    },
  );
}

/**
 * Before forward replication is dropped: ends the other sessions once more (which flushes
 * their statistics) and requires the database's write count to be where the proof left it.
 * A mismatch means a write landed on the source after the freeze point; the caller must
 * not drop forward replication (a rerun of cutover freezes, proves and catches up again).
 */
export async function confirmFreeze(
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
  ownPids: number[],
): Promise<void> {
  const record = await readFreeze(target, ledgerSchema);
  if (!record?.provenWrites || !record.provenAt)
    throw new PgconvoyError('the write freeze of this cutover was never proven', {
      code: 'WRITES_NOT_FROZEN',
      exitCode: EXIT.blocked,
      hint: 'run cutover again: it freezes and proves again before it trusts a freeze point',
    });
  const others = await sessions(source, ownPids, new Date(0).toISOString());
  await terminate(source, others);
  for (let i = 0; i < 100; i++) {
    if ((await sessions(source, ownPids, new Date(0).toISOString())).length === 0) break;
    await sleep(20);
  }
  // 15+ keeps statistics in shared memory, flushed as a backend exits; before 15 they travel
  // to the collector by UDP: give them the collector's interval.
  if (others.length > 0 && (await serverMajor(source)) < 15) await sleep(600);
  const writes = await countWrites(source);
  if (writes !== record.provenWrites)
    throw new PgconvoyError(
      `${BigInt(writes) - BigInt(record.provenWrites)} row(s) were written in the source database after the freeze point`,
      {
        code: 'WRITES_AFTER_FREEZE',
        exitCode: EXIT.blocked,
        hint: 'a session turned default_transaction_read_only off (or a subscription applies into the source database); forward replication was kept: stop that writer and run cutover again, which freezes, proves and catches up again',
      },
    );
}
