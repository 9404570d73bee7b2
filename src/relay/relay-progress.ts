/**
 * The relay's position in the ledger (table `relay_progress`, ledger migration 4): the end
 * LSN of the last source transaction committed on the target, written in the same target
 * transaction as that transaction's rows. It is the only position the relay trusts on a
 * restart and the one cutover waits for; the slot's confirmed_flush_lsn only trails it.
 *
 * Checked with PostgreSQL 13, 15 and 17 as the target.
 */
import type pg from 'pg';
import { z } from 'zod';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { qualifiedName } from '../util/sql.js';

export interface RelayProgress {
  appliedLsn: string;
  appliedAt: Date;
  /** Rows written, transactions applied, since start. */
  changes: number;
  transactions: number;
  /** The relay process that last wrote, and when it last said it was alive. */
  host: string | null;
  pid: number | null;
  heartbeatAt: Date | null;
  /** Why the last relay stopped (null while it runs, or when it was killed). */
  stopped: string | null;
}

const table = (schema: string) => qualifiedName(schema, 'relay_progress');

// The ledger is input: whoever can write the target may have put anything there.
const progressRow = z.object({
  applied_lsn: z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i),
  applied_at: z.date(),
  changes: z.string().regex(/^\d{1,20}$/),
  transactions: z.string().regex(/^\d{1,20}$/),
  host: z.string().nullable(),
  pid: z.number().int().nullable(),
  heartbeat_at: z.date().nullable(),
  stopped: z.string().nullable(),
});

export async function readRelayProgress(
  client: pg.Client,
  schema: string,
): Promise<RelayProgress | undefined> {
  const exists = await client.query<{ ok: boolean }>(
    `SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, 'relay_progress')) IS NOT NULL AS ok`,
    [schema],
  );
  if (!exists.rows[0]?.ok) return undefined;
  const res = await client.query(
    `SELECT applied_lsn, applied_at, changes::text, transactions::text, host, pid, heartbeat_at, stopped
     FROM ${table(schema)} WHERE id = 1`,
  );
  if (res.rows.length === 0) return undefined;
  const parsed = progressRow.safeParse(res.rows[0]);
  if (!parsed.success)
    throw new PgconvoyError(`the ledger's relay position is damaged: ${parsed.error.issues[0]?.message}`, {
      code: 'LEDGER_DAMAGED',
      exitCode: EXIT.target,
      hint: `inspect ${table(schema)} on the target; pgconvoy will not act on it`,
    });
  const r = parsed.data;
  return {
    appliedLsn: r.applied_lsn,
    appliedAt: r.applied_at,
    changes: Number(r.changes),
    transactions: Number(r.transactions),
    host: r.host,
    pid: r.pid,
    heartbeatAt: r.heartbeat_at,
    stopped: r.stopped,
  };
}

/** The first position: the slot's consistent point (the initial copy holds everything before it). */
export async function beginRelayProgress(client: pg.Client, schema: string, startLsn: string): Promise<void> {
  await client.query(
    `INSERT INTO ${table(schema)} (id, applied_lsn) VALUES (1, $1)
     ON CONFLICT (id) DO UPDATE SET applied_lsn = EXCLUDED.applied_lsn, applied_at = pg_catalog.now(),
       changes = 0, transactions = 0, host = NULL, pid = NULL, heartbeat_at = NULL, stopped = NULL`,
    [startLsn],
  );
}

/** Written inside each group's target transaction: $1 LSN, $2 changes, $3 transactions. */
export const advanceSql = (schema: string) =>
  `UPDATE ${table(schema)} SET applied_lsn = $1, applied_at = pg_catalog.now(), heartbeat_at = pg_catalog.now(),
     changes = changes + $2, transactions = transactions + $3
   WHERE id = 1 AND pg_catalog.pg_lsn(applied_lsn) <= $1::pg_lsn`;

export async function markRelayRunning(
  client: pg.Client,
  schema: string,
  host: string,
  pid: number,
): Promise<void> {
  await client.query(
    `UPDATE ${table(schema)} SET host = $1, pid = $2, heartbeat_at = pg_catalog.now(), stopped = NULL WHERE id = 1`,
    [host, pid],
  );
}

export async function markRelayStopped(client: pg.Client, schema: string, why: string): Promise<void> {
  await client.query(
    `UPDATE ${table(schema)} SET stopped = $1, heartbeat_at = pg_catalog.now() WHERE id = 1`,
    [why.slice(0, 2000)],
  );
}
