/**
 * Where replication stands: how far the target is behind the source, in bytes and seconds,
 * how much WAL the slot makes the source keep, whether it streams, and whether the target
 * reports apply errors. And a wait for the target to catch up to a given source LSN.
 *
 * Columns that only some versions have (wal_status 13+, leader_pid 16+, worker_type 17+)
 * are read through to_jsonb(row) so that one query serves every version. Checked with
 * PostgreSQL 13, 15 and 17 as the source and 17 as the target.
 */
import type pg from 'pg';
import { PgconvoyError } from '../errors.js';
import { formatBytes } from '../util/format.js';
import { sleep } from '../util/wait.js';
import { DEFAULTS } from '../defaults.js';
import { serverMajor } from '../inventory/server-info.js';

export interface SlotStatus {
  name: string;
  /** A walsender is streaming from it (the subscription is connected). */
  active: boolean;
  activePid: number | null;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
  /** WAL the source must keep for this slot: pg_current_wal_lsn() − restart_lsn. */
  retainedWalBytes: number | null;
  /** 13+: reserved, extended, unreserved or lost (lost: the slot is useless, start again). */
  walStatus: string | null;
}

export interface SubscriptionStatus {
  name: string;
  enabled: boolean;
  /** The apply worker's process on the target; null when it is not running. */
  workerPid: number | null;
  receivedLsn: string | null;
  latestEndLsn: string | null;
  lastMessageReceiptTime: Date | null;
  latestEndTime: Date | null;
  /** 15+ (pg_stat_subscription_stats): errors while applying changes; undefined before 15. */
  applyErrorCount: number | undefined;
  syncErrorCount: number | undefined;
}

export interface ReplicationStatus {
  /** pg_current_wal_lsn() on the source. */
  sourceLsn: string;
  slot: SlotStatus | undefined;
  subscription: SubscriptionStatus | undefined;
  /** Source WAL not yet applied and confirmed by the target: pg_current_wal_lsn() − confirmed_flush_lsn. */
  lagBytes: number | undefined;
  /** Source WAL the target has not yet reported receiving: pg_current_wal_lsn() − latest_end_lsn. */
  receiveLagBytes: number | undefined;
  /** pg_stat_replication.replay_lag of the slot's walsender; 0 when nothing is outstanding. */
  lagSeconds: number | undefined;
  /** now() − last_msg_receipt_time on the target. */
  secondsSinceLastMessage: number | undefined;
  /** Why error messages are not shown. */
  errorsNote: string;
}

export interface StatusNames {
  /** The slot on the publishing side. */
  slot: string;
  /** The subscription on the subscribing side. */
  subscription: string;
}

export const ERRORS_NOTE =
  "PostgreSQL keeps only error counts over SQL (pg_stat_subscription_stats, 15+); the error messages are in the subscribing server's log, which pgconvoy cannot read";

const SUBSCRIPTION_SQL = (withStats: boolean) => `
SELECT s.subenabled AS enabled,
       w.pid,
       w.received_lsn::text AS received_lsn,
       w.latest_end_lsn::text AS latest_end_lsn,
       w.last_msg_receipt_time,
       w.latest_end_time,
       EXTRACT(EPOCH FROM pg_catalog.now() - w.last_msg_receipt_time)::float8 AS since_last_message,
       ${withStats ? 'st.apply_error_count, st.sync_error_count' : 'NULL::int8 AS apply_error_count, NULL::int8 AS sync_error_count'}
FROM pg_catalog.pg_subscription s
LEFT JOIN LATERAL (
  SELECT w.*
  FROM pg_catalog.pg_stat_subscription w
  WHERE w.subid = s.oid AND w.relid IS NULL
    AND (pg_catalog.to_jsonb(w.*) ->> 'leader_pid') IS NULL
    AND coalesce(pg_catalog.to_jsonb(w.*) ->> 'worker_type', 'apply') = 'apply'
  ORDER BY w.pid NULLS LAST
  LIMIT 1) w ON true
${withStats ? 'LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid' : ''}
WHERE s.subname = $1
  AND s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())`;

const SLOT_SQL = `
SELECT pg_catalog.pg_current_wal_lsn()::text AS current_lsn,
       s.slot_name IS NOT NULL AS found,
       s.active,
       s.active_pid,
       s.restart_lsn::text AS restart_lsn,
       s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::int8 AS retained,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8 AS lag,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), $2::text::pg_lsn)::int8 AS receive_lag,
       pg_catalog.to_jsonb(s.*) ->> 'wal_status' AS wal_status,
       (SELECT EXTRACT(EPOCH FROM r.replay_lag)::float8
        FROM pg_catalog.pg_stat_replication r WHERE r.pid = s.active_pid) AS replay_lag
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1`;

interface SubscriptionRow {
  enabled: boolean;
  pid: number | null;
  received_lsn: string | null;
  latest_end_lsn: string | null;
  last_msg_receipt_time: Date | null;
  latest_end_time: Date | null;
  since_last_message: number | null;
  apply_error_count: string | null;
  sync_error_count: string | null;
}

