/**
 * Where an online migration stands, kept in the target's ledger (tables `online_state`,
 * ledger migration 2, and `online_freeze`, migration 3) so that `start`, `status`,
 * `cutover`, `start-back` and `rollback` agree whatever machine they run on, and so that
 * the source database's access rights that cutover changed can be restored exactly even
 * when every local file is lost.
 *
 * Phases: copying (initial copy from the slot's snapshot) → replicating (the subscription
 * applies the source's changes) → cutover (writes frozen on the source, finishing) → done
 * (the target is the database now); rolled-back (back on the source after rollback).
 *
 * Checked on PostgreSQL 13, 15 and 17 (the ledger lives on the target).
 */
import type pg from 'pg';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { z } from 'zod';
import { DEFAULTS, EXIT } from '../defaults.js';
import { SQLSTATE, sqlstateOf } from '../sqlstate.js';
import { PgconvoyError } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import type { ReplicationNames } from './names.js';
import { qualifiedName } from '../util/sql.js';
import type { SchemaFingerprint } from '../schema/fingerprint.js';
import { filterFromTexts, filterTexts } from '../inventory/table-filter.js';
import type { Scope } from '../verify/scope.js';

export type OnlinePhase = 'copying' | 'replicating' | 'cutover' | 'done' | 'rolled-back';

/** Back-replication (target → source), asked for by `start-back`, created at cutover. */
export interface BackState {
  /** How the SOURCE server reaches the target, when not as --target says; never a password. */
  targetFromSource: string | undefined;
  /** start-back made the publication on the target. */
  preparedAt: string;
  /** Cutover created the slot on the target and the subscription on the source. */
  createdAt: string | undefined;
  /** `origin = none` was used (source 16+). */
  originNone: boolean | undefined;
}

/** How changes reach the target: a subscription on it, or pgconvoy's relay (start --via relay). */
export type ReplicationVia = 'subscription' | 'relay';

export interface OnlineState {
  phase: OnlinePhase;
  via: ReplicationVia;
  /** The source as `user@host:port/db`. */
  source: string;
  names: ReplicationNames;
  /** Tables in the forward publication. */
  published: TableRef[];
  /** The slot's consistent point: the initial copy holds everything before it. */
  startLsn: string | null;
  schemaFingerprint: SchemaFingerprint | null;
  back: BackState | null;
  /** The source's WAL position once writes were frozen. */
  cutoverLsn: string | null;
  writesBlockedMs: number | null;
  detail: Record<string, unknown>;
  startedAt: Date;
  replicatingAt: Date | null;
  cutoverStartedAt: Date | null;
  doneAt: Date | null;
  rolledBackAt: Date | null;
  updatedAt: Date;
}

interface StateRow {
  phase: OnlinePhase;
  via: string | undefined;
  source: string;
  names: ReplicationNames;
  published: TableRef[];
  start_lsn: string | null;
  schema_fingerprint: SchemaFingerprint | null;
  back: BackState | null;
  cutover_lsn: string | null;
  writes_blocked_ms: string | null;
  detail: Record<string, unknown>;
  started_at: Date;
  replicating_at: Date | null;
  cutover_started_at: Date | null;
  done_at: Date | null;
  rolled_back_at: Date | null;
  updated_at: Date;
}

const table = (schema: string) => qualifiedName(schema, 'online_state');

/** When the migration entered its current phase. */
export function phaseSince(s: OnlineState): Date | null {
  return {
    copying: s.startedAt,
    replicating: s.replicatingAt,
    cutover: s.cutoverStartedAt,
    done: s.doneAt,
    'rolled-back': s.rolledBackAt,
  }[s.phase];
}

/** The online state, or undefined when this target has none (or no ledger at all). Read-only. */
export async function readOnlineState(client: pg.Client, schema: string): Promise<OnlineState | undefined> {
  const exists = await client.query<{ ok: boolean }>(
    `SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, 'online_state')) IS NOT NULL AS ok`,
    [schema],
  );
  if (!exists.rows[0]?.ok) return undefined;
  const res = await client.query<StateRow>(`SELECT * FROM ${table(schema)} WHERE id = 1`);
  const r = res.rows[0];
  if (!r) return undefined;
  return {
    phase: r.phase,
    // The ledger is input; a ledger from before migration 4 has no column: a subscription.
    via: r.via === 'relay' ? 'relay' : 'subscription',
    source: r.source,
    names: r.names,
    published: r.published,
    startLsn: r.start_lsn,
    schemaFingerprint: r.schema_fingerprint,
    back: r.back,
    cutoverLsn: r.cutover_lsn,
    writesBlockedMs: r.writes_blocked_ms === null ? null : Number(r.writes_blocked_ms),
    detail: r.detail,
    startedAt: r.started_at,
    replicatingAt: r.replicating_at,
    cutoverStartedAt: r.cutover_started_at,
    doneAt: r.done_at,
    rolledBackAt: r.rolled_back_at,
    updatedAt: r.updated_at,
  };
}

