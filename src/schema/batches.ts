/**
 * Cutting a part of the schema into transactions that fit the target's lock table. One
 * transaction holds a lock on every relation it creates or alters until it commits, so a
 * schema of thousands of tables applied at once runs out of lock memory ("out of shared
 * memory", SQLSTATE 53200) on default settings. Units (a TOC entry, or the items of one
 * table that must commit together) are packed, in archive order (which is dependency
 * order), into batches whose estimated locks stay under a budget; a batch never splits a
 * unit, so a unit bigger than the budget is a batch of its own.
 *
 * Two entry types change what is created after them, so pg_restore runs them last (its ACL
 * and post-ACL passes): default privileges (ALTER DEFAULT PRIVILEGES would grant on every
 * object a later batch creates) and event triggers (they would fire on later batches' DDL).
 * Units holding them go to the very end, in their own order.
 */
import type { TocEntry } from './types.js';

export interface SchemaUnit {
  entries: TocEntry[];
  /** Ledger steps that are done once this unit commits ("indexes:<table>"). */
  marks: string[];
}

/** Entry types applied after everything else (pg_restore's RESTORE_PASS_ACL / POST_ACL). */
const LAST_TYPES = new Set(['DEFAULT ACL', 'EVENT TRIGGER']);

/**
 * Locks an entry may hold until commit, counted high: a table is itself, its TOAST table and
 * the TOAST table's index; a constraint or foreign key also locks the tables and the index it
 * points at. Locks on the same object count once in a transaction, so over-counting the
 * entries that touch a table again (OWNER, DEFAULT, COMMENT …) only makes batches smaller.
 */
export function entryLocks(entry: TocEntry): number {
  switch (entry.desc) {
    case 'TABLE':
    case 'MATERIALIZED VIEW':
    case 'FOREIGN TABLE':
      return 3;
    case 'VIEW':
    case 'INDEX':
    case 'CONSTRAINT':
    case 'TABLE ATTACH':
    case 'INDEX ATTACH':
      return 2;
    case 'FK CONSTRAINT':
      return 4;
    default:
      return 1;
  }
}

export function unitLocks(unit: SchemaUnit): number {
  return unit.entries.reduce((sum, e) => sum + entryLocks(e), 0);
}

/** Units in the order they must be applied: archive order, default privileges and event triggers last. */
export function orderUnits(units: readonly SchemaUnit[]): SchemaUnit[] {
  const isLast = (u: SchemaUnit) => u.entries.some((e) => LAST_TYPES.has(e.desc));
  return [...units.filter((u) => !isLast(u)), ...units.filter(isLast)];
}

/** Contiguous runs of `units` whose estimated locks stay within `budget` (a bigger unit alone). */
export function packBatches(units: readonly SchemaUnit[], budget: number): SchemaUnit[][] {
  const batches: SchemaUnit[][] = [];
  let current: SchemaUnit[] = [];
  let locks = 0;
  for (const unit of units) {
    const n = unitLocks(unit);
    if (current.length > 0 && locks + n > budget) {
      batches.push(current);
      current = [];
      locks = 0;
    }
    current.push(unit);
    locks += n;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** What identifies a unit across runs (a rerun dumps again: dump ids may differ, catalog oids do not). */
export function unitFingerprint(unit: SchemaUnit): string {
  return unit.entries.map((e) => `${e.desc} ${e.tableoid} ${e.oid} ${e.text}`).join('\n');
}
