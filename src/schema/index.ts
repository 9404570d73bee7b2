/**
 * The schema stage: find pg_dump, dump the source's schema into the run directory, and
 * apply it to the target in parts (pre-data; each table's indexes; the rest).
 */
export {
  findPgTools,
  parseToolMajor,
  SYSTEM_PG_ROOT,
  type FindPgToolsOptions,
  type PgTools,
} from './pg-tools.js';
export { dumpSchema, type DumpSchemaOptions } from './dump-schema.js';
export {
  applySchemaSection,
  schemaSql,
  type ApplySchemaOptions,
  type SchemaPart,
  type SchemaSqlOptions,
} from './apply-schema.js';
export { itemsForTable, finalItems } from './select-items.js';
export type * from './types.js';
