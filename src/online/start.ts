/**
 * `pgconvoy start`: the beginning of an online migration.
 *
 *   precheck → publication (tables with a primary key or replica identity) → slot with an
 *   exported snapshot → initial copy by the clone engine inside that snapshot (schema,
 *   parallel copy, indexes per table, foreign keys, …) → subscription on the existing slot
 *   (create_slot = false, copy_data = false), enabled → phase "replicating"
 *
 * The copy shows exactly the rows committed before the slot's consistent point and the slot
 * streams exactly the changes committed after it, so the target gets every change once.
 * Tables that cannot be published (no replica identity, unlogged) are copied now too, and
 * again at cutover. When the precheck blocks, `fallback: 'offline'` runs the offline clone
 * instead (as the logical-replication doc's tool falls back to pg_dump).
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { closeQuietly, inTransaction, READ_ONLY_SNAPSHOT, withClient } from '../connect/session.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { prepareTarget } from '../clone/prepare-target.js';
import { serverMajor } from '../inventory/server-info.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { runClone, type CloneOptions, type CloneSummary } from '../clone/run-clone.js';
import { ledgerExists } from '../ledger/ledger-schema.js';
import type { TableRef } from '../plan/chunk.js';
import { replicationNames, type ReplicationNames } from '../replicate/names.js';
import { runPrecheck, type PrecheckReport } from '../replicate/precheck.js';
import { tableDataIncluded, tableIncluded } from '../inventory/table-filter.js';
import { dropPublication } from '../replicate/publication.js';
import { createSlotWithSnapshot } from '../replicate/slot.js';
import { exposedPasswordWarning } from '../util/quiet-logging.js';
import {
  createSubscription,
  enableSubscription,
  readSubscription,
  subscriptionConninfo,
} from '../replicate/subscription.js';
import { qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';
import { schemaFingerprint } from '../schema/fingerprint.js';
import { resetInterruptedCopy } from './reset-copy.js';
import { publishTables } from './publish-tables.js';
import { beginRelayProgress } from '../relay/relay-progress.js';
import { excludedKey } from '../copy/table-columns.js';
import {
  readOnlineState,
  updateOnlineState,
  type OnlineState,
  type ReplicationVia,
} from '../replicate/online-state.js';

export interface StartOptions {
  /** The clone engine's options; `snapshot` is set by start. */
  clone: CloneOptions;
  /** How the TARGET server reaches the source, when not as `clone.source` says (libpq string). */
  sourceFromTarget: string | undefined;
  /** What to do when the precheck blocks: stop (exit 7), or copy offline. */
  fallback: 'none' | 'offline';
  /** How long creating the slot may wait for open transactions (default 10 minutes). */
  slotTimeoutMs?: number;
  /**
   * 'subscription' (default): a subscription on the target applies the changes. 'relay':
   * no subscription; the ledger gets the relay's first position and the caller runs the
   * relay (relay/run-relay.ts).
   */
  via?: ReplicationVia;
}

export interface StartResult {
  mode: 'online' | 'offline' | 'already-replicating';
  names: ReplicationNames;
  precheck: PrecheckReport | undefined;
  /** Tables in the publication. */
  published: TableRef[];
  /** Tables left out of it, copied again at cutover, with the reason. */
  copiedAtCutover: { table: TableRef; reason: string }[];
  clone: CloneSummary | undefined;
  /** Tables emptied because an earlier start stopped during its copy. */
  reset: TableRef[];
  startLsn: string | undefined;
  copySeconds: number | undefined;
  seconds: number;
  state: OnlineState | undefined;
}

const RESTART_HINT =
  'run pgconvoy teardown with the same --source and --target, then run pgconvoy start again: it empties the tables the interrupted copy filled and copies them again from a new snapshot';

