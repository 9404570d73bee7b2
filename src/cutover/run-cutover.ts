/**
 * `pgconvoy cutover`: from "the target follows the source" to "the target is the database".
 *
 *   refuse when lag is high or the source's schema changed since start → freeze writes in
 *   the source database (read-only for new sessions, CONNECT revoked, sessions ended,
 *   proven) → wait until the target applied up to the freeze point → sequences, large
 *   objects, tables replication does not carry → verify → ANALYZE → confirm that nothing
 *   was written since the proof → drop forward replication → create back-replication (if
 *   start-back asked for it) → phase done
 *
 * Writes stay blocked in the source database from the moment the gate closes: that
 * stretch is what the operator's application waits through, and it is printed. If anything
 * fails after the freeze, the phase stays "cutover", the database stays frozen and forward
 * replication stays in place: running cutover again freezes and proves again, then
 * resumes; `rollback` opens the source database again instead.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { withClients } from '../connect/session.js';
import { StepTimer } from '../util/step-timer.js';
import { formatConninfo } from '../connect/conninfo.js';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { exposedPasswordWarning } from '../util/quiet-logging.js';
import { dropPublication } from '../replicate/publication.js';
import { dropSlot } from '../replicate/slot.js';
import { waitForCatchUp } from '../replicate/status.js';
import { dropSubscription, readSubscription } from '../replicate/subscription.js';
import {
  lockMigration,
  migrationScope,
  requireOnlineState,
  updateOnlineState,
  type OnlineState,
} from '../replicate/online-state.js';
import { readFreeze } from '../replicate/freeze-record.js';
import { verifyDatabases } from '../verify/verify-databases.js';
import type { VerifyReport } from '../verify/types.js';
import { createBackReplication } from './back-replication.js';
import { analyzeStale } from '../finish/analyze.js';
import { copyLargeObjects } from '../finish/large-objects.js';
import { copyWholeTables, unpublishedTables, type CopiedTable } from './copy-tables.js';
import { checkReady, checkRelayReady, mismatchError, verifyOk } from './cutover-checks.js';
import { relayStatus, waitForRelayCatchUp } from '../relay/relay-status.js';
import { copySequenceValues, type SequenceValue } from '../finish/sequences.js';
import { refreshTargetMatviews, type RefreshedViews } from './refresh-matviews.js';
import { confirmFreeze, freezeWrites, type KeptRole } from './write-freeze.js';
import type { CutoverOptions } from './cutover-types.js';
import { serverMajor } from '../inventory/server-info.js';

export type { CutoverEvent, CutoverOptions } from './cutover-types.js';

export interface CutoverResult {
  resumed: boolean;
  freezeLsn: string;
  writesBlockedMs: number;
  /** The source database that was frozen. */
  database: string;
  /** Grantees (roles, or PUBLIC) that lost CONNECT on it in this run. */
  revokedConnect: string[];
  kept: KeptRole[];
  sessionsEnded: number;
  sequences: SequenceValue[];
  largeObjects: { count: number; bytes: number };
  copiedTables: CopiedTable[];
  /** Materialized views refreshed on the target (undefined: --no-refresh-matviews). */
  matviews: RefreshedViews | undefined;
  verify: VerifyReport | undefined;
  backReplication: { originNone: boolean; loggedBy?: string[] } | undefined;
  /** What to point the application at: the target, without its password. */
  targetConninfo: string;
  steps: { step: string; ms: number }[];
  notes: string[];
}

/** One cutover run: the two sessions, the ledger's state and the step timer. */
interface CutoverRun {
  o: CutoverOptions;
  src: pg.Client;
  tgt: pg.Client;
  state: OnlineState;
  relay: boolean;
  step: <T>(name: string, work: () => Promise<T>) => Promise<T>;
  notes: string[];
}

export async function runCutover(o: CutoverOptions): Promise<CutoverResult> {
  const timer = new StepTimer((e) => {
    if (e.state !== 'skipped')
      o.onEvent({ type: 'step', step: e.name, state: e.state, ...(e.ms === undefined ? {} : { ms: e.ms }) });
  });
  const step = <T>(name: string, work: () => Promise<T>): Promise<T> => timer.time(name, work);
  return withClients(
    o.source,
    o.target,
    async (src, tgt) => {
      await lockMigration(tgt, o.ledgerSchema, 'cutover');
      const state = await requireOnlineState(tgt, o.ledgerSchema, o.target);
      // Forward replication: the subscription, or for a relay the slot it streams.
      const run: CutoverRun = { o, src, tgt, state, relay: state.via === 'relay', step, notes: [] };
      const { resumed, forward } = await enterCutover(run);
      const frozen = await freezeSource(run, resumed, forward);
      await catchUp(run, forward, frozen.freeze.freezeLsn);
      const finished = await finishTarget(run);
      await step('confirm freeze', () => confirmFreeze(src, tgt, o.ledgerSchema, [frozen.ownPid]));
      await dropForward(run, forward);
      const backReplication = await startBackReplication(run);
      const writesBlockedMs = Date.now() - frozen.frozenSince;
      await updateOnlineState(tgt, o.ledgerSchema, { phase: 'done', from: ['cutover'], writesBlockedMs });
      const freeze = frozen.freeze;
      return {
        resumed,
        freezeLsn: freeze.freezeLsn,
        writesBlockedMs,
        database: freeze.database,
        revokedConnect: freeze.revoked,
        kept: freeze.kept,
        sessionsEnded: freeze.terminated,
        ...finished,
        backReplication,
        targetConninfo: formatConninfo(o.target.conninfo),
        steps: timer.times.map((t) => ({ step: t.name, ms: t.ms })),
        notes: run.notes,
      };
    },
    { applicationName: 'pgconvoy cutover' },
  );
}

