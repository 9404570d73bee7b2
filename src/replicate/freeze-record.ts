/**
 * The write freeze's record in the target's ledger (table online_freeze): what the source
 * database looked like before the freeze (who held CONNECT, its read-only default), which
 * grants pgconvoy made, and how far the freeze is proven. Rollback restores exactly this.
 */
import type pg from 'pg';
import { z } from 'zod';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { qualifiedName } from '../util/sql.js';

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
