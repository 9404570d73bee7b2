/**
 * The logical replication slot on the source, created together with an exported snapshot:
 * the snapshot shows exactly the rows committed before the slot's consistent point, and
 * the slot streams exactly the changes committed after it. Copying the tables inside that
 * snapshot and then replaying the slot gives the target every change once: no gap, no
 * duplicate.
 *
 * Checked on PostgreSQL 13, 15 and 17 (the `EXPORT_SNAPSHOT` spelling is the one all
 * versions from 10 accept; 15+ also has `(SNAPSHOT 'export')`).
 */
import type pg from 'pg';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError, serverErrorFields } from '../errors.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly, withClient } from '../connect/session.js';
import { quoteIdent } from '../util/sql.js';
import { openReplicationClient } from './replication-client.js';
import { sleep } from '../util/wait.js';
import { SQLSTATE } from '../sqlstate.js';

export interface SlotWithSnapshot {
  slotName: string;
  /** The LSN from which the slot streams changes; the snapshot holds everything before it. */
  consistentPoint: string;
  /** For `SET TRANSACTION SNAPSHOT '...'` in a REPEATABLE READ transaction on the source. */
  snapshotName: string;
  /**
   * Closes the replication session, which ends the exported snapshot. Call it only after
   * every copy worker has imported the snapshot; the slot itself stays.
   */
  close(): Promise<void>;
}

export interface CreateSlotOptions {
  /**
   * A slot of that name that is left over and inactive is dropped and created anew. Its
   * changes are worthless without the copy made from its own snapshot, so the caller must
   * copy again from the new snapshot. Default false: a leftover slot is an error.
   */
  replaceInactive?: boolean;
  /**
   * How long to wait for the slot to become consistent: the source first waits for every
   * transaction that is open at that moment to end. Default 10 minutes.
   */
  timeoutMs?: number;
}

const SLOT_SQL = `
SELECT s.active, s.active_pid, s.database, s.plugin
FROM pg_catalog.pg_replication_slots s
WHERE s.slot_name = $1`; // 10+

/**
 * Creates logical replication slot `slotName` (plugin pgoutput) on the source and exports
 * a snapshot consistent with it.
 *
 * The snapshot is valid only while the returned session stays open AND idle: nothing else
 * may be sent on it (this module sends nothing). Each copy worker imports it with
 *
 *     BEGIN ISOLATION LEVEL REPEATABLE READ;
 *     SET TRANSACTION SNAPSHOT '<snapshotName>';
 *
 * and only after the last worker has done so may the caller `close()` it. A worker that
 * imports later gets "invalid snapshot identifier".
 */
export async function createSlotWithSnapshot(
  sourceSpec: ConnectionSpec,
  slotName: string,
  options: CreateSlotOptions = {},
): Promise<SlotWithSnapshot> {
  const where = describeConnection(sourceSpec);
  return withClient(
    sourceSpec,
    async (helper) => {
      const existing = await helper.query<{
        active: boolean;
        active_pid: number | null;
        database: string | null;
      }>(SLOT_SQL, [slotName]);
      const slot = existing.rows[0];
      if (slot && (slot.active || !options.replaceInactive)) {
        throw new PgconvoyError(
          `replication slot "${slotName}" already exists on the source ${where}${slot.active ? ` and is in use by process ${slot.active_pid ?? '?'}` : ''}`,
          {
            code: 'SLOT_EXISTS',
            hint: slot.active
              ? 'another pgconvoy run (or a subscription) is streaming from it; stop that first, or run pgconvoy teardown'
              : 'it is left over from an earlier run and holds WAL on the source: run pgconvoy teardown, then start again',
            exitCode: EXIT.source,
          },
        );
      }
      if (slot) await dropSlot(helper, slotName);

      const replication = await openReplicationClient(sourceSpec, 'pgconvoy slot');
      const timeoutMs = options.timeoutMs ?? DEFAULTS.slotCreateTimeoutMs;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        // The walsender waits for open transactions; cancel it from the ordinary session.
        helper
          .query('SELECT pg_catalog.pg_cancel_backend($1)', [replication.processID])
          .catch(() => undefined);
      }, timeoutMs);
      try {
        const res = await replication.query<{ consistent_point: string; snapshot_name: string }>(
          `CREATE_REPLICATION_SLOT ${quoteIdent(slotName)} LOGICAL pgoutput EXPORT_SNAPSHOT`,
        );
        const row = res.rows[0];
        if (!row) throw new Error('CREATE_REPLICATION_SLOT returned no row');
        return {
          slotName,
          consistentPoint: row.consistent_point,
          snapshotName: row.snapshot_name,
          close: async () => {
            await closeQuietly(replication);
          },
        };
      } catch (err) {
        await closeQuietly(replication);
        throw slotError(err, slotName, where, timedOut, timeoutMs);
      } finally {
        clearTimeout(timer);
      }
    },
    { applicationName: 'pgconvoy slot' },
  );
}

function slotError(
  err: unknown,
  slotName: string,
  where: string,
  timedOut: boolean,
  timeoutMs: number,
): PgconvoyError {
  const fields = serverErrorFields(err);
  if (timedOut) {
    return new PgconvoyError(
      `replication slot "${slotName}" did not become consistent within ${Math.round(timeoutMs / 1000)} s on the source ${where}`,
      {
        code: 'SLOT_TIMEOUT',
        hint: 'the source waits for every transaction open when the slot is created to end: look for long-running or prepared transactions (pgconvoy precheck lists them)',
        exitCode: EXIT.source,
        cause: err,
      },
    );
  }
  if (fields?.code === SQLSTATE.configurationLimitExceeded) {
    return new PgconvoyError(`the source ${where} has no free replication slot for "${slotName}"`, {
      code: 'NO_FREE_SLOT',
      hint: 'raise max_replication_slots on the source (needs a restart), or drop slots nobody uses',
      exitCode: EXIT.source,
      cause: err,
    });
  }
  return new PgconvoyError(
    `could not create replication slot "${slotName}" on the source ${where}: ${err instanceof Error ? err.message : String(err)}`,
    {
      code: 'SLOT_FAILED',
      hint: "check wal_level = logical and the role's REPLICATION right (pgconvoy precheck checks both)",
      exitCode: EXIT.source,
      cause: err,
    },
  );
}

/**
 * Drops replication slot `slotName` on the server `client` is connected to; a walsender
 * still streaming from it is terminated first. Returns false when there was no such slot.
 */
export async function dropSlot(
  client: pg.Client,
  slotName: string,
  timeoutMs: number = DEFAULTS.slotDropTimeoutMs,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await client.query<{ active_pid: number | null }>(SLOT_SQL, [slotName]);
    const slot = res.rows[0];
    if (!slot) return false;
    try {
      if (slot.active_pid !== null) {
        await client.query('SELECT pg_catalog.pg_terminate_backend($1)', [slot.active_pid]);
      } else {
        await client.query('SELECT pg_catalog.pg_drop_replication_slot($1)', [slotName]);
        return true;
      }
    } catch (err) {
      const code = serverErrorFields(err)?.code;
      if (code === SQLSTATE.undefinedObject) return false; // dropped by someone else meanwhile
      if (code !== SQLSTATE.objectInUse) throw err; // object in use: became active again; terminate and retry
    }
    if (Date.now() > deadline) {
      throw new PgconvoyError(`replication slot "${slotName}" stays in use; it could not be dropped`, {
        code: 'SLOT_BUSY',
        hint: `find the process with SELECT active_pid FROM pg_replication_slots WHERE slot_name = '${slotName}', stop it, and run pgconvoy teardown again`,
      });
    }
    await sleep(100);
  }
}
