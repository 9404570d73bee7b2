/**
 * Checks on the target before any row moves: tables that already hold rows pgconvoy did not
 * put there (refused unless the user says truncate or skip), tables whose row-level security
 * applies to the target role (COPY FROM refuses them: one message for all, not one failed
 * job each), and, for loads into existing tables, triggers and foreign keys that would fire
 * when session_replication_role cannot be set. Checked on 13, 15, 17.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { filteredTables, readAccess, rowSecurityHint } from '../inventory/read-access.js';
import type { TableRef } from '../plan/chunk.js';
import { targetRelation } from './partitioned-target.js';
import { displayName } from '../util/sql.js';

export type ExistingRowsPolicy = 'error' | 'truncate' | 'skip';

/** Tables probed per statement at most. */
const PROBE_BATCH = 200;

/** Tables among `tables` that hold at least one row on the target (a partitioned one: in its partitions). */
export async function nonEmptyTables(
  target: pg.Client,
  tables: readonly TableRef[],
  partitioned: ReadonlySet<string>,
  /** Tables one statement may lock (with their indexes) within the lock table. */
  perStatement = PROBE_BATCH,
): Promise<TableRef[]> {
  const out: TableRef[] = [];
  const batchSize = Math.max(1, Math.min(PROBE_BATCH, perStatement));
  // Many tables per statement (one round trip for a few hundred small ones); each statement
  // holds its ACCESS SHARE locks only until it ends.
  for (let start = 0; start < tables.length; start += batchSize) {
    const batch = tables.slice(start, start + batchSize);
    const res = await target.query<{ i: number }>(
      batch
        .map((t, i) => `SELECT ${i} AS i WHERE EXISTS (SELECT 1 FROM ${targetRelation(t, partitioned)})`)
        .join('\nUNION ALL '),
    );
    for (const i of res.rows.map((r) => Number(r.i)).sort((a, b) => a - b)) out.push(batch[i]!);
  }
  return out;
}

export function existingRowsError(tables: readonly TableRef[]): PgconvoyError {
  const names = tables.map((t) => displayName(t.schema, t.name));
  return new PgconvoyError(
    `the target already has rows that pgconvoy did not copy, in ${names.length} table(s): ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}`,
    {
      code: 'TARGET_NOT_EMPTY',
      exitCode: EXIT.target,
      hint: 'nothing was copied; pass --existing-rows truncate to empty those tables first, or --existing-rows skip to leave them as they are',
      details: { tables: names },
    },
  );
}

/** Tables that foreign keys on the target point at (TRUNCATE would fail on them). */
export async function referencedTables(target: pg.Client): Promise<Set<string>> {
  const res = await target.query<{ schema: string; name: string }>(
    `SELECT DISTINCT n.nspname AS schema, c.relname AS name
     FROM pg_catalog.pg_constraint k
     JOIN pg_catalog.pg_class c ON c.oid = k.confrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE k.contype = 'f'`,
  );
  return new Set(res.rows.map((r) => JSON.stringify([r.schema, r.name])));
}

/** User triggers and foreign keys on the tables to load: they fire unless session_replication_role = replica. */
export async function loadBlockers(target: pg.Client): Promise<string[]> {
  const res = await target.query<{ what: string }>(
    `SELECT pg_catalog.format('trigger %I on %I.%I', t.tgname, n.nspname, c.relname) AS what
     FROM pg_catalog.pg_trigger t
     JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
     UNION ALL
     SELECT pg_catalog.format('foreign key %I on %I.%I', k.conname, n.nspname, c.relname)
     FROM pg_catalog.pg_constraint k
     JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE k.contype = 'f'
     LIMIT 20`,
  );
  return res.rows.map((r) => r.what);
}

/** Among `tables` (those to load), the ones COPY FROM would refuse because a policy applies to the role. */
export async function rowSecurityLoadError(
  target: pg.Client,
  tables: readonly TableRef[],
  ledgerSchema: string,
): Promise<PgconvoyError | undefined> {
  const access = await readAccess(target, ledgerSchema);
  const loading = new Set(tables.map((t) => JSON.stringify([t.schema, t.name])));
  const refused = filteredTables(access).filter((t) => loading.has(JSON.stringify([t.schema, t.name])));
  if (refused.length === 0) return undefined;
  const names = refused.map((t) => `${displayName(t.schema, t.name)}${t.forced ? ' (FORCE)' : ''}`);
  return new PgconvoyError(
    `row-level security on the target applies to the role "${access.role.name}" on ${names.length} table(s), and COPY FROM refuses to load them: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}`,
    {
      code: 'ROW_SECURITY_FILTERS',
      exitCode: EXIT.target,
      hint: `nothing was copied; ${rowSecurityHint('target')}`,
      details: { tables: names },
    },
  );
}
