/**
 * Which source tables logical replication can carry. An UPDATE or DELETE is published with
 * the row's replica identity (its primary key, a chosen unique index, or the whole row); a
 * table that has none cannot be published at all without harm: once it is in a
 * publication, PostgreSQL refuses UPDATE and DELETE on it ON THE SOURCE ("cannot update
 * table ... because it does not have a replica identity and publishes updates"). Such
 * tables, and unlogged ones (never in WAL), are copied at cutover instead.
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import type { TableRef } from '../plan/chunk.js';
import { notExtensionMember, userSchemas } from '../util/catalog-sql.js';

export type ReplicaIdentity = 'primary-key' | 'index' | 'full' | 'none';

export interface ReplicationTable extends TableRef {
  /** 'table' includes partitions; a partitioned parent has no rows of its own. */
  kind: 'table' | 'partitioned';
  partition: boolean;
  unlogged: boolean;
  identity: ReplicaIdentity;
  /** A partition's parent (filters follow it, see inventory/table-filter.ts). */
  parent: TableRef | undefined;
  /** The connected role owns the table (or is a member of its owner): needed to publish it. */
  owned: boolean;
}

const TABLES_SQL = `
SELECT n.nspname AS schema,
       c.relname AS name,
       c.relkind AS relkind,
       c.relispartition AS partition,
       c.relpersistence = 'u' AS unlogged,
       c.relreplident AS replident,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND i.indisvalid) AS has_pk,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid) AS has_identity_index,
       pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned,
       (SELECT ARRAY[pn.nspname::text, pc.relname::text]
        FROM pg_catalog.pg_inherits h
        JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent
        JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE c.relispartition AND h.inhrelid = c.oid) AS parent
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND ${userSchemas()}
  AND ($1::text IS NULL OR n.nspname <> $1)
  AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
ORDER BY n.nspname, c.relname`;

interface Row {
  schema: string;
  name: string;
  relkind: string;
  partition: boolean;
  unlogged: boolean;
  replident: string;
  has_pk: boolean;
  has_identity_index: boolean;
  owned: boolean;
  parent: [string, string] | null;
}

function identityOf(r: Row): ReplicaIdentity {
  switch (r.replident) {
    case 'd':
      return r.has_pk ? 'primary-key' : 'none';
    case 'i':
      return r.has_identity_index ? 'index' : 'none';
    case 'f':
      return 'full';
    default:
      return 'none';
  }
}

/** Every user table and partitioned table of the source, outside `ledgerSchema` when given. */
export async function readReplicationTables(
  client: pg.Client,
  ledgerSchema?: string,
): Promise<ReplicationTable[]> {
  const res = await client.query<Row>(TABLES_SQL, [ledgerSchema ?? null]);
  return res.rows.map((r) => ({
    schema: r.schema,
    name: r.name,
    kind: r.relkind === 'p' ? 'partitioned' : 'table',
    partition: r.partition,
    unlogged: r.unlogged,
    identity: identityOf(r),
    owned: r.owned,
    parent: r.parent ? { schema: r.parent[0], name: r.parent[1] } : undefined,
  }));
}

/**
 * The tables that go into the publication: plain tables and partitions (never a
 * partitioned parent: changes are published per partition, the same tables the copy
 * fills), logged, with a usable replica identity.
 */
export function publishableTables(tables: ReplicationTable[]): ReplicationTable[] {
  return tables.filter((t) => t.kind === 'table' && !t.unlogged && t.identity !== 'none');
}

/** Logged tables with no usable replica identity: copied at cutover, never published. */
export function tablesWithoutIdentity(tables: ReplicationTable[]): ReplicationTable[] {
  return tables.filter((t) => t.kind === 'table' && !t.unlogged && t.identity === 'none');
}
