/**
 * `pgconvoy start`'s publication step: the tables whose rows the clone copies, source
 * partitions merged on the target published through their root, the ledger's online state
 * begun, and the publication created on the source.
 */
import type pg from 'pg';
import { withClient } from '../connect/session.js';
import { describeConnection } from '../connect/resolve.js';
import { serverMajor } from '../inventory/server-info.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { ensureLedger } from '../ledger/ledger-schema.js';
import type { TableRef } from '../plan/chunk.js';
import type { ReplicationNames } from '../replicate/names.js';
import { tableDataIncluded, tableIncluded } from '../inventory/table-filter.js';
import { createPublication } from '../replicate/publication.js';
import { readReplicationTables } from '../replicate/replication-tables.js';
import { displayName } from '../util/sql.js';
import { checkIdentityMatch } from '../replicate/identity-match.js';
import { readColumnCatalog, tableKey } from '../copy/table-columns.js';
import { flatTargetParents } from '../copy/partitioned-source.js';
import { readPartitionedTables } from '../copy/partitioned-target.js';
import { beginOnlineState, recordMigrationScope, updateOnlineState } from '../replicate/online-state.js';
import type { CloneOptions } from '../clone/run-clone.js';

/** The ledger's online state begun and the publication created on the source: what is replicated. */
export async function publishTables(
  clone: CloneOptions,
  tgt: pg.Client,
  names: ReplicationNames,
  via: 'subscription' | 'relay',
) {
  const schema = clone.ledgerSchema;
  const filter = clone.filter;
  return withClient(
    clone.source,
    async (src) => {
      // Only the tables whose rows the clone copies (-n/-N/-t/-T/--exclude-table-data).
      const tables = (await readReplicationTables(src)).filter(
        (t) => t.kind === 'table' && (!filter || (tableIncluded(filter, t) && tableDataIncluded(filter, t))),
      );
      // Source partitions merged into a plain table on the target: their changes are sent
      // as their partitioned parent's (publish_via_partition_root), the table the target has.
      const merged = await mergedParents(src, tgt, tables);
      const publish = [...tables.filter((t) => !merged.leaves.has(tableKey(t))), ...merged.parents];
      // A target laid out by the operator must find the rows the source's changes name.
      await checkIdentityMatch(src, tgt, publish);
      await ensureLedger(tgt, schema);
      await beginOnlineState(tgt, schema, describeConnection(clone.source), names);
      // Cutover, rollback and status follow the same tables and columns.
      await recordMigrationScope(tgt, schema, { filter, excludeColumns: clone.excludeColumns });
      if (via === 'relay') await updateOnlineState(tgt, schema, { via });
      // createPublication leaves out (and says why) what cannot be published.
      const created = await createPublication(src, names.publication, publish, {
        viaPartitionRoot: merged.parents.length > 0,
        lockWaitTimeoutMs: clone.lockWaitTimeoutMs,
      });
      for (const p of merged.parents)
        clone.onEvent({
          type: 'warning',
          message: `${displayName(p.schema, p.name)}: its partitions' changes are published as its own (the target has one plain table); a TRUNCATE of one partition alone is not replicated that way: truncate the whole table, or rely on cutover's verify to catch it`,
        });
      return created;
    },
    { applicationName: 'pgconvoy start' },
  );
}

/**
 * The source's partitioned tables (and their partitions among `tables`) that the target has
 * as one plain table (see copy/partitioned-source.ts). Publishing them through their root
 * needs PostgreSQL 13 on the source.
 */
async function mergedParents(
  source: pg.Client,
  target: pg.Client,
  tables: readonly TableRef[],
): Promise<{ parents: TableRef[]; leaves: Set<string> }> {
  const parentOf = await flatTargetParents(
    source,
    new Set((await readColumnCatalog(target)).keys()),
    await readPartitionedTables(target),
  );
  const leaves = new Set(tables.map(tableKey).filter((k) => parentOf.has(k)));
  const parents = new Map([...leaves].map((k) => [tableKey(parentOf.get(k)!), parentOf.get(k)!]));
  if (parents.size > 0) {
    const major = await serverMajor(source);
    if (major < 13) {
      const first = [...parents.values()][0]!;
      throw new PgconvoyError(
        `${displayName(first.schema, first.name)} is partitioned on the source and a plain table on the target: replicating into it needs publish_via_partition_root, which PostgreSQL ${major} lacks (13+)`,
        {
          code: 'PARTITION_ROOT_UNSUPPORTED',
          exitCode: EXIT.blocked,
          hint: 'copy it offline (pgconvoy clone --schema skip), or partition the target table like the source',
          details: { tables: [...parents.values()].map((t) => displayName(t.schema, t.name)) },
        },
      );
    }
  }
  return { parents: [...parents.values()], leaves };
}