interface SlotRow {
  current_lsn: string;
  found: boolean;
  active: boolean | null;
  active_pid: number | null;
  restart_lsn: string | null;
  confirmed_flush_lsn: string | null;
  retained: string | null;
  lag: string | null;
  receive_lag: string | null;
  wal_status: string | null;
  replay_lag: number | null;
}

const num = (v: string | null): number | undefined => (v === null ? undefined : Number(v));

/**
 * Status of the replication from `publisher` (slot `names.slot`) to `subscriber`
 * (subscription `names.subscription`, in the subscriber's connected database). For
 * back-replication pass the target as publisher and the source as subscriber.
 */
export async function replicationStatus(
  publisher: pg.Client,
  subscriber: pg.Client,
  names: StatusNames,
): Promise<ReplicationStatus> {
  // The subscriber first: its positions are then never ahead of the source's current LSN.
  const withStats = (await serverMajor(subscriber)) >= 15;
  const subRes = await subscriber.query<SubscriptionRow>(SUBSCRIPTION_SQL(withStats), [names.subscription]);
  const sub = subRes.rows[0];
  const slotRes = await publisher.query<SlotRow>(SLOT_SQL, [names.slot, sub?.latest_end_lsn ?? null]);
  const slot = slotRes.rows[0];
  if (!slot) throw new Error('the slot status query returned no row');
  const lagBytes = slot.found ? num(slot.lag) : undefined;
  return {
    sourceLsn: slot.current_lsn,
    slot: slot.found
      ? {
          name: names.slot,
          active: slot.active ?? false,
          activePid: slot.active_pid,
          restartLsn: slot.restart_lsn,
          confirmedFlushLsn: slot.confirmed_flush_lsn,
          retainedWalBytes: num(slot.retained) ?? null,
          walStatus: slot.wal_status,
        }
      : undefined,
    subscription: sub
      ? {
          name: names.subscription,
          enabled: sub.enabled,
          workerPid: sub.pid,
          receivedLsn: sub.received_lsn,
          latestEndLsn: sub.latest_end_lsn,
          lastMessageReceiptTime: sub.last_msg_receipt_time,
          latestEndTime: sub.latest_end_time,
          applyErrorCount: num(sub.apply_error_count),
          syncErrorCount: num(sub.sync_error_count),
        }
      : undefined,
    lagBytes,
    receiveLagBytes: sub ? num(slot.receive_lag) : undefined,
    lagSeconds: slot.replay_lag ?? (lagBytes !== undefined && lagBytes <= 0 ? 0 : undefined),
    secondsSinceLastMessage: sub?.since_last_message ?? undefined,
    errorsNote: ERRORS_NOTE,
  };
}

export interface CatchUpOptions {
  /** Default 5 minutes. */
  timeoutMs?: number;
  /** Default 200 ms. */
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * Waits until the subscriber has applied and confirmed everything up to `targetLsn` on the
 * publisher (the slot's confirmed_flush_lsn has reached it). Pass the source's
 * pg_current_wal_lsn() taken after writes stopped; undefined takes it now. Returns the
 * status at that moment; throws CATCHUP_TIMEOUT with the last status when time runs out.
 */
export async function waitForCatchUp(
  publisher: pg.Client,
  subscriber: pg.Client,
  names: StatusNames,
  targetLsn: string | undefined,
  options: CatchUpOptions = {},
): Promise<ReplicationStatus> {
  let goal = targetLsn;
  if (goal === undefined) {
    const res = await publisher.query<{ lsn: string }>('SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn');
    goal = res.rows[0]?.lsn ?? '0/0';
  }
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULTS.catchUpTimeoutMs);
  for (;;) {
    options.signal?.throwIfAborted();
    const res = await publisher.query<{ reached: boolean | null }>(
      `SELECT pg_catalog.pg_wal_lsn_diff(s.confirmed_flush_lsn, $2::text::pg_lsn) >= 0 AS reached
       FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1`,
      [names.slot, goal],
    );
    const reached = res.rows[0]?.reached;
    if (res.rows.length === 0) {
      throw new PgconvoyError(`replication slot "${names.slot}" does not exist`, {
        code: 'NO_SLOT',
        hint: 'replication was torn down or never started',
      });
    }
    if (reached) return replicationStatus(publisher, subscriber, names);
    if (Date.now() > deadline) {
      const status = await replicationStatus(publisher, subscriber, names);
      const sub = status.subscription;
      const why = !sub
        ? `subscription "${names.subscription}" does not exist`
        : !sub.enabled
          ? `subscription "${names.subscription}" is disabled`
          : sub.workerPid === null
            ? `the apply worker of "${names.subscription}" is not running (apply errors: ${sub.applyErrorCount ?? 'unknown before 15'})`
            : `still ${formatBytes(status.lagBytes ?? 0)} behind`;
      throw new PgconvoyError(`the target did not catch up to ${goal} in time: ${why}`, {
        code: 'CATCHUP_TIMEOUT',
        hint: `look at the subscribing server's log for apply errors; ${ERRORS_NOTE}`,
        details: { status },
      });
    }
    await sleep(options.pollMs ?? DEFAULTS.catchUpPollMs);
  }
}
