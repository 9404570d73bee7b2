/**
 * Which tables and objects a verify run looks at: `--table schema.name` (repeatable; a
 * partitioned table stands for its partitions) and `--schema name` (repeatable). With no
 * filter, everything outside the system schemas and pgconvoy's ledger.
 */
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import { splitIdentifiers } from '../util/sql.js';

export interface Scope {
  tables: TableRef[] | undefined;
  schemas: string[] | undefined;
}

/**
 * `schema.name` as SQL reads it (see splitIdentifiers); a bare name is in `public`.
 * `public."Order Items"`, `"Audit Log".events`, `sales.orders`.
 */
export function parseTableName(text: string): TableRef {
  const bad = (why: string) =>
    new PgconvoyError(`--table "${text}" is not a table name: ${why}`, {
      code: 'BAD_TABLE_NAME',
      hint: `write schema.name; quote names with capitals, spaces or dots: --table 'public."Order Items"'`,
      exitCode: EXIT.usage,
    });
  const parts = splitIdentifiers(text, bad);
  if (parts.length === 1) return { schema: 'public', name: parts[0] ?? '' };
  if (parts.length === 2) return { schema: parts[0] ?? '', name: parts[1] ?? '' };
  throw bad('more than two parts');
}

const same = (a: TableRef, b: TableRef) => a.schema === b.schema && a.name === b.name;

/** Whether a table (or a partition, through its parent) is in scope. */
export function tableInScope(scope: Scope, table: TableRef & { parent?: TableRef | undefined }): boolean {
  if (scope.schemas && !scope.schemas.includes(table.schema)) return false;
  if (!scope.tables) return true;
  const parent = table.parent;
  return scope.tables.some((t) => same(t, table) || (parent !== undefined && same(t, parent)));
}

/** Objects that belong to a schema but not to one table (sequences, views, the schema itself). */
export function schemaObjectInScope(scope: Scope, schema: string): boolean {
  if (scope.tables) return false;
  return !scope.schemas || scope.schemas.includes(schema);
}

/** Database-wide objects (extensions): only compared when no table filter narrows the run. */
export function databaseObjectsInScope(scope: Scope): boolean {
  return !scope.tables;
}
