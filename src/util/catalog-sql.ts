/**
 * SQL fragments every catalog query shares, so "a user's object" means the same thing in the
 * inventory, the checks, replication, verification and cutover.
 */

/**
 * The schemas that hold user objects: not the catalogs, not TOAST, not another session's
 * temporary schema. `ns` is the alias of pg_namespace in the query.
 */
export const userSchemas = (ns = 'n'): string =>
  `${ns}.nspname NOT IN ('pg_catalog', 'information_schema') AND ${ns}.nspname !~ '^pg_(toast|temp_)'`;

/**
 * Not a member of an extension (CREATE EXTENSION makes those again on the target).
 * `classOid` is the catalog the object lives in, `objOid` the expression of its oid.
 */
export const notExtensionMember = (classOid: string, objOid: string): string => `NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = '${classOid}'::pg_catalog.regclass AND d.objid = ${objOid} AND d.deptype = 'e')`;
