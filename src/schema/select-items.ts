/**
 * Picking post-data items for clone's index phase: a table's own items as soon as its
 * rows are in, and the items that must wait until all data is in.
 */
import type { PostDataItem, SchemaDump, TableRef } from './types.js';

/** The 'table'-phase items of one table (its indexes, primary key, unique constraints ...), in archive order. */
export function itemsForTable(dump: SchemaDump, table: TableRef): PostDataItem[] {
  return dump.postData.filter(
    (i) => i.phase === 'table' && i.table?.schema === table.schema && i.table.name === table.name,
  );
}

/** The 'final'-phase items (foreign keys, triggers, partitioned-parent indexes, attaches ...), in archive order. */
export function finalItems(dump: SchemaDump): PostDataItem[] {
  return dump.postData.filter((i) => i.phase === 'final');
}
