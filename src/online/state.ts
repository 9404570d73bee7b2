/**
 * Where an online migration stands, kept in the target's ledger (tables `online_state` and
 * `online_revoked_roles`, ledger migration 2) so that `start`, `status`, `cutover`,
 * `start-back` and `rollback` agree whatever machine they run on, and so that the logins
 * cutover revoked on the source can be restored even when every local file is lost.
 *
 * Phases: copying (initial copy from the slot's snapshot) → replicating (the subscription
 * applies the source's changes) → cutover (writes frozen on the source, finishing) → done
 * (the target is the database now); rolled-back (back on the source after rollback).
 *
 * Checked on PostgreSQL 13, 15 and 17 (the ledger lives on the target).
 */
import type pg from 'pg';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { PgconvoyError } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import type { ReplicationNames } from '../replicate/names.js';
import { qualifiedName } from '../util/sql.js';
import type { SchemaFingerprint } from './fingerprint.js';

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

export interface OnlineState {
  phase: OnlinePhase;
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

export interface RevokedRole {
  name: string;
  /** rolcanlogin before pgconvoy changed it (only roles that could log in are revoked). */
  hadLogin: boolean;
  revokedAt: Date;
  restoredAt: Date | null;
}

interface StateRow {
  phase: OnlinePhase;
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
const rolesTable = (schema: string) => qualifiedName(schema, 'online_revoked_roles');

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
       phase = 'copying', source = EXCLUDED.source, names = EXCLUDED.names, published = '[]',
       start_lsn = NULL, schema_fingerprint = NULL, back = NULL, cutover_lsn = NULL,
       writes_blocked_ms = NULL, detail = '{}', started_at = pg_catalog.now(), replicating_at = NULL,
       cutover_started_at = NULL, done_at = NULL, rolled_back_at = NULL, updated_at = pg_catalog.now()`,
    [source, JSON.stringify(names)],
  );
}

export interface StatePatch {
  phase?: OnlinePhase;
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
  await client.query(`UPDATE ${table(schema)} SET ${sets.join(', ')} WHERE id = 1`, values);
}

/**
 * Records that these roles are about to lose LOGIN on the source. Written BEFORE the
 * ALTER ROLE on the source: should pgconvoy die in between, rollback grants LOGIN to a role
 * that still has it, which changes nothing.
 */
export async function recordRevokedRoles(client: pg.Client, schema: string, roles: string[]): Promise<void> {
  if (roles.length === 0) return;
  await client.query(
    `INSERT INTO ${rolesTable(schema)} (role_name, had_login)
     SELECT r, true FROM pg_catalog.unnest($1::text[]) AS r
     ON CONFLICT (role_name) DO UPDATE SET revoked_at = pg_catalog.now(), restored_at = NULL`,
    [roles],
  );
}

export async function readRevokedRoles(client: pg.Client, schema: string): Promise<RevokedRole[]> {
  const res = await client.query<{
    role_name: string;
    had_login: boolean;
    revoked_at: Date;
    restored_at: Date | null;
  }>(`SELECT role_name, had_login, revoked_at, restored_at FROM ${rolesTable(schema)} ORDER BY role_name`);
  return res.rows.map((r) => ({
    name: r.role_name,
    hadLogin: r.had_login,
    revokedAt: r.revoked_at,
    restoredAt: r.restored_at,
  }));
}

export async function markRoleRestored(client: pg.Client, schema: string, name: string): Promise<void> {
  await client.query(`UPDATE ${rolesTable(schema)} SET restored_at = pg_catalog.now() WHERE role_name = $1`, [
    name,
  ]);
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