/** Records a (re)start: phase copying, everything else cleared. The ledger must exist. */
export async function beginOnlineState(
  client: pg.Client,
  schema: string,
  source: string,
  names: ReplicationNames,
): Promise<void> {
  await client.query(
    `INSERT INTO ${table(schema)} AS s (id, phase, source, names)
     VALUES (1, 'copying', $1, $2)
     ON CONFLICT (id) DO UPDATE SET
       phase = 'copying', via = 'subscription', source = EXCLUDED.source, names = EXCLUDED.names, published = '[]',
       start_lsn = NULL, schema_fingerprint = NULL, back = NULL, cutover_lsn = NULL,
       writes_blocked_ms = NULL, detail = '{}', started_at = pg_catalog.now(), replicating_at = NULL,
       cutover_started_at = NULL, done_at = NULL, rolled_back_at = NULL, updated_at = pg_catalog.now()`,
    [source, JSON.stringify(names)],
  );
}

export interface StatePatch {
  phase?: OnlinePhase;
  /**
   * Compare-and-set: the change is made only while the phase is one of these, else
   * PHASE_CHANGED (another command moved the migration on meanwhile).
   */
  from?: readonly OnlinePhase[];
  via?: ReplicationVia;
  published?: TableRef[];
  startLsn?: string;
  schemaFingerprint?: SchemaFingerprint;
  back?: BackState | null;
  cutoverLsn?: string | null;
  writesBlockedMs?: number | null;
  /** Merged into the existing detail. */
  detail?: Record<string, unknown>;
}

const PHASE_COLUMN: Partial<Record<OnlinePhase, string>> = {
  replicating: 'replicating_at',
  cutover: 'cutover_started_at',
  done: 'done_at',
  'rolled-back': 'rolled_back_at',
};

/** Changes the given fields; entering a phase stamps its time. */
export async function updateOnlineState(client: pg.Client, schema: string, patch: StatePatch): Promise<void> {
  const sets: string[] = ['updated_at = pg_catalog.now()'];
  const values: unknown[] = [];
  const set = (column: string, value: unknown, cast = '') => {
    values.push(value);
    sets.push(`${column} = $${values.length}${cast}`);
  };
  if (patch.phase !== undefined) {
    set('phase', patch.phase);
    const stamp = PHASE_COLUMN[patch.phase];
    if (stamp) sets.push(`${stamp} = pg_catalog.now()`);
  }
  if (patch.via !== undefined) set('via', patch.via);
  if (patch.published !== undefined) set('published', JSON.stringify(patch.published), '::jsonb');
  if (patch.startLsn !== undefined) set('start_lsn', patch.startLsn);
  if (patch.schemaFingerprint !== undefined)
    set('schema_fingerprint', JSON.stringify(patch.schemaFingerprint), '::jsonb');
  if (patch.back !== undefined)
    set('back', patch.back === null ? null : JSON.stringify(patch.back), '::jsonb');
  if (patch.cutoverLsn !== undefined) set('cutover_lsn', patch.cutoverLsn);
  if (patch.writesBlockedMs !== undefined)
    set('writes_blocked_ms', patch.writesBlockedMs === null ? null : Math.round(patch.writesBlockedMs));
  if (patch.detail !== undefined) {
    values.push(JSON.stringify(patch.detail));
    sets.push(`detail = detail || $${values.length}::jsonb`);
  }
  let where = 'id = 1';
  if (patch.from !== undefined) {
    values.push([...patch.from]);
    where += ` AND phase = ANY ($${values.length}::text[])`;
  }
  const updated = await client.query(`UPDATE ${table(schema)} SET ${sets.join(', ')} WHERE ${where}`, values);
  if (patch.from !== undefined && updated.rowCount !== 1) {
    const now = await readOnlineState(client, schema);
    throw new PgconvoyError(
      `the online migration's phase changed under this command: it is "${now?.phase ?? 'gone'}", this command expected ${patch.from.map((p) => `"${p}"`).join(' or ')}`,
      {
        code: 'PHASE_CHANGED',
        exitCode: EXIT.blocked,
        hint: 'another pgconvoy command changed it meanwhile: run pgconvoy status to see where the migration is now',
      },
    );
  }
}

/**
 * One online command at a time per migration (cutover, rollback, start-back, teardown): a
 * session-level advisory lock on the target, keyed by the ledger schema, held by `client`
 * until it ends, so a killed command leaves nothing to clean up. Without it a rollback run
 * beside a cutover would open the source database while the cutover freezes it.
 * The second key is 0; job locks (ledger/jobs.ts) use job ids from 1.
 */
