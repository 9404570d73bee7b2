/**
 * `pgconvoy start-back`: before cutover, prepares back-replication (target → source) so that
 * a rollback after cutover loses no write made on the target. See back-replication.ts for
 * why the slot and the subscription are only made AT cutover. What is asked for is kept in
 * the target's ledger; a `--target-from-source` conninfo is kept without its password (the
 * password of --target is used again at cutover).
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import { formatConninfo, parseConninfo } from '../connect/conninfo.js';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { PgconvoyError } from '../errors.js';
import { lockMigration, requireOnlineState, updateOnlineState } from '../replicate/online-state.js';
import { exposedPasswordWarning } from '../util/quiet-logging.js';
import { prepareBackReplication } from './back-replication.js';

export interface StartBackOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  /** How the SOURCE server reaches the target, when not as `target` says (libpq string). */
  targetFromSource: string | undefined;
}

export interface StartBackResult {
  publication: string;
  tables: number;
  /** start-back had run before; the publication was brought up to date. */
  again: boolean;
  warnings: string[];
}

export async function runStartBack(o: StartBackOptions): Promise<StartBackResult> {
  const src = await openClient(o.source, { applicationName: 'pgconvoy start-back' });
  try {
    const tgt = await openClient(o.target, { applicationName: 'pgconvoy start-back' });
    try {
      await lockMigration(tgt, o.ledgerSchema, 'start-back');
      const state = await requireOnlineState(tgt, o.ledgerSchema, o.target);
      if (state.phase !== 'replicating') {
        throw new PgconvoyError(
          `start-back needs phase "replicating", and the migration is in "${state.phase}"`,
          {
            code: 'ONLINE_PHASE',
            hint:
              state.phase === 'copying'
                ? 'wait until pgconvoy start has finished'
                : 'back-replication must be prepared before cutover',
          },
        );
      }
      const override = o.targetFromSource ?? state.back?.targetFromSource;
      const { published, loggedBy } = await prepareBackReplication(
        src,
        tgt,
        o.target,
        state.names,
        state.published,
        override,
      );
      await updateOnlineState(tgt, o.ledgerSchema, {
        back: {
          targetFromSource: override === undefined ? undefined : formatConninfo(parseConninfo(override)),
          preparedAt: new Date().toISOString(),
          createdAt: undefined,
          originNone: undefined,
        },
      });
      return {
        publication: state.names.backPublication,
        tables: published,
        again: state.back !== null,
        warnings: loggedBy ? [exposedPasswordWarning('source', loggedBy)] : [],
      };
    } finally {
      await tgt.end().catch(() => undefined);
    }
  } finally {
    await src.end().catch(() => undefined);
  }
}
