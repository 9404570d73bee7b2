/**
 * The tables replication does not carry (no primary key or replica identity, unlogged) are
 * copied whole while writes are frozen: at cutover from the source to the target, at
 * rollback back again. Each table is emptied and refilled in ONE transaction on the
 * receiving side, so a failure leaves the old rows, never half the new ones. The bytes flow
 * through the clone engine's COPY pipe (copy/copy-stream.ts), binary where safe.
 *
 * Receiving sessions run with session_replication_role = replica when the role may set it:
 * the rows are a copy, user triggers must not fire on them. A table that a foreign key
 * references cannot be TRUNCATEd; it is emptied with DELETE instead.
 *
 * Checked with PostgreSQL 13 and 15 on one side and 17 on the other.
 */
import { tableRowsInScope, type Scope } from '../verify/scope.js';
import type pg from 'pg';
import { inTransaction, withClients } from '../connect/session.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { serverErrorFields } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import { copyStream } from '../copy/copy-stream.js';
import { readReplicationTables } from '../replicate/replication-tables.js';
import { planTableColumns, readColumnCatalog } from '../copy/table-columns.js';
import { prepareSourceSession } from '../copy/source-snapshot.js';
import { prepareTargetSession } from '../copy/target-session.js';
import { readPartitionedTables, targetRelation } from '../copy/partitioned-target.js';
import { SQLSTATE } from '../sqlstate.js';

export interface CopiedTable {
  table: TableRef;
  rows: number;
  bytes: number;
  ms: number;
}

async function mayReplicaRole(client: pg.Client): Promise<boolean> {
  try {
    await client.query("SELECT pg_catalog.set_config('session_replication_role', 'replica', false)");
    await client.query("SELECT pg_catalog.set_config('session_replication_role', 'origin', false)");
    return true;
  } catch {
    return false;
  }
}

/** Replaces the rows of each table on `to` with those on `from`. */
export async function copyWholeTables(
  from: ConnectionSpec,
  to: ConnectionSpec,
  tables: TableRef[],
  applicationName: string,
): Promise<CopiedTable[]> {
  if (tables.length === 0) return [];
  return withClients(
    from,
    to,
    async (src, dst) => {
      await prepareSourceSession(src);
      await prepareTargetSession(dst, { replicationRole: await mayReplicaRole(dst) });
      const fromColumns = await readColumnCatalog(src);
      const toColumns = await readColumnCatalog(dst);
      const partitioned = await readPartitionedTables(dst);
      const copied: CopiedTable[] = [];
      for (const table of tables) {
        const started = Date.now();
        const columns = planTableColumns(table, fromColumns, toColumns);
        const relation = targetRelation(table, partitioned);
        const r = await inTransaction(dst, async () => {
          await dst.query('SAVEPOINT empty');
          try {
            await dst.query(`TRUNCATE ${relation}`);
          } catch (err) {
            if (serverErrorFields(err)?.code !== SQLSTATE.featureNotSupported) throw err; // referenced by a foreign key
            await dst.query('ROLLBACK TO SAVEPOINT empty');
            await dst.query(`DELETE FROM ${relation}`);
          }
          return copyStream(src, dst, {
            table,
            columns: columns.columns,
            chunk: { kind: 'whole' },
            format: columns.format,
            freeze: false,
            sides: { read: from.side, load: to.side },
          });
        });
        copied.push({ table, rows: r.rows, bytes: r.bytes, ms: Date.now() - started });
      }
      return copied;
    },
    { applicationName },
  );
}

/** Tables with rows that the forward publication did not carry. */
export async function unpublishedTables(
  source: pg.Client,
  published: TableRef[],
  /** What the migration moves (state.ts migrationScope): a table left out is never copied. */
  scope: Scope,
): Promise<TableRef[]> {
  const k = (t: TableRef) => JSON.stringify([t.schema, t.name]);
  const carried = new Set(published.map(k));
  const tables = await readReplicationTables(source);
  const parentOf = new Map(tables.map((t) => [k(t), t.parent]));
  // A partition is carried by its partitioned ancestor when that was published (via the root).
  const isCarried = (t: TableRef | undefined): boolean =>
    t !== undefined && (carried.has(k(t)) || isCarried(parentOf.get(k(t))));
  return tables
    .filter((t) => t.kind === 'table' && !isCarried(t) && tableRowsInScope(scope, t))
    .map((t) => ({ schema: t.schema, name: t.name }));
}