export async function lockMigration(client: pg.Client, schema: string, command: string): Promise<void> {
  const key = `pgconvoy online ${schema}`;
  await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, false)`, [
    `${DEFAULTS.onlineLockWaitMs}ms`,
  ]);
  try {
    await client.query('SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext($1), 0)', [key]);
    return;
  } catch (err) {
    if (sqlstateOf(err) !== SQLSTATE.lockNotAvailable) throw err;
  } finally {
    await client.query('RESET lock_timeout');
  }
  const holder = await client.query<{ pid: number; application_name: string; since: string | null }>(
    `SELECT a.pid, a.application_name, pg_catalog.to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since
       FROM pg_catalog.pg_locks l
       JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
        AND l.classid = pg_catalog.hashtext($1)::oid AND l.objid = 0 AND l.objsubid = 2`,
    [key],
  );
  const who = holder.rows[0];
  throw new PgconvoyError(
    `another pgconvoy command is working on this online migration${who ? ` ("${who.application_name}", target pid ${who.pid}, since ${who.since ?? '?'})` : ''}: ${command} would interleave with it`,
    {
      code: 'ONLINE_BUSY',
      exitCode: EXIT.blocked,
      hint: `wait until it ends (or stop it: a stopped command resumes when run again), then run ${command} again`,
    },
  );
}

export interface ConnectGrant {
  /** A role name, or PUBLIC. */
  grantee: string;
  grantable: boolean;
}

/** What the source database looked like before the write freeze, and how far it is proven. */
export interface FreezeRecord {
  database: string;
  /** Who held CONNECT on the database before the freeze. */
  priorConnect: ConnectGrant[];
  /** The database's own default_transaction_read_only setting before the freeze (null: none). */
  priorReadOnly: string | null;
  /** Roles pgconvoy granted CONNECT to because they must keep it (its own, the streaming role). */
  granted: string[];
  recordedAt: Date;
  /** Set only once a run has proven that writes stopped; cleared when a run starts proving again. */
  provenLsn: string | null;
  /** The database's count of written rows (user tables) at the proof. */
  provenWrites: string | null;
  provenAt: Date | null;
  releasedAt: Date | null;
}

const freezeTable = (schema: string) => qualifiedName(schema, 'online_freeze');

// The ledger is input: whoever can write the target may have put anything there.
const freezeRow = z.object({
  database: z.string(),
  prior_connect: z.array(z.object({ grantee: z.string().min(1), grantable: z.boolean() })),
  prior_read_only: z.string().nullable(),
  granted: z.array(z.string().min(1)),
  recorded_at: z.date(),
  proven_lsn: z
    .string()
    .regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i)
    .nullable(),
  proven_writes: z
    .string()
    .regex(/^\d{1,20}$/)
    .nullable(),
  proven_at: z.date().nullable(),
  released_at: z.date().nullable(),
});

export async function readFreeze(client: pg.Client, schema: string): Promise<FreezeRecord | undefined> {
  const exists = await client.query<{ ok: boolean }>(
    `SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, 'online_freeze')) IS NOT NULL AS ok`,
    [schema],
  );
  if (!exists.rows[0]?.ok) return undefined;
  const res = await client.query(`SELECT * FROM ${freezeTable(schema)} WHERE id = 1`);
  if (res.rows.length === 0) return undefined;
  const parsed = freezeRow.safeParse(res.rows[0]);
  if (!parsed.success) {
    throw new PgconvoyError(
      `the ledger's record of the write freeze is damaged: ${parsed.error.issues[0]?.message}`,
      {
        code: 'LEDGER_DAMAGED',
        exitCode: EXIT.target,
        hint: `inspect ${freezeTable(schema)} on the target; pgconvoy will not act on it`,
      },
    );
  }
  const r = parsed.data;
  return {
    database: r.database,
    priorConnect: r.prior_connect,
    priorReadOnly: r.prior_read_only,
    granted: r.granted,
    recordedAt: r.recorded_at,
    provenLsn: r.proven_lsn,
    provenWrites: r.proven_writes,
    provenAt: r.proven_at,
    releasedAt: r.released_at,
  };
}

/**
 * Records the source database's state before the freeze changes it, and returns the record
 * in force. Written BEFORE anything changes on the source. A freeze that is still in place
 * (an earlier run died, or cutover is run again) keeps its first record: what it holds is
 * the state before pgconvoy touched anything, which is what rollback must restore. Any
 * earlier proof is cleared: a freeze point is only trusted from the run that proved it.
 */
