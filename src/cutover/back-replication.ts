/**
 * Back-replication (target → source), the way back after cutover: writes the application
 * makes on the target reach the old source, so `rollback` loses none of them.
 *
 * When things are made, and why:
 *  - `start-back` (before cutover) makes the publication on the target (the tables the
 *    forward publication carries) and proves that the SOURCE server can connect to the
 *    target and may create a subscription (a test subscription rolled back). No slot yet:
 *    a slot made now would collect every change forward replication applies on the target
 *    and send it back to the source, which has it already.
 *  - `cutover` makes the slot on the target and the subscription on the source (create_slot
 *    = false, copy_data = false) only after forward replication is dropped and before the
 *    application is pointed at the target: the slot starts at a point where the target
 *    equals the source, so nothing from before cutover is replayed back, and everything
 *    after is.
 *  - On a 16+ source the subscription also says `origin = none` (apply only changes made
 *    on the target itself). Before 16 that option does not exist; it is not needed either:
 *    forward replication is gone before back-replication starts, so a change applied on the
 *    source by the back subscription is published nowhere and cannot loop.
 *  - `rollback` waits until the source has applied everything the target wrote, then drops
 *    the subscription, the slot and the publication.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import type { ReplicationNames } from '../replicate/names.js';
import { createPublication, dropPublication } from '../replicate/publication.js';
import { withoutStatementLogging } from '../util/quiet-logging.js';
import { probeSourceFromTarget } from '../replicate/reachability.js';
import { dropSlot } from '../replicate/slot.js';
import { waitForCatchUp } from '../replicate/status.js';
import {
  dropSubscription,
  readSubscription,
  scrubPassword,
  subscriptionConninfo,
} from '../replicate/subscription.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';

/** Publication on the target, plus proof that the source can subscribe to it. */
export async function prepareBackReplication(
  source: pg.Client,
  target: pg.Client,
  targetSpec: ConnectionSpec,
  names: ReplicationNames,
  tables: TableRef[],
  targetFromSource: string | undefined,
): Promise<{ published: number; loggedBy?: string[] }> {
  const probe = await probeSourceFromTarget(source, subscriptionConninfo(targetSpec, targetFromSource));
  if (probe.status !== 'reached') {
    throw new PgconvoyError(
      `back-replication cannot work: the source server could not subscribe to the target: ${probe.message}`,
      {
        code: probe.status === 'denied' ? 'BACK_SUBSCRIPTION_DENIED' : 'TARGET_UNREACHABLE_FROM_SOURCE',
        exitCode: EXIT.blocked,
        hint:
          probe.status === 'denied'
            ? 'the source role must be superuser (or, on 16+, a member of pg_create_subscription with CREATE on the database)'
            : "the SOURCE server connects to the target itself: check the network path, the target's pg_hba.conf for the source's address, and the target role's REPLICATION right; if the source sees the target under another address, pass it with --target-from-source",
      },
    );
  }
  const pub = await createPublication(target, names.backPublication, tables);
  return probe.loggedBy
    ? { published: pub.published.length, loggedBy: probe.loggedBy }
    : { published: pub.published.length };
}

/** Slot on the target, subscription on the source, enabled. Idempotent. */
export async function createBackReplication(
  source: pg.Client,
  target: pg.Client,
  targetSpec: ConnectionSpec,
  names: ReplicationNames,
  targetFromSource: string | undefined,
  sourceMajor: number,
): Promise<{ originNone: boolean; loggedBy?: string[] }> {
  const slot = await target.query('SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [
    names.backSlot,
  ]);
  if ((slot.rowCount ?? 0) === 0) {
    await target.query("SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')", [
      names.backSlot,
    ]);
  }
  const originNone = sourceMajor >= 16;
  let loggedBy: string[] = [];
  if (!(await readSubscription(source, names.backSubscription))) {
    const conninfo = subscriptionConninfo(targetSpec, targetFromSource);
    try {
      const quiet = await withoutStatementLogging(source, () =>
        source.query(
          `CREATE SUBSCRIPTION ${quoteIdent(names.backSubscription)}
           CONNECTION ${quoteLiteral(conninfo)}
           PUBLICATION ${quoteIdent(names.backPublication)}
           WITH (create_slot = false, slot_name = ${quoteLiteral(names.backSlot)}, copy_data = false, enabled = false${originNone ? ', origin = none' : ''})`,
        ),
      );
      loggedBy = quiet.loggedAlways;
    } catch (err) {
      throw new PgconvoyError(
        `could not create the back-replication subscription "${names.backSubscription}" on the source: ${scrubPassword(err instanceof Error ? err.message : String(err), conninfo)}`,
        {
          code: 'BACK_SUBSCRIPTION_FAILED',
          exitCode: EXIT.source,
          hint: 'run pgconvoy start-back again to see what is missing; the cutover itself is complete (the target has every row), only the way back is not',
          cause: err,
        },
      );
    }
  }
  await source.query(`ALTER SUBSCRIPTION ${quoteIdent(names.backSubscription)} ENABLE`);
  return loggedBy.length ? { originNone, loggedBy } : { originNone };
}

/**
 * Waits until the source has applied everything written on the target. False when the
 * subscription or its slot is gone: then nothing proves the source has the target's writes.
 */
export async function waitForBackCatchUp(
  source: pg.Client,
  target: pg.Client,
  names: ReplicationNames,
  timeoutMs: number,
): Promise<boolean> {
  const back = { slot: names.backSlot, subscription: names.backSubscription };
  const sub = await readSubscription(source, names.backSubscription);
  const slot = await target.query('SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [
    names.backSlot,
  ]);
  if (!sub || (slot.rowCount ?? 0) === 0) return false;
  await waitForCatchUp(target, source, back, undefined, { timeoutMs });
  return true;
}

/** Drops the subscription, slot and publication of back-replication. Returns what it removed. */
export async function dropBackReplication(
  source: pg.Client,
  target: pg.Client,
  names: ReplicationNames,
): Promise<string[]> {
  const removed: string[] = [];
  if (await dropSubscription(source, names.backSubscription))
    removed.push(`subscription "${names.backSubscription}" on the source`);
  if (await dropSlot(target, names.backSlot)) removed.push(`slot "${names.backSlot}" on the target`);
  if (await dropPublication(target, names.backPublication))
    removed.push(`publication "${names.backPublication}" on the target`);
  return removed;
}
