/**
 * `pgconvoy cutover`: from "the target follows the source" to "the target is the database".
 *
 *   refuse when lag is high or the source's schema changed since start → freeze writes on
 *   the source (revoke logins, end sessions, prove it) → wait until the target applied up
 *   to the freeze point → sequences, large objects, tables replication does not carry → verify →
 *   ANALYZE → drop forward replication → create back-replication (if start-back asked
 *   for it) → phase done
 *
 * Writes stay blocked on the source from the first revoked login until the end: that
 * stretch is what the operator's application waits through, and it is printed. If anything
 * fails after the freeze, the phase stays "cutover", logins stay revoked and forward
 * replication stays in place: running cutover again resumes, `rollback` gives the logins
 * back instead.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import { formatConninfo } from '../connect/conninfo.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { PgconvoyError } from '../errors.js';
import { exposedPasswordWarning } from '../replicate/quiet-logging.js';
import { dropPublication } from '../replicate/publication.js';
import { dropSlot } from '../replicate/slot.js';
import { waitForCatchUp } from '../replicate/status.js';
import { dropSubscription, readSubscription } from '../replicate/subscription.js';
import { requireOnlineState, updateOnlineState } from '../online/state.js';
import { verifyDatabases } from '../verify/verify-databases.js';
import type { VerifyReport } from '../verify/types.js';
import { createBackReplication } from './back-replication.js';
import { analyzeStale } from './analyze-target.js';
import { replaceLargeObjects } from './large-objects.js';
import { copyWholeTables, unpublishedTables, type CopiedTable } from './copy-tables.js';
import { checkReady, mismatchError, verifyOk } from './cutover-checks.js';
import { copySequenceValues, type SequenceValue } from './sequences.js';
import { freezeWrites, type KeptRole } from './write-freeze.js';

export interface CutoverOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  /** Refuse when the target is further behind than this. */
  maxLagBytes: number;
  /** Each sequence is set this many increments past the source's value. */
  sequenceMargin: number;
  /** For catching up and for the write freeze, each. */
  timeoutMs: number;
  /** How long the source must stay quiet to count as frozen. */
  freezeCheckMs: number;
  /** Roles that keep LOGIN on the source (pgconvoy's own always does). */
  keepLogins: string[];
  /** Verify and ANALYZE workers. */
  jobs: number;
  /**
   * While writes are blocked: 'full' checksums every row, 'counts' compares exact row counts
   * (and checksums the tables copied at cutover), 'none' skips it.
   */
  verify: 'full' | 'counts' | 'none';
  /** How the SOURCE server reaches the target for back-replication (overrides start-back's). */
  targetFromSource: string | undefined;
  onEvent: (e: CutoverEvent) => void;
}

export type CutoverEvent =
  | { type: 'step'; step: string; state: 'start' | 'done'; ms?: number; detail?: string }
  | { type: 'info' | 'warning'; message: string };

export interface CutoverResult {
  resumed: boolean;
  freezeLsn: string;
  writesBlockedMs: number;
  revoked: string[];
  kept: KeptRole[];
  sessionsEnded: number;
  sequences: SequenceValue[];
  largeObjects: { count: number; bytes: number };
  copiedTables: CopiedTable[];
  verify: VerifyReport | undefined;
  backReplication: { originNone: boolean; loggedBy?: string[] } | undefined;
  /** What to point the application at: the target, without its password. */
  targetConninfo: string;
  steps: { step: string; ms: number }[];
  notes: string[];
}

