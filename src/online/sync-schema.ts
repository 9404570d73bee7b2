/**
 * `pgconvoy sync-schema`: applies the source's additive schema changes to the target during
 * an online migration, so replication carries on and cutover can proceed.
 *
 *   drift (schema-drift.ts) → in ONE transaction on the target: new schemas, sequences,
 *   tables, columns (constant defaults), widened types, defaults, NOT NULL, constraints,
 *   views → new tables with a replica identity added to the publication on the source, and
 *   the subscription refreshed with copy_data = true (PostgreSQL's table synchronization
 *   copies each in a snapshot of its own and hands over to the apply worker at an exact
 *   position: no row lost, none twice) → new indexes built CONCURRENTLY, one by one
 *
 * New tables without a replica identity are not published: cutover copies them whole, as
 * it does the others. Destructive or ambiguous changes are listed with their statements
 * and never applied. A failing statement rolls the whole transaction back: nothing is half
 * applied, and the run can be repeated once the cause is fixed.
 *
 * Checked with PostgreSQL 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import type { ConnectionSpec } from '../connect/resolve.js';
import { inTransaction, withClients } from '../connect/session.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import { addPublicationTables } from '../replicate/publication.js';
import { refreshSubscription } from '../replicate/subscription.js';
import { readSchemaDrift, type DriftItem } from './schema-drift.js';
import { migrationScope, requireOnlineState, updateOnlineState } from '../replicate/online-state.js';

export interface SyncSchemaOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  /** Print the plan, change nothing. */
  dryRun: boolean;
  onInfo?: (message: string) => void;
}

export interface SyncSchemaResult {
  dryRun: boolean;
  /** Applied in one transaction on the target (or, with dryRun, to be). */
  transaction: DriftItem[];
  /** New tables added to the publication, their rows copied by the subscription. */
  published: TableRef[];
  /** New tables that cannot be published: copied whole at cutover. */
  copiedAtCutover: { table: TableRef; reason: string }[];
  /** Built CONCURRENTLY after the transaction. */
  concurrently: DriftItem[];
  /** Left to the operator. */
  manual: DriftItem[];
}

/** What sync-schema would do with this drift. */
export function syncPlan(drift: DriftItem[], dryRun: boolean): SyncSchemaResult {
  const withSql = (d: DriftItem) => d.statements.length > 0;
  return {
    dryRun,
    transaction: drift.filter((d) => d.action === 'apply' && withSql(d)),
    published: [],
    copiedAtCutover: [],
    concurrently: drift.filter((d) => d.action === 'concurrently' && withSql(d)),
    manual: drift.filter((d) => d.action === 'manual'),
  };
}

function statementError(err: unknown, statement: string, inTransaction: boolean): PgconvoyError {
  const fields = serverErrorFields(err);
  return new PgconvoyError(`sync-schema failed on the target at: ${statement}: ${errorMessage(err)}`, {
    code: 'SYNC_SCHEMA_FAILED',
    exitCode: EXIT.target,
    hint: `${inTransaction ? "nothing of this run's transaction was applied" : 'the changes before it were applied'}${fields?.detail ? `; ${fields.detail}` : ''}${fields?.hint ? `; ${fields.hint}` : ''}; fix the cause (or make this change by hand), then run sync-schema again`,
    cause: err,
    details: { statement, sqlstate: fields?.code },
  });
}

async function applyTransaction(tgt: pg.Client, items: DriftItem[]): Promise<void> {
  if (items.length === 0) return;
  await inTransaction(tgt, async () => {
    // ALTER TABLE waits for the apply worker's locks; a long wait means something else holds one.
    await tgt.query("SET LOCAL lock_timeout = '30s'");
    for (const item of items)
      for (const sql of item.statements) {
        try {
          await tgt.query(sql);
        } catch (err) {
          throw statementError(err, sql, true);
        }
      }
  });
}

export async function runSyncSchema(o: SyncSchemaOptions): Promise<SyncSchemaResult> {
  const info = o.onInfo ?? (() => undefined);
  const session = { applicationName: 'pgconvoy sync-schema' };
  return withClients(
    o.source,
    o.target,
    async (src, tgt) => {
      const state = await requireOnlineState(tgt, o.ledgerSchema, o.target);
      if (state.phase !== 'replicating')
        throw new PgconvoyError(
          `the online migration is in phase "${state.phase}": sync-schema needs "replicating"`,
          {
            code: 'ONLINE_PHASE',
            hint:
              state.phase === 'copying'
                ? 'wait until pgconvoy start has finished its copy'
                : 'the target no longer follows the source',
          },
        );
      const plan = syncPlan(
        await readSchemaDrift(src, tgt, o.ledgerSchema, migrationScope(state, o.ledgerSchema)),
        o.dryRun,
      );
      if (o.dryRun) return plan;
      await applyTransaction(tgt, plan.transaction);
      if (plan.transaction.length > 0)
        info(`applied ${plan.transaction.length} change(s) in one transaction`);
      const created = plan.transaction.flatMap((d) => (d.newTable ? [d.newTable] : []));
      if (created.length > 0) {
        const added = await addPublicationTables(src, state.names.publication, created);
        plan.published = added.published;
        plan.copiedAtCutover = added.skipped;
        if (added.published.length > 0) {
          await updateOnlineState(tgt, o.ledgerSchema, {
            published: [...state.published, ...added.published],
          });
          await refreshSubscription(tgt, state.names.subscription);
          info(
            `published ${added.published.length} new table(s); the subscription copies their rows (pgconvoy status shows when they are ready)`,
          );
        }
      }
      for (const item of plan.concurrently)
        for (const sql of item.statements) {
          info(sql);
          try {
            await tgt.query(sql);
          } catch (err) {
            throw statementError(err, sql, false);
          }
        }
      return plan;
    },
    session,
  );
}
