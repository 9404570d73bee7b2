/**
 * Precheck row for a target laid out by the operator (`start --schema skip`): source rows
 * that no partition of the target's partitioned table of the same name takes (see
 * plan/partition-fit.ts). Nothing to say when the target has no such table.
 */
import type pg from 'pg';
import type { TableRef } from '../plan/chunk.js';
import { describeMisfit, findPartitionMisfits, misfitHint } from '../plan/partition-fit.js';
import { displayName } from '../util/sql.js';
import { row, type PrecheckRow } from './precheck-rows.js';
import { readReplicationTables } from './replication-tables.js';

export async function checkPartitionFit(
  source: pg.Client,
  target: pg.Client,
  options: {
    ledgerSchema: string;
    /** The tables the migration copies (start's filters); all by default. */
    includeTable?: (t: TableRef) => boolean;
    leftOut?: (t: TableRef, column: string) => boolean;
  },
): Promise<PrecheckRow[]> {
  const tables = (await readReplicationTables(source, options.ledgerSchema)).filter(
    (t) => t.kind === 'table' && (options.includeTable?.(t) ?? true),
  );
  const notChecked: string[] = [];
  const misfits = await findPartitionMisfits(source, target, tables, {
    ...(options.leftOut ? { leftOut: options.leftOut } : {}),
    skipped: (t, why) => notChecked.push(`${displayName(t.schema, t.name)}: ${why}`),
  });
  const base = { side: 'target' as const, check: 'partition bounds' };
  const rows: PrecheckRow[] = [];
  if (misfits.length > 0)
    rows.push(
      row({
        ...base,
        id: 'target.partition_bounds',
        status: 'fail',
        detail: `${misfits.length} source table(s) have rows that no partition of the target's table of the same name accepts`,
        hint: misfitHint(misfits),
        items: misfits.map(describeMisfit),
      }),
    );
  if (notChecked.length > 0)
    rows.push(
      row({
        ...base,
        id: 'target.partition_bounds_unchecked',
        status: 'info',
        detail: `${notChecked.length} table(s) loaded into a partitioned target table were not checked against its partitions`,
        items: notChecked,
      }),
    );
  return rows;
}