export async function recordFreezePlan(
  client: pg.Client,
  schema: string,
  plan: { database: string; priorConnect: ConnectGrant[]; priorReadOnly: string | null; granted: string[] },
): Promise<FreezeRecord> {
  await client.query(
    `INSERT INTO ${freezeTable(schema)} AS f (id, database, prior_connect, prior_read_only, granted)
     VALUES (1, $1, $2::jsonb, $3, $4::jsonb)
     ON CONFLICT (id) DO UPDATE SET
       database = CASE WHEN f.released_at IS NULL THEN f.database ELSE EXCLUDED.database END,
       prior_connect = CASE WHEN f.released_at IS NULL THEN f.prior_connect ELSE EXCLUDED.prior_connect END,
       prior_read_only = CASE WHEN f.released_at IS NULL THEN f.prior_read_only ELSE EXCLUDED.prior_read_only END,
       granted = CASE WHEN f.released_at IS NULL THEN f.granted ELSE EXCLUDED.granted END,
       recorded_at = CASE WHEN f.released_at IS NULL THEN f.recorded_at ELSE pg_catalog.now() END,
       proven_lsn = NULL, proven_writes = NULL, proven_at = NULL, released_at = NULL`,
    [plan.database, JSON.stringify(plan.priorConnect), plan.priorReadOnly, JSON.stringify(plan.granted)],
  );
  const record = await readFreeze(client, schema);
  if (!record) throw new Error('the freeze record vanished right after it was written');
  return record;
}

/** Adds roles to the ones pgconvoy granted CONNECT to (written before the GRANT). */
export async function recordFreezeGrants(client: pg.Client, schema: string, roles: string[]): Promise<void> {
  if (roles.length === 0) return;
  await client.query(
    `UPDATE ${freezeTable(schema)}
     SET granted = (SELECT pg_catalog.jsonb_agg(DISTINCT g) FROM pg_catalog.jsonb_array_elements_text(granted || $1::jsonb) g)
     WHERE id = 1`,
    [JSON.stringify(roles)],
  );
}

export async function recordFreezeProof(
  client: pg.Client,
  schema: string,
  proof: { lsn: string; writes: string },
): Promise<void> {
  await client.query(
    `UPDATE ${freezeTable(schema)} SET proven_lsn = $1, proven_writes = $2, proven_at = pg_catalog.now() WHERE id = 1`,
    [proof.lsn, proof.writes],
  );
}

export async function markFreezeReleased(client: pg.Client, schema: string): Promise<void> {
  await client.query(`UPDATE ${freezeTable(schema)} SET released_at = pg_catalog.now() WHERE id = 1`);
}

/** The online state, or an error saying that `pgconvoy start` has not run against this target. */
export async function requireOnlineState(
  client: pg.Client,
  schema: string,
  target: ConnectionSpec,
): Promise<OnlineState> {
  const state = await readOnlineState(client, schema);
  if (!state) {
    throw new PgconvoyError(`no online migration into ${describeConnection(target)}`, {
      code: 'NO_ONLINE_MIGRATION',
      hint: 'run pgconvoy start first',
    });
  }
  return state;
}

const patterns = z.array(z.string().min(1));
/** What `start` moved, kept in `detail.scope`: its filters' patterns and the columns left behind. */
const scopeSchema = z
  .object({
    filter: z
      .object({
        includeSchemas: patterns,
        excludeSchemas: patterns,
        includeTables: patterns,
        excludeTables: patterns,
        excludeTableData: patterns,
      })
      .strict()
      .nullable(),
    excludeColumns: z.array(z.string()),
  })
  .strict();

/** Records the tables and columns start moves, for cutover, rollback and status to follow. */
export async function recordMigrationScope(client: pg.Client, schema: string, scope: Scope): Promise<void> {
  const stored: z.infer<typeof scopeSchema> = {
    filter: scope.filter ? filterTexts(scope.filter) : null,
    excludeColumns: [...(scope.excludeColumns ?? [])],
  };
  await updateOnlineState(client, schema, { detail: { scope: stored } });
}

/**
 * The tables and columns this migration moves (start's -n/-N/-t/-T/--exclude-table-data,
 * --exclude-column): everything when start recorded no scope (an older ledger).
 */
export function migrationScope(state: OnlineState, ledgerSchema: string): Scope {
  if (state.detail.scope === undefined) return { filter: undefined };
  const parsed = scopeSchema.safeParse(state.detail.scope);
  if (!parsed.success)
    throw new PgconvoyError(
      `the ledger's record of what start moved (${qualifiedName(ledgerSchema, 'online_state')}.detail -> 'scope') is not valid: ${parsed.error.issues[0]?.message ?? 'unreadable'}`,
      {
        code: 'LEDGER_INVALID',
        exitCode: EXIT.target,
        hint: 'the ledger was changed by hand or by another program: run pgconvoy teardown, then start again',
      },
    );
  return {
    filter: parsed.data.filter ? filterFromTexts(parsed.data.filter) : undefined,
    excludeColumns: new Set(parsed.data.excludeColumns),
  };
}