/** Refuses what start cannot build on; resets an interrupted copy whose slot is gone. */
async function checkEarlierRuns(
  o: StartOptions,
  tgt: pg.Client,
  names: ReplicationNames,
  state: OnlineState | undefined,
): Promise<TableRef[]> {
  const schema = o.clone.ledgerSchema;
  if (!state) {
    if (!(await ledgerExists(tgt, schema))) return [];
    const jobs = await tgt.query(`SELECT 1 FROM ${qualifiedName(schema, 'jobs')} LIMIT 1`);
    if ((jobs.rowCount ?? 0) === 0) return [];
    throw new PgconvoyError(
      `the target ${describeConnection(o.clone.target)} already holds a pgconvoy clone (its ledger has copy jobs)`,
      {
        code: 'TARGET_HAS_CLONE',
        exitCode: EXIT.target,
        hint: `an online migration starts from an empty target: drop and recreate the target database (or DROP SCHEMA ${quoteIdent(schema)} CASCADE and empty its tables), then run start again`,
      },
    );
  }
  if (state.phase !== 'copying') {
    throw new PgconvoyError(
      `the online migration to this target is in phase "${state.phase}": nothing to start`,
      {
        code: 'ONLINE_PHASE',
        hint:
          state.phase === 'cutover'
            ? 'a cutover stopped midway: run pgconvoy cutover again to finish it, or pgconvoy rollback to give the source its logins back'
            : 'this migration is over; to migrate again, run pgconvoy teardown and start with an empty target database',
      },
    );
  }
  await withClient(
    o.clone.source,
    async (src) => {
      const slot = await src.query('SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [
        names.slot,
      ]);
      const sub = await readSubscription(tgt, names.subscription);
      if ((slot.rowCount ?? 0) > 0 || sub) {
        throw new PgconvoyError(
          `an earlier pgconvoy start stopped during its initial copy (started ${state.startedAt.toISOString()}); its snapshot is gone, so the copy cannot be resumed`,
          { code: 'START_INTERRUPTED', exitCode: EXIT.failed, hint: RESTART_HINT },
        );
      }
    },
    { applicationName: 'pgconvoy start' },
  );
  return resetInterruptedCopy(tgt, schema);
}

function blockedError(report: PrecheckReport): PgconvoyError {
  const failed = report.rows.filter((r) => r.status === 'fail');
  const list = failed.map((r) => `${r.side} ${r.check}: ${r.detail}`).join('; ');
  const hints = failed.map((r) => r.hint).filter((h): h is string => Boolean(h));
  return new PgconvoyError(`online migration is blocked: ${list}`, {
    code: 'PRECHECK_BLOCKED',
    exitCode: EXIT.blocked,
    hint: `${hints.join('; ')}${hints.length ? '; ' : ''}or run start with --fallback offline to copy offline instead (writes to the source during that copy are not carried over)`,
    details: { precheck: report },
  });
}

export async function startOnline(o: StartOptions): Promise<StartResult> {
  const started = Date.now();
  const schema = o.clone.ledgerSchema;
  const names = replicationNames(o.clone.source.database);
  const emit = (message: string) => o.clone.onEvent({ type: 'info', message });
  const base: StartResult = {
    mode: 'online',
    names,
    precheck: undefined,
    published: [],
    copiedAtCutover: [],
    clone: undefined,
    reset: [],
    startLsn: undefined,
    copySeconds: undefined,
    seconds: 0,
    state: undefined,
  };

  // Roles, tablespaces and the database itself (created as the source's), before anything else.
  const tgt = await withClient(
    o.clone.source,
    async (first) =>
      prepareTarget(o.clone, first, await serverMajor(first), 'pgconvoy start', o.clone.onEvent),
    { applicationName: 'pgconvoy start' },
  );
  try {
    const state = await readOnlineState(tgt, schema);
    if (state?.phase === 'replicating') {
      return { ...base, mode: 'already-replicating', published: state.published, state, seconds: 0 };
    }
    const reset = await checkEarlierRuns(o, tgt, names, state);
    if (reset.length > 0)
      emit(`emptied ${reset.length} table(s) the interrupted copy had filled; copying again`);

    const via = o.via ?? 'subscription';
    const precheck = await precheckOnline(o, via);
    if (!precheck.ok) {
      if (o.fallback !== 'offline') throw blockedError(precheck);
      emit('logical replication is not possible here; copying offline instead (--fallback offline)');
      const clone = await runClone({ ...o.clone, snapshot: undefined, targetPrepared: true });
      return { ...base, mode: 'offline', precheck, clone, reset, seconds: (Date.now() - started) / 1000 };
    }

    const pub = await publishTables(o.clone, tgt, names, via);
    await updateOnlineState(tgt, schema, { published: pub.published });
    emit(`publication "${names.publication}" on the source: ${pub.published.length} table(s)`);

    const { consistentPoint, clone, copySeconds } = await copyFromSlot(o, tgt, names);

    // pg_dump copied the source's publications with the schema, ours included: not wanted on the target.
    if (await dropPublication(tgt, names.publication))
      emit(`dropped the copy of publication "${names.publication}" that came with the schema`);
    await startReplication(o, tgt, names, via, consistentPoint);
    await updateOnlineState(tgt, schema, { phase: 'replicating', detail: { copySeconds } });
    emit(
      via === 'relay'
        ? `ready to relay the source's changes from ${consistentPoint}`
        : `subscription "${names.subscription}" enabled on the target: replicating from ${consistentPoint}`,
    );
    return {
      ...base,
      precheck,
      published: pub.published,
      copiedAtCutover: pub.skipped,
      clone,
      reset,
      startLsn: consistentPoint,
      copySeconds,
      seconds: (Date.now() - started) / 1000,
      state: await readOnlineState(tgt, schema),
    };
  } finally {
    await closeQuietly(tgt);
  }
}

