/**
 * `pgconvoy rollback`: back to the source.
 *
 * After a finished cutover (phase done): the application must have stopped writing to the
 * target. Back-replication is allowed to catch up and then removed, sequences, large
 * objects and the tables replication does not carry are copied from the target to the source, and the
 * source database is opened again exactly as it was before the freeze (CONNECT and its
 * read-only default, read from the target's ledger). Phase rolled-back.
 * Without back-replication (start-back was not run) writes made on the target since
 * cutover would be lost: refused unless `force`.
 *
 * After a cutover that stopped midway (phase cutover): the source still has every row and
 * the target was never used, so only the database is opened again; when forward replication is
 * still in place the phase returns to replicating, and cutover can be tried again.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import { openClient } from '../connect/open-client.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import {
  lockMigration,
  migrationScope,
  readOnlineState,
  updateOnlineState,
  type OnlinePhase,
} from '../replicate/online-state.js';
import { readSubscription } from '../replicate/subscription.js';
import { dropBackReplication, waitForBackCatchUp } from './back-replication.js';
import { copyWholeTables, unpublishedTables, type CopiedTable } from './copy-tables.js';
import { replaceLargeObjects } from './large-objects.js';
import { copySequenceValues, type SequenceValue } from './sequences.js';
import { releaseFreeze } from './write-freeze.js';

export interface RollbackOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  sequenceMargin: number;
  /** For back-replication to catch up. */
  timeoutMs: number;
  /** Roll back a finished cutover that had no back-replication (target writes are lost). */
  force: boolean;
  onEvent: (e: { type: 'info' | 'warning'; message: string }) => void;
}

export interface RollbackResult {
  from: OnlinePhase;
  phase: OnlinePhase;
  removed: string[];
  sequences: SequenceValue[];
  largeObjects: { count: number; bytes: number };
  copiedTables: CopiedTable[];
  /** Grantees given CONNECT on the source database back. */
  reopened: string[];
  seconds: number;
}

export async function runRollback(o: RollbackOptions): Promise<RollbackResult> {
  const started = Date.now();
  const src = await openClient(o.source, { applicationName: 'pgconvoy rollback' });
  try {
    const tgt = await openClient(o.target, { applicationName: 'pgconvoy rollback' });
    try {
      await lockMigration(tgt, o.ledgerSchema, 'rollback');
      const state = await readOnlineState(tgt, o.ledgerSchema);
      if (!state) {
        throw new PgconvoyError(
          `no online migration into ${describeConnection(o.target)}: nothing to roll back`,
          {
            code: 'NO_ONLINE_MIGRATION',
            hint: 'check --target (the state lives in its ledger)',
          },
        );
      }
      const result: RollbackResult = {
        from: state.phase,
        phase: state.phase,
        removed: [],
        sequences: [],
        largeObjects: { count: 0, bytes: 0 },
        copiedTables: [],
        reopened: [],
        seconds: 0,
      };
      if (state.phase === 'copying' || state.phase === 'replicating') {
        throw new PgconvoyError(
          `the online migration is in phase "${state.phase}": cutover has not run, nothing to roll back`,
          {
            code: 'NOTHING_TO_ROLL_BACK',
            hint: 'to abandon the migration, run pgconvoy teardown (the source was never changed)',
          },
        );
      }
      if (state.phase === 'cutover') {
        result.reopened = await releaseFreeze(src, tgt, o.ledgerSchema);
        const forward = await readSubscription(tgt, state.names.subscription);
        result.phase = forward ? 'replicating' : 'rolled-back';
        await updateOnlineState(tgt, o.ledgerSchema, {
          phase: result.phase,
          from: ['cutover'],
          cutoverLsn: null,
        });
        o.onEvent({
          type: 'info',
          message: forward
            ? 'the cutover had not finished: the source database is open again, forward replication goes on (run cutover again when ready)'
            : 'the cutover had not finished but forward replication is gone: the source database is open again',
        });
      } else if (state.phase === 'done') {
        const lossHint =
          'run rollback with --force to open the source database again anyway (sequences, large objects and tables without a primary key are still copied back; rows of replicated tables written on the target since cutover are lost)';
        if (!state.back?.createdAt && !o.force) {
          throw new PgconvoyError(
            'no back-replication was set up: writes made on the target since cutover are not on the source',
            { code: 'NO_BACK_REPLICATION', exitCode: EXIT.blocked, hint: lossHint },
          );
        }
        // The catalogs, not the ledger, say whether the source has the target's writes: a
        // back-replication that was torn down since proves nothing. An earlier rollback run
        // that got past the catch-up recorded it before dropping back-replication.
        const caughtUp =
          typeof state.detail.backCaughtUpAt === 'string' ||
          (state.back?.createdAt !== undefined &&
            (await waitForBackCatchUp(src, tgt, state.names, o.timeoutMs)));
        if (!caughtUp && !o.force) {
          throw new PgconvoyError(
            `back-replication (subscription "${state.names.backSubscription}" on the source) is gone: nothing proves that the source has the writes made on the target since cutover`,
            { code: 'BACK_REPLICATION_GONE', exitCode: EXIT.blocked, hint: lossHint },
          );
        }
        if (!caughtUp)
          o.onEvent({
            type: 'warning',
            message:
              'rolling back without back-replication (--force): rows of replicated tables written on the target since cutover are not on the source',
          });
        else
          await updateOnlineState(tgt, o.ledgerSchema, {
            detail: { backCaughtUpAt: new Date().toISOString() },
          });
        // Everything that can still fail runs before back-replication is dropped.
        const scope = migrationScope(state, o.ledgerSchema);
        result.sequences = await copySequenceValues(tgt, src, o.ledgerSchema, o.sequenceMargin, scope);
        result.largeObjects = await replaceLargeObjects(tgt, src);
        const tables = await unpublishedTables(src, state.published, scope);
        result.copiedTables = await copyWholeTables(o.target, o.source, tables, 'pgconvoy rollback copy');
        result.removed = await dropBackReplication(src, tgt, state.names);
        result.reopened = await releaseFreeze(src, tgt, o.ledgerSchema);
        result.phase = 'rolled-back';
        await updateOnlineState(tgt, o.ledgerSchema, { phase: 'rolled-back', from: ['done'] });
      } else {
        result.reopened = await releaseFreeze(src, tgt, o.ledgerSchema);
        o.onEvent({ type: 'info', message: 'already rolled back' });
      }
      result.seconds = (Date.now() - started) / 1000;
      return result;
    } finally {
      await tgt.end().catch(() => undefined);
    }
  } finally {
    await src.end().catch(() => undefined);
  }
}
