/**
 * Tables whose layout differs between the sides on purpose: a flat source table and a
 * partitioned target table of the same name (partitioned on the way, `--schema skip`), the
 * other way round, or two partitioned tables whose partitions are not the same. Their rows
 * are compared as a whole (`FROM t`, partitions included) over the columns both sides have,
 * and their partitions on either side are not compared on their own. pg_dump never changes
 * a table's kind, so such a difference is the operator's doing: the schema compare lists
 * what differs in these trees as notes, not as differences.
 */
import type { Catalog, CatalogTable } from './catalog.js';

export const relKey = (t: { schema: string; name: string }): string => `${t.schema}\0${t.name}`;

export interface Layouts {
  /** Tables on both sides (relKey) read as a whole because their layouts differ. */
  whole: Set<string>;
  /** Partitions (at any depth) of a `whole` table, on the source side. */
  coveredSource: Set<string>;
  /** Partitions (at any depth) of a `whole` table, on the target side. */
  coveredTarget: Set<string>;
}

const children = (catalog: Catalog, t: CatalogTable): string[] =>
  catalog.tables
    .filter((c) => c.parent?.schema === t.schema && c.parent.name === t.name)
    .map((c) => relKey(c))
    .sort();

function differentLayout(source: Catalog, target: Catalog, s: CatalogTable, t: CatalogTable): boolean {
  const kinds = new Set([s.relkind, t.relkind]);
  if ([...kinds].some((k) => k !== 'r' && k !== 'p')) return false;
  if (s.relkind !== t.relkind) return true;
  // Both partitioned: the same partitions are compared one by one, as today.
  return s.relkind === 'p' && children(source, s).join('\n') !== children(target, t).join('\n');
}

/** Tables (relKey) below any of `roots` in one side's partition trees. */
function below(catalog: Catalog, roots: Set<string>): Set<string> {
  const parentOf = new Map(
    catalog.tables.flatMap((t) => (t.parent ? [[relKey(t), relKey(t.parent)] as const] : [])),
  );
  const out = new Set<string>();
  for (const t of catalog.tables) {
    const seen = new Set<string>();
    for (let p = parentOf.get(relKey(t)); p !== undefined && !seen.has(p); p = parentOf.get(p)) {
      seen.add(p);
      if (roots.has(p)) {
        out.add(relKey(t));
        break;
      }
    }
  }
  return out;
}

export function findLayouts(source: Catalog, target: Catalog): Layouts {
  const targetTables = new Map(target.tables.map((t) => [relKey(t), t]));
  const whole = new Set<string>();
  for (const s of source.tables) {
    const t = targetTables.get(relKey(s));
    if (t && differentLayout(source, target, s, t)) whole.add(relKey(s));
  }
  // A tree inside a tree read whole is read with it.
  const coveredSource = below(source, whole);
  const coveredTarget = below(target, whole);
  for (const k of [...whole]) if (coveredSource.has(k) || coveredTarget.has(k)) whole.delete(k);
  return { whole, coveredSource, coveredTarget };
}

/** Whether a table (relKey) belongs to a tree whose layout differs, on either side. */
export const inReshapedTree = (l: Layouts, key: string): boolean =>
  l.whole.has(key) || l.coveredSource.has(key) || l.coveredTarget.has(key);
