/**
 * What each post-data entry of the archive is, which table it belongs to, and whether it
 * can be built as soon as that table's rows are in ('table') or must wait for all data
 * ('final'). The kind comes from pg_dump's entry type; the table from the source
 * catalogs, by the oids the TOC carries (an INDEX entry's tag is only the index name),
 * else from the entry's dependencies on TABLE entries.
 *
 * Partitioned tables: pg_dump builds an index or constraint of a partitioned parent as
 * `CREATE INDEX ... ON ONLY parent` / `ALTER TABLE ONLY parent ADD ...`, each partition's
 * own index separately, then `ALTER INDEX parent_idx ATTACH PARTITION part_idx`. The
 * partitions' own items are 'table'; the parent's items and every INDEX ATTACH are
 * 'final' (they run, in archive order, after all partitions' indexes exist).
 *
 * A foreign key from one plain table to another also names the table it references
 * (`references`): it needs only those two tables' rows and keys, so a clone may add it as
 * soon as both are in (clone/index-builder.ts) instead of after all data.
 */
import type pg from 'pg';
import type { PostDataItem, PostDataKind, PostDataPhase, TableRef, TocEntry } from './types.js';

const KIND_BY_TYPE: Record<string, PostDataKind> = {
  INDEX: 'index',
  CONSTRAINT: 'constraint',
  'CHECK CONSTRAINT': 'constraint',
  'FK CONSTRAINT': 'fk-constraint',
  TRIGGER: 'trigger',
  'INDEX ATTACH': 'index-attach',
  RULE: 'rule',
  POLICY: 'policy',
  'ROW SECURITY': 'policy',
};

/** Entry types whose object is a relation that holds (or shows) rows. */
const RELATION_TYPES = new Set(['TABLE', 'MATERIALIZED VIEW', 'FOREIGN TABLE', 'VIEW']);

interface CatalogRow {
  classid: string;
  objid: string;
  objname: string | null;
  nspname: string | null;
  relname: string | null;
  relkind: string | null;
  reloid: string;
  /** oid of the partitioned parent when the relation is a partition. */
  parent: string | null;
  /** A foreign key's referenced table, when it is a plain table. */
  refschema: string | null;
  refname: string | null;
}

// For each (catalog, object) pair: the object's name and the relation it belongs to (an
// index's table, a constraint's/trigger's/rule's/policy's/statistics' table, a table itself).
// Checked on PostgreSQL 13, 15 and 17.
const OBJECT_TABLES_SQL = `
WITH wanted AS (
  SELECT w.classid, w.objid
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.oid[])) AS w(classid, objid)
), owners AS (
  SELECT w.classid, w.objid, c.relname AS objname, COALESCE(i.indrelid, c.oid) AS relid, 0::pg_catalog.oid AS refid
  FROM wanted w
  JOIN pg_catalog.pg_class c ON c.oid = w.objid
  LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
  WHERE w.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  UNION ALL
  SELECT w.classid, w.objid, x.conname, x.conrelid, x.confrelid
  FROM wanted w JOIN pg_catalog.pg_constraint x ON x.oid = w.objid
  WHERE w.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
  UNION ALL
  SELECT w.classid, w.objid, t.tgname, t.tgrelid, 0::pg_catalog.oid
  FROM wanted w JOIN pg_catalog.pg_trigger t ON t.oid = w.objid
  WHERE w.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
  UNION ALL
  SELECT w.classid, w.objid, r.rulename, r.ev_class, 0::pg_catalog.oid
  FROM wanted w JOIN pg_catalog.pg_rewrite r ON r.oid = w.objid
  WHERE w.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
  UNION ALL
  SELECT w.classid, w.objid, p.polname, p.polrelid, 0::pg_catalog.oid
  FROM wanted w JOIN pg_catalog.pg_policy p ON p.oid = w.objid
  WHERE w.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
  UNION ALL
  SELECT w.classid, w.objid, s.stxname, s.stxrelid, 0::pg_catalog.oid
  FROM wanted w JOIN pg_catalog.pg_statistic_ext s ON s.oid = w.objid
  WHERE w.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass
)
SELECT o.classid::pg_catalog.text AS classid, o.objid::pg_catalog.text AS objid, o.objname,
       n.nspname, r.relname, r.relkind::pg_catalog.text AS relkind, o.relid::pg_catalog.text AS reloid,
       (SELECT h.inhparent::pg_catalog.text FROM pg_catalog.pg_inherits h
         WHERE h.inhrelid = r.oid AND r.relispartition LIMIT 1) AS parent,
       fn.nspname AS refschema, f.relname AS refname
FROM owners o
LEFT JOIN pg_catalog.pg_class r ON r.oid = o.relid
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
LEFT JOIN pg_catalog.pg_class f ON f.oid = o.refid AND f.relkind = 'r'
LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace`;

