/**
 * Which tables and objects a verify run looks at: pg_dump's filters (-n/-N/-t/-T,
 * --exclude-table-data, --filter), matched by inventory/table-filter.ts as clone and start
 * match them, so a filtered clone is verified with the very same flags. With no filter,
 * everything outside the system schemas and pgconvoy's ledger.
 */
import {
  checkPatternsMatch,
  schemaIncluded,
  tableDataIncluded,
  tableIncluded,
  type FilterableTable,
  type TableFilter,
} from '../inventory/table-filter.js';
import { excludedKey, type ExcludedColumns } from '../copy/table-columns.js';
import type { TableRef } from '../plan/chunk.js';

export interface Scope {
  filter: TableFilter | undefined;
  /** Source columns the copy left behind (`--exclude-column`), as excludedKey()s. */
  excludeColumns?: ExcludedColumns | undefined;
}

/** Whether a column's values are compared: not one the copy left behind. */
export function columnInScope(scope: Scope, table: TableRef, column: string): boolean {
  return !scope.excludeColumns?.has(excludedKey(table, column));
}

/** Every pattern must match a schema or table on one side or the other: a typo must not verify nothing. */
export function checkScope(scope: Scope, schemas: string[], tables: FilterableTable[]): void {
  if (scope.filter) checkPatternsMatch(scope.filter, schemas, tables, 'on either side');
}

/** Whether a table's definition is compared (a partition follows its parent). */
export function tableInScope(scope: Scope, table: FilterableTable): boolean {
  return !scope.filter || tableIncluded(scope.filter, table);
}

/** Whether a table's rows are compared: not under --exclude-table-data. */
export function tableRowsInScope(scope: Scope, table: FilterableTable): boolean {
  return tableInScope(scope, table) && (!scope.filter || tableDataIncluded(scope.filter, table));
}

/** Objects that belong to a schema but not to one table (sequences, views, the schema itself). */
export function schemaObjectInScope(scope: Scope, schema: string): boolean {
  return !scope.filter || schemaIncluded(scope.filter, schema);
}

/** Database-wide objects (extensions): pg_dump leaves them out when -n or -t narrows the dump. */
export function databaseObjectsInScope(scope: Scope): boolean {
  const f = scope.filter;
  return !f || f.includeSchemas.length + f.includeTables.length === 0;
}