export async function runCutover(o: CutoverOptions): Promise<CutoverResult> {
  const steps: CutoverResult['steps'] = [];
  const notes: string[] = [];
  const step = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    o.onEvent({ type: 'step', step: name, state: 'start' });
    const r = await work();
    steps.push({ step: name, ms: Date.now() - t });
    o.onEvent({ type: 'step', step: name, state: 'done', ms: Date.now() - t });
    return r;
  };
  const src = await openClient(o.source, { applicationName: 'pgconvoy cutover' });
  try {
    const tgt = await openClient(o.target, { applicationName: 'pgconvoy cutover' });
    try {
      const state = await requireOnlineState(tgt, o.ledgerSchema, o.target);
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
      const forward = await readSubscription(tgt, names.subscription);
      if (!resumed) {
        await step('checks', () => checkReady(o, src, tgt, state));
        await updateOnlineState(tgt, o.ledgerSchema, { phase: 'cutover' });
      } else {
        o.onEvent({ type: 'info', message: 'resuming a cutover that stopped midway' });
      }

      const ownPid =
        (await src.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0]?.pid ?? 0;
      const freeze = await step('write freeze', () =>
        freezeWritesOrStepBack(resumed, tgt, o.ledgerSchema, {
          source: src,
          target: tgt,
          ledgerSchema: o.ledgerSchema,
          slotName: names.slot,
          keepLogins: o.keepLogins,
          ownPids: [ownPid],
          intervalMs: o.freezeCheckMs,
          timeoutMs: o.timeoutMs,
          onInfo: (message) => o.onEvent({ type: 'info', message }),
        }),
      );
      notes.push(...freeze.notes);
      const earlier =
        typeof state.detail.freezeStartedAt === 'number' ? state.detail.freezeStartedAt : undefined;
      const frozenSince = resumed && earlier !== undefined ? earlier : freeze.startedAt;
      await updateOnlineState(tgt, o.ledgerSchema, {
        cutoverLsn: freeze.freezeLsn,
        detail: { freezeStartedAt: frozenSince, kept: freeze.kept },
      });
      o.onEvent({ type: 'info', message: `writes frozen on the source at ${freeze.freezeLsn}` });

      if (forward) {
        await step('catch up', () =>
          waitForCatchUp(src, tgt, names, freeze.freezeLsn, { timeoutMs: o.timeoutMs }),
        );
      } else {
        notes.push('forward replication was already dropped by the earlier cutover run');
      }
      const sequences = await step('sequences', () =>
        copySequenceValues(src, tgt, o.ledgerSchema, o.sequenceMargin),
      );
      const largeObjects = await step('large objects', () => replaceLargeObjects(src, tgt));
      const unpublished = await unpublishedTables(src, state.published);
      const copiedTables = await step('tables without replica identity', () =>
        copyWholeTables(o.source, o.target, unpublished, 'pgconvoy cutover copy'),
      );
      const copied = copiedTables.map((t) => t.table);
      let verify: VerifyReport | undefined;
      if (o.verify !== 'none') {
        verify = await step(o.verify === 'full' ? 'verify' : 'verify (row counts)', () =>
          verifyDatabases({
            source: o.source,
            target: o.target,
            jobs: o.jobs,
            maxDiffs: 20,
            ledgerSchema: o.ledgerSchema,
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
      await step('drop forward replication', async () => {
        await dropSubscription(tgt, names.subscription);
        await dropSlot(src, names.slot);
        await dropPublication(src, names.publication);
      });
      let backReplication: CutoverResult['backReplication'];
      if (state.back) {
        const back = state.back;
        const major = Math.floor(
          Number(
            (await src.query<{ v: string }>("SELECT pg_catalog.current_setting('server_version_num') AS v"))
              .rows[0]?.v ?? 0,
          ) / 10000,
        );
        backReplication = await step('back-replication', () =>
          createBackReplication(
            src,
            tgt,
            o.target,
            names,
            o.targetFromSource ?? back.targetFromSource,
            major,
          ),
        );
        if (backReplication.loggedBy)
          o.onEvent({ type: 'warning', message: exposedPasswordWarning('source', backReplication.loggedBy) });
        await updateOnlineState(tgt, o.ledgerSchema, {
          back: { ...back, createdAt: new Date().toISOString(), originNone: backReplication.originNone },
        });
      }
      const writesBlockedMs = Date.now() - frozenSince;
      await updateOnlineState(tgt, o.ledgerSchema, { phase: 'done', writesBlockedMs });
      return {
        resumed,
        freezeLsn: freeze.freezeLsn,
        writesBlockedMs,
        revoked: freeze.revoked,
        kept: freeze.kept,
        sessionsEnded: freeze.terminated,
        sequences,
        largeObjects,
        copiedTables,
        verify,
        backReplication,
        targetConninfo: formatConninfo(o.target.conninfo),
        steps,
        notes,
      };
    } finally {
      await tgt.end().catch(() => undefined);
    }
  } finally {
    await src.end().catch(() => undefined);
  }
}

/** A freeze that could not even revoke the logins changed nothing: back to "replicating". */
async function freezeWritesOrStepBack(
  resumed: boolean,
  tgt: pg.Client,
  ledgerSchema: string,
  options: Parameters<typeof freezeWrites>[0],
): ReturnType<typeof freezeWrites> {
  try {
    return await freezeWrites(options);
  } catch (err) {
    if (!resumed && err instanceof PgconvoyError && err.code === 'REVOKE_FAILED')
      await updateOnlineState(tgt, ledgerSchema, { phase: 'replicating' }).catch(() => undefined);
    throw err;
  }
}