/** pgconvoy precheck, for the tables whose rows the clone copies; its warnings as events. */
async function precheckOnline(o: StartOptions, via: 'subscription' | 'relay'): Promise<PrecheckReport> {
  const schema = o.clone.ledgerSchema;
  const filter = o.clone.filter;
  const precheck = await runPrecheck(o.clone.source, o.clone.target, {
    ledgerSchema: schema,
    via,
    ...(filter
      ? { includeTable: (t: TableRef) => tableIncluded(filter, t) && tableDataIncluded(filter, t) }
      : {}),
    leftOut: (t, column) => o.clone.excludeColumns.has(excludedKey(t, column)),
    ...(o.sourceFromTarget !== undefined ? { sourceFromTarget: o.sourceFromTarget } : {}),
  });
  // The collation warning was given when the target was prepared.
  for (const r of precheck.rows.filter((x) => x.status === 'warn' && x.id !== 'target.collation'))
    o.clone.onEvent({ type: 'warning', message: `precheck: ${r.side} ${r.check}: ${r.detail}` });
  return precheck;
}

/** The slot created with an exported snapshot, and the initial copy run inside that snapshot. */
async function copyFromSlot(o: StartOptions, tgt: pg.Client, names: ReplicationNames) {
  const schema = o.clone.ledgerSchema;
  const emit = (message: string) => o.clone.onEvent({ type: 'info', message });
  const slot = await createSlotWithSnapshot(o.clone.source, names.slot, {
    ...(o.slotTimeoutMs !== undefined ? { timeoutMs: o.slotTimeoutMs } : {}),
  });
  let clone: CloneSummary;
  const copyStarted = Date.now();
  try {
    emit(`replication slot "${names.slot}" at ${slot.consistentPoint}, snapshot ${slot.snapshotName}`);
    const fingerprint = await fingerprintInSnapshot(o.clone.source, slot.snapshotName, schema);
    await updateOnlineState(tgt, schema, {
      startLsn: slot.consistentPoint,
      schemaFingerprint: fingerprint,
    });
    clone = await runClone({
      ...o.clone,
      snapshot: slot.snapshotName,
      targetPrepared: true,
      existingRows: 'error',
      planOnly: false,
    });
  } finally {
    await slot.close();
  }
  const copySeconds = (Date.now() - copyStarted) / 1000;
  if (!clone.ok) {
    throw new PgconvoyError(
      `the initial copy did not finish: ${clone.failed.length} job(s) failed${clone.failed[0]?.error ? ` (first: ${clone.failed[0].error})` : ''}`,
      { code: 'COPY_INCOMPLETE', exitCode: EXIT.failed, hint: RESTART_HINT, details: { clone } },
    );
  }
  return { consistentPoint: slot.consistentPoint, clone, copySeconds };
}

/** What applies the source's changes from the slot's consistent point: the relay, or a subscription. */
async function startReplication(
  o: StartOptions,
  tgt: pg.Client,
  names: ReplicationNames,
  via: 'subscription' | 'relay',
  consistentPoint: string,
): Promise<void> {
  if (via === 'relay') {
    // The relay starts from the slot's consistent point: the copy holds everything before it.
    await beginRelayProgress(tgt, o.clone.ledgerSchema, consistentPoint);
  } else {
    const subscription = await createSubscription(tgt, {
      name: names.subscription,
      sourceConninfo: subscriptionConninfo(o.clone.source, o.sourceFromTarget),
      publication: names.publication,
      slotName: names.slot,
    });
    if (subscription.loggedBy)
      o.clone.onEvent({
        type: 'warning',
        message: exposedPasswordWarning('target', subscription.loggedBy),
      });
    await enableSubscription(tgt, names.subscription);
  }
}

/** The source's table shapes as the copy's snapshot sees them. */
async function fingerprintInSnapshot(source: ConnectionSpec, snapshot: string, ledgerSchema: string) {
  return withClient(
    source,
    (client) =>
      inTransaction(
        client,
        async () => {
          await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
          return schemaFingerprint(client, ledgerSchema);
        },
        READ_ONLY_SNAPSHOT,
      ),
    { applicationName: 'pgconvoy start' },
  );
}
