/**
 * The write freeze of a cutover: nobody but pgconvoy may write to the source database any
 * more, and pgconvoy proves it before it takes the source's final WAL position.
 *
 * 1. Every role that may log in loses LOGIN (ALTER ROLE … NOLOGIN), except: the role
 *    pgconvoy connects as, the role the subscription streams as (the walsender of the
 *    forward slot), roles the operator keeps (--keep-login), and superusers. Superusers
 *    are administrators; locking them out is not pgconvoy's call (and a non-superuser
 *    cannot do it anyway). Their sessions in the database are ended like all others, and
 *    the check below catches one that comes back and writes. The roles changed are
 *    written to the TARGET's ledger first, then changed on the source, so rollback can
 *    always restore exactly them. Note that LOGIN is cluster-wide: the roles cannot log in
 *    to any database of the source server until rollback.
 * 2. Every other client session connected to the source database is terminated.
 * 3. The check: two samples `intervalMs` apart of the sessions connected to the database
 *    (other than pgconvoy's) and of the transaction-id snapshot (txid_current_snapshot,
 *    which moves whenever a transaction with an xid, i.e. a writing one, starts or ends).
 *    Frozen when no other session is connected at either sample. Transaction ids that move
 *    meanwhile with no session in this database come from another database of the server
 *    or from autovacuum: reported, not blocking. The source's pg_current_wal_lsn() at the
 *    second sample is the freeze point: every transaction of this database that committed
 *    did so before it, so the target has everything once it has applied up to there.
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage } from '../errors.js';
import { markRoleRestored, readRevokedRoles, recordRevokedRoles } from '../online/state.js';
import { quoteIdent } from '../util/sql.js';

export interface FreezeOptions {
  /** pgconvoy's session on the source database. */
  source: pg.Client;
  /** pgconvoy's session on the target database (the ledger). */
  target: pg.Client;
  ledgerSchema: string;
  /** The forward slot: its walsender (and the role it streams as) are left alone. */
  slotName: string;
  /** Roles never to revoke, besides pgconvoy's own. */
  keepLogins: string[];
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
  /** Roles that lost LOGIN in this run. */
  revoked: string[];
  kept: KeptRole[];
  terminated: number;
  /** The source's WAL position once writes were proven to have stopped. */
  freezeLsn: string;
  /** When the first login was revoked (ms since the epoch). */
  startedAt: number;
  notes: string[];
}

interface Session {
  pid: number;
  usename: string | null;
  application_name: string | null;
  state: string | null;
  writing: boolean;
}

// backend_type: 10+.
const SESSIONS_SQL = `
SELECT a.pid, a.usename, a.application_name, a.state, a.backend_xid IS NOT NULL AS writing
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = pg_catalog.current_database()
  AND a.backend_type = 'client backend'
  AND a.pid <> ALL ($1::int[])
ORDER BY a.pid`;

const LOGIN_ROLES_SQL = `
SELECT r.rolname AS name, r.rolsuper AS superuser
FROM pg_catalog.pg_roles r
WHERE r.rolcanlogin AND r.rolname !~ '^pg_'
ORDER BY r.rolname`;

async function sample(source: pg.Client, ownPids: number[]) {
  const head = await source.query<{ lsn: string; snap: string }>(
    'SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn, pg_catalog.txid_current_snapshot()::text AS snap',
  );
  const sessions = await source.query<Session>(SESSIONS_SQL, [ownPids]);
  return { lsn: head.rows[0]?.lsn ?? '0/0', snap: head.rows[0]?.snap ?? '', sessions: sessions.rows };
}

async function terminate(
  source: pg.Client,
  sessions: Session[],
): Promise<{ ended: number; refused: string[] }> {
  let ended = 0;
  const refused: string[] = [];
  for (const s of sessions) {
    try {
      const res = await source.query<{ ok: boolean }>('SELECT pg_catalog.pg_terminate_backend($1) AS ok', [
        s.pid,
      ]);
      if (res.rows[0]?.ok) ended++;
    } catch (err) {
      refused.push(`pid ${s.pid} (${s.usename ?? '?'}): ${errorMessage(err)}`);
    }
  }
  return { ended, refused };
}