/** The phase check and, on a first run, the readiness checks; phase "cutover". */
async function enterCutover({ o, src, tgt, state, relay, step }: CutoverRun) {
  if (state.phase !== 'replicating' && state.phase !== 'cutover') {
    throw new PgconvoyError(
      `the online migration is in phase "${state.phase}": cutover needs "replicating"`,
      {
        code: 'ONLINE_PHASE',
        hint:
          state.phase === 'copying'
            ? 'wait until pgconvoy start has finished its copy'
            : 'nothing to cut over',
      },
    );
  }
  const resumed = state.phase === 'cutover';
  const names = state.names;
  const forward = relay
    ? (await relayStatus(src, tgt, o.ledgerSchema, names.slot)).slotFound
    : await readSubscription(tgt, names.subscription);
  if (!resumed) {
    await step('checks', () =>
      relay ? checkRelayReady(o, src, tgt, state) : checkReady(o, src, tgt, state),
    );
    await updateOnlineState(tgt, o.ledgerSchema, { phase: 'cutover', from: ['replicating'] });
  } else {
    o.onEvent({ type: 'info', message: 'resuming a cutover that stopped midway' });
  }
  return { resumed, forward: Boolean(forward) };
}

/** Writes frozen in the source database and proven; an earlier run's proof compared. */
async function freezeSource(
  { o, src, tgt, state, relay, step, notes }: CutoverRun,
  resumed: boolean,
  forward: boolean,
) {
  const names = state.names;
  const ownPid =
    (await src.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0]?.pid ?? 0;
  // What an earlier run proved, read before this run clears it: a run that dropped
  // forward replication and died left this count as the last word on the source.
  const earlierProof = resumed ? (await readFreeze(tgt, o.ledgerSchema))?.provenWrites : undefined;
  if (!forward && !droppedAt(state))
    throw new PgconvoyError(
      `forward replication (${relay ? `slot "${names.slot}" of the relay` : `subscription "${names.subscription}"`}) is missing, and no cutover dropped it`,
      {
        code: 'FORWARD_MISSING',
        exitCode: EXIT.blocked,
        hint: 'changes the source committed after the target last applied may be missing on the target; pgconvoy rollback opens the source again, then teardown and start over',
      },
    );
  const freeze = await step('write freeze', () =>
    freezeWritesOrStepBack(resumed, tgt, o.ledgerSchema, {
      source: src,
      target: tgt,
      ledgerSchema: o.ledgerSchema,
      slotName: names.slot,
      keepConnect: o.keepConnect,
      ownPids: [ownPid],
      intervalMs: o.freezeCheckMs,
      timeoutMs: o.timeoutMs,
      onInfo: (message) => o.onEvent({ type: 'info', message }),
    }),
  );
  notes.push(...freeze.notes);
  if (!forward && earlierProof && earlierProof !== freeze.writes)
    throw new PgconvoyError(
      `rows were written in the source database after the earlier cutover run dropped forward replication (${earlierProof} → ${freeze.writes} rows written)`,
      {
        code: 'WRITES_AFTER_FREEZE',
        exitCode: EXIT.blocked,
        hint: 'they are not on the target; compare with pgconvoy verify and move them by hand, or pgconvoy rollback',
      },
    );
  const earlier = typeof state.detail.freezeStartedAt === 'number' ? state.detail.freezeStartedAt : undefined;
  const frozenSince = resumed && earlier !== undefined ? earlier : freeze.startedAt;
  await updateOnlineState(tgt, o.ledgerSchema, {
    cutoverLsn: freeze.freezeLsn,
    detail: { freezeStartedAt: frozenSince, kept: freeze.kept },
  });
  o.onEvent({ type: 'info', message: `writes frozen on the source at ${freeze.freezeLsn}` });
  return { freeze, frozenSince, ownPid };
}

/** When an earlier cutover run dropped forward replication (after its catch-up). */
function droppedAt(state: OnlineState): string | undefined {
  return typeof state.detail.forwardDroppedAt === 'string' ? state.detail.forwardDroppedAt : undefined;
}