interface Relation extends TableRef {
  oid: string;
  relkind: string;
  parent: string | undefined;
}

interface Resolved {
  objectName: string | undefined;
  relation: Relation | undefined;
  references: TableRef | undefined;
}

const key = (tableoid: number | string, oid: number | string) => `${tableoid}/${oid}`;

async function lookUp(client: pg.Client, entries: TocEntry[]): Promise<Map<string, Resolved>> {
  const wanted = entries.filter((e) => e.tableoid !== 0 && e.oid !== 0);
  const result = await client.query<CatalogRow>(OBJECT_TABLES_SQL, [
    wanted.map((e) => e.tableoid),
    wanted.map((e) => e.oid),
  ]);
  const out = new Map<string, Resolved>();
  for (const row of result.rows) {
    const relation =
      row.nspname !== null && row.relname !== null && row.relkind !== null
        ? {
            schema: row.nspname,
            name: row.relname,
            relkind: row.relkind,
            oid: row.reloid,
            parent: row.parent ?? undefined,
          }
        : undefined;
    const references =
      row.refschema !== null && row.refname !== null
        ? { schema: row.refschema, name: row.refname }
        : undefined;
    out.set(key(row.classid, row.objid), { objectName: row.objname ?? undefined, relation, references });
  }
  return out;
}

/** The relation of an entry without catalog oids (INDEX ATTACH, ROW SECURITY, COMMENT ...). */
function relationFromDependencies(
  entry: TocEntry,
  byId: Map<number, TocEntry>,
  resolve: (e: TocEntry) => Relation | undefined,
): Relation | undefined {
  const deps = [...new Set(entry.dependencies)]
    .map((id) => byId.get(id))
    .filter((e): e is TocEntry => e !== undefined);
  const relations = deps.filter((d) => RELATION_TYPES.has(d.desc)).map(resolve);
  const unique = [
    ...new Map(relations.filter((r): r is Relation => r !== undefined).map((r) => [r.oid, r])).values(),
  ];
  if (entry.desc === 'INDEX ATTACH') {
    // Depends on both the partition and its parent: the item belongs to the partition.
    const oids = new Set(unique.map((r) => r.oid));
    return unique.find((r) => r.parent !== undefined && oids.has(r.parent)) ?? unique[0];
  }
  if (unique.length === 1) return unique[0];
  if (unique.length === 0) {
    // A comment or security label on an index or constraint: its object's relation.
    const owners = deps.map(resolve).filter((r): r is Relation => r !== undefined);
    if (owners.length > 0 && owners.every((r) => r.oid === owners[0]?.oid)) return owners[0];
  }
  return undefined;
}

function phaseOf(kind: PostDataKind, relation: Relation | undefined): PostDataPhase {
  // Only plain tables' (and leaf partitions') own indexes and constraints: everything else
  // needs all rows (FKs, triggers), or other tables' indexes (partitioned parents).
  if ((kind === 'index' || kind === 'constraint') && relation?.relkind === 'r') return 'table';
  return 'final';
}

/** Kind, table and phase of every post-data entry, in archive order. */
export async function classifyPostData(client: pg.Client, entries: TocEntry[]): Promise<PostDataItem[]> {
  const postData = entries.filter((e) => e.section === 'post-data');
  const relations = entries.filter((e) => RELATION_TYPES.has(e.desc));
  const catalog = await lookUp(client, [...relations, ...postData]);
  const byId = new Map(entries.map((e) => [e.dumpId, e]));
  const memo = new Map<number, Relation | undefined>();
  const resolve = (e: TocEntry): Relation | undefined => {
    if (memo.has(e.dumpId)) return memo.get(e.dumpId);
    memo.set(e.dumpId, undefined); // cycles in dependencies end here
    const direct = e.tableoid !== 0 ? catalog.get(key(e.tableoid, e.oid))?.relation : undefined;
    const relation = direct ?? relationFromDependencies(e, byId, resolve);
    memo.set(e.dumpId, relation);
    return relation;
  };

  return postData.map((entry) => {
    const kind = KIND_BY_TYPE[entry.desc] ?? 'other';
    const relation = resolve(entry);
    const found = entry.tableoid !== 0 ? catalog.get(key(entry.tableoid, entry.oid)) : undefined;
    const objectName = found?.objectName;
    const table = relation ? { schema: relation.schema, name: relation.name } : undefined;
    const references = kind === 'fk-constraint' && relation?.relkind === 'r' ? found?.references : undefined;
    return {
      ...entry,
      kind,
      table,
      objectName,
      ...(references ? { references } : {}),
      phase: phaseOf(kind, relation),
      label:
        objectName && table
          ? `${entry.desc} ${objectName} on ${table.schema}.${table.name}`
          : `${entry.desc} ${entry.text}`,
    };
  });
}