const describeSession = (s: Session) =>
  `pid ${s.pid} role "${s.usename ?? '?'}" application "${s.application_name ?? ''}" ${s.state ?? ''}${s.writing ? ' (in a writing transaction)' : ''}`;

/** Revokes logins, ends sessions, proves that writes stopped. See the module comment. */
export async function freezeWrites(o: FreezeOptions): Promise<FreezeResult> {
  const { source } = o;
  const me = await source.query<{ cur: string; ses: string }>(
    'SELECT current_user AS cur, session_user AS ses',
  );
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
  for (const r of o.keepLogins) if (!keep.has(r)) keep.set(r, '--keep-login');

  const roles = await source.query<{ name: string; superuser: boolean }>(LOGIN_ROLES_SQL);
  const kept: KeptRole[] = [];
  const toRevoke: string[] = [];
  for (const r of roles.rows) {
    const reason =
      keep.get(r.name) ?? (r.superuser ? 'superuser (its sessions are ended, not its login)' : undefined);
    if (reason) kept.push({ name: r.name, reason });
    else toRevoke.push(r.name);
  }

  await recordRevokedRoles(o.target, o.ledgerSchema, toRevoke);
  const startedAt = Date.now();
  const revoked: string[] = [];
  for (const name of toRevoke) {
    try {
      await source.query(`ALTER ROLE ${quoteIdent(name)} NOLOGIN`);
      revoked.push(name);
    } catch (err) {
      await restoreLogins(source, o.target, o.ledgerSchema).catch(() => undefined);
      throw new PgconvoyError(
        `could not revoke LOGIN from role "${name}" on the source: ${errorMessage(err)}`,
        {
          code: 'REVOKE_FAILED',
          exitCode: EXIT.source,
          hint: 'the source role needs CREATEROLE (and on 16+ ADMIN OPTION on the roles) or superuser; the logins already revoked were given back, nothing else changed',
          cause: err,
        },
      );
    }
  }
  if (revoked.length > 0)
    o.onInfo(`revoked LOGIN on the source from ${revoked.map((r) => `"${r}"`).join(', ')}`);

  const notes: string[] = [];
  let terminated = 0;
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const first = await sample(source, o.ownPids);
    if (first.sessions.length === 0) {
      await new Promise((r) => setTimeout(r, o.intervalMs));
      const second = await sample(source, o.ownPids);
      if (second.sessions.length === 0) {
        if (first.snap !== second.snap) {
          notes.push(
            `transaction ids moved on the source server during the check (${first.snap} → ${second.snap}) with no session in this database: another database or autovacuum`,
          );
        }
        return { revoked, kept, terminated, freezeLsn: second.lsn, startedAt, notes };
      }
    }
    const now = await sample(source, o.ownPids);
    if (Date.now() > deadline) {
      throw new PgconvoyError(
        `writes to the source did not stop: ${now.sessions.length} session(s) keep connecting to the database`,
        {
          code: 'WRITES_NOT_FROZEN',
          exitCode: EXIT.blocked,
          hint: `stop these clients (they belong to roles pgconvoy did not revoke: ${kept.map((k) => k.name).join(', ') || 'none'}), then run cutover again; or pgconvoy rollback to give the revoked logins back: ${now.sessions.map(describeSession).join('; ')}`,
          details: { sessions: now.sessions },
        },
      );
    }
    const { ended, refused } = await terminate(source, now.sessions);
    terminated += ended;
    if (refused.length > 0) notes.push(...refused.map((r) => `could not end session ${r}`));
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Gives LOGIN back to every role the ledger says pgconvoy revoked and has not restored yet. */
export async function restoreLogins(
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
): Promise<string[]> {
  const restored: string[] = [];
  for (const role of await readRevokedRoles(target, ledgerSchema)) {
    if (role.restoredAt !== null || !role.hadLogin) continue;
    const exists = await source.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [role.name]);
    if ((exists.rowCount ?? 0) > 0) await source.query(`ALTER ROLE ${quoteIdent(role.name)} LOGIN`);
    await markRoleRestored(target, ledgerSchema, role.name);
    restored.push(role.name);
  }
  return restored;
}
