/**
 * The vocabulary of the schema stage: pg_dump's archive table of contents (TOC), read back
 * with `pg_restore -l`, and what clone needs to know about each post-data entry to build a
 * table's indexes as soon as that table's rows are in.
 *
 * Terms:
 * - entry: one TOC line of the archive (`<dumpId>; <tableoid> <oid> <TYPE> ...`).
 * - section: pg_dump's own split. pre-data = everything a table needs before its rows
 *   (types, functions, CREATE TABLE, sequences, views, grants ...); post-data = indexes,
 *   constraints, triggers, rules, policies ... that are cheaper to build after the load.
 * - phase (post-data only): 'table' = may run as soon as that one table's rows are in;
 *   'final' = needs all data (foreign keys, triggers, partitioned-parent indexes ...).
 */

export type TocSection = 'pre-data' | 'data' | 'post-data' | 'none';

export interface TocEntry {
  /** pg_dump's dump id: what a restore list (`-L`) names. */
  dumpId: number;
  /** The entry's type as pg_dump writes it: "TABLE", "INDEX", "FK CONSTRAINT", ... */
  desc: string;
  /** The catalog the object lives in (pg_class, pg_constraint, ...), 0 for entries without one. */
  tableoid: number;
  oid: number;
  /** Everything after the type on the `pg_restore -l` line (schema, name, owner; not parseable when names hold spaces). */
  text: string;
  /** The line as `pg_restore -l` printed it, written back verbatim into restore lists. */
  line: string;
  section: TocSection;
  /** Dump ids this entry depends on (from `pg_restore -l -v`). */
  dependencies: number[];
}

export type PostDataKind =
  'index' | 'constraint' | 'fk-constraint' | 'trigger' | 'index-attach' | 'rule' | 'policy' | 'other';

export type PostDataPhase = 'table' | 'final';

export interface TableRef {
  schema: string;
  name: string;
}

export interface PostDataItem extends TocEntry {
  kind: PostDataKind;
  /** The table (or partitioned table, materialized view) the item belongs to, when it has one. */
  table: TableRef | undefined;
  /** The object's own name from the source catalogs ("orders_pkey"), when known. */
  objectName: string | undefined;
  phase: PostDataPhase;
  /**
   * A foreign key between two plain tables: the table it references (`table` is the one it
   * is on). It needs only those two tables' rows and keys (see classify.ts).
   */
  references?: TableRef;
  /** One line for logs: `INDEX orders_customer_idx on sales.orders`. */
  label: string;
}

/** Anything that names a TOC entry: a TocEntry or PostDataItem works as is. */
export interface TocEntryRef {
  dumpId: number;
}

export interface SchemaDumpFiles {
  /** The custom-format archive pg_dump wrote. */
  archive: string;
  /** The whole schema as SQL. */
  whole: string;
  /** pre-data: everything needed before the data (schema_no_indexes.sql). */
  preData: string;
  /** post-data: indexes, constraints, triggers ... (schema_indexes_only.sql). */
  postData: string;
}

export interface SchemaDump {
  runDir: string;
  files: SchemaDumpFiles;
  /** pg_dump's version line, e.g. "pg_dump (PostgreSQL) 15.18". */
  pgDumpVersion: string;
  /** Every entry of the archive, in archive order (which is dependency order). */
  entries: TocEntry[];
  preData: TocEntry[];
  postData: PostDataItem[];
  /** What the SQL files were written with; applySchemaSection uses these unless told otherwise. */
  noOwner: boolean;
  noPrivileges: boolean;
  /** pg_restore --no-tablespaces: every item in the target database's default tablespace. */
  noTablespaces: boolean;
  /** Source tablespace → target tablespace, applied to the SQL pg_restore prints (schema/tablespaces.ts). */
  tablespaceMap: ReadonlyMap<string, string>;
}