/** The target applies up to the freeze point (unless an earlier run got there and dropped replication). */
async function catchUp(
  { o, src, tgt, state, relay, step, notes }: CutoverRun,
  forward: boolean,
  freezeLsn: string,
) {
  const names = state.names;
  if (forward && relay) {
    await step('catch up', () =>
      waitForRelayCatchUp(src, tgt, o.ledgerSchema, names.slot, freezeLsn, {
        timeoutMs: o.timeoutMs,
        onWarning: (message) => o.onEvent({ type: 'warning', message }),
      }),
    );
  } else if (forward) {
    await step('catch up', () => waitForCatchUp(src, tgt, names, freezeLsn, { timeoutMs: o.timeoutMs }));
  } else {
    notes.push(
      `forward replication was dropped by the earlier cutover run at ${droppedAt(state) ?? '?'}, after its catch-up`,
    );
  }
}

/** What replication does not carry (sequences, large objects, unpublished tables, matviews), verify, ANALYZE. */
async function finishTarget({ o, src, tgt, state, step, notes }: CutoverRun) {
  // The tables and columns start moved: the rest is left as it is on both sides.
  const scope = migrationScope(state, o.ledgerSchema);
  const sequences = await step('sequences', () =>
    copySequenceValues(src, tgt, o.ledgerSchema, o.sequenceMargin, scope),
  );
  const largeObjects = await step('large objects', () => copyLargeObjects(src, tgt, { replace: true }));
  const unpublished = await unpublishedTables(src, state.published, scope);
  const copiedTables = await step('tables without replica identity', () =>
    copyWholeTables(o.source, o.target, unpublished, 'pgconvoy cutover copy'),
  );
  const copied = copiedTables.map((t) => t.table);
  let matviews: RefreshedViews | undefined;
  if (o.refreshMatviews)
    matviews = await step('refresh materialized views', () => refreshTargetMatviews(tgt, o.ledgerSchema));
  let verify: VerifyReport | undefined;
  if (o.verify !== 'none') {
    verify = await step(o.verify === 'full' ? 'verify' : 'verify (row counts)', () =>
      verifyDatabases({
        source: o.source,
        target: o.target,
        jobs: o.jobs,
        maxDiffs: DEFAULTS.verifyMaxDiffs,
        ledgerSchema: o.ledgerSchema,
        filter: scope.filter,
        excludeColumns: scope.excludeColumns,
        contents: o.verify === 'full' ? 'checksums' : 'counts',
        checksumTables: copied,
      }),
    );
    if (!verifyOk(verify, o.sequenceMargin)) throw mismatchError(verify);
  }
  const analyzed = await step('analyze', () => analyzeStale(o.target, o.ledgerSchema, copied, o.jobs));
  if (analyzed.skipped > 0)
    notes.push(
      `ANALYZE: ${analyzed.analyzed} table(s) with stale statistics or copied at cutover; ${analyzed.skipped} left to autovacuum (their statistics are fresh)`,
    );
  return { sequences, largeObjects, copiedTables, matviews, verify };
}

async function dropForward({ o, src, tgt, state, step }: CutoverRun, forward: boolean): Promise<void> {
  const names = state.names;
  await step('drop forward replication', async () => {
    if (forward)
      await updateOnlineState(tgt, o.ledgerSchema, {
        detail: { forwardDroppedAt: new Date().toISOString() },
      });
    await dropSubscription(tgt, names.subscription);
    await dropSlot(src, names.slot);
    await dropPublication(src, names.publication);
  });
}

/** Back-replication (target → source) when start-back asked for it. */
async function startBackReplication({
  o,
  src,
  tgt,
  state,
  step,
}: CutoverRun): Promise<CutoverResult['backReplication']> {
  if (!state.back) return undefined;
  const back = state.back;
  const major = await serverMajor(src);
  const backReplication = await step('back-replication', () =>
    createBackReplication(
      src,
      tgt,
      o.target,
      state.names,
      o.targetFromSource ?? back.targetFromSource,
      major,
    ),
  );
  if (backReplication.loggedBy)
    o.onEvent({ type: 'warning', message: exposedPasswordWarning('source', backReplication.loggedBy) });
  await updateOnlineState(tgt, o.ledgerSchema, {
    back: { ...back, createdAt: new Date().toISOString(), originNone: backReplication.originNone },
  });
  return backReplication;
}

/** A freeze whose gate could not be closed was undone: back to "replicating". */
async function freezeWritesOrStepBack(
  resumed: boolean,
  tgt: pg.Client,
  ledgerSchema: string,
  options: Parameters<typeof freezeWrites>[0],
): ReturnType<typeof freezeWrites> {
  try {
    return await freezeWrites(options);
  } catch (err) {
    if (!resumed && err instanceof PgconvoyError && err.code === 'FREEZE_FAILED')
      await updateOnlineState(tgt, ledgerSchema, { phase: 'replicating', from: ['cutover'] }).catch(
        () => undefined,
      );
    throw err;
  }
}
