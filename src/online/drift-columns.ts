/**
 * The column part of schema drift (schema-drift.ts), and the lookups from verify's
 * difference names (`app.customers.loyalty`) back to the catalogs' objects.
 */
import { displayIdent, displayName } from '../util/sql.js';
import type { Catalog, CatalogColumn, CatalogTable } from '../verify/catalog.js';
import { describeColumn } from '../verify/schema-diff.js';
import type { SchemaDifference } from '../verify/types.js';
import { addColumn, alterColumn, dropColumn, isConstantDefault, isWidening } from './drift-ddl.js';
import type { DriftItem } from './drift-types.js';

export function changeText(d: SchemaDifference): string {
  if (d.problem !== 'different') return d.problem;
  return `different (source: ${d.source ?? '?'}; target: ${d.target ?? '?'})`;
}

export const tableKey = (t: { schema: string; name: string }) => displayName(t.schema, t.name);
export interface Lookup {
  tables: Map<string, CatalogTable>;
  columns: Map<string, [CatalogTable, CatalogColumn, number]>;
}

export function lookup(c: Catalog): Lookup {
  const tables = new Map(c.tables.map((t) => [tableKey(t), t]));
  const columns = new Map<string, [CatalogTable, CatalogColumn, number]>();
  for (const t of c.tables)
    t.columns.forEach((col, i) => columns.set(`${tableKey(t)}.${displayIdent(col.name)}`, [t, col, i]));
  return { tables, columns };
}

export const manual = (reason: string) => ({ action: 'manual' as const, reason, step: 90 });

/**
 * Columns. A table with a column only the source has AND one only the target has may have
 * had a column RENAMEd: adding the new name would leave it empty on the target, so none of
 * them is applied. Where the two sit at the same place with the same type, the RENAME is
 * given; otherwise the ADD and the DROP.
 */
export function columnItems(diffs: SchemaDifference[], src: Lookup, tgt: Lookup): DriftItem[] {
  const items: DriftItem[] = [];
  const byTable = new Map<string, { missing: SchemaDifference[]; extra: SchemaDifference[] }>();
  for (const d of diffs) {
    const hit = d.problem === 'missing on target' ? src.columns.get(d.object) : tgt.columns.get(d.object);
    if (!hit || d.problem === 'different') continue;
    const key = tableKey(hit[0]);
    const entry = byTable.get(key) ?? { missing: [], extra: [] };
    (d.problem === 'missing on target' ? entry.missing : entry.extra).push(d);
    byTable.set(key, entry);
  }
  for (const d of diffs) {
    const base = { kind: d.kind, object: d.object, change: changeText(d) };
    if (d.problem === 'different') {
      const [table, s] = src.columns.get(d.object) ?? [];
      const t = tgt.columns.get(d.object)?.[1];
      if (!table || !s || !t) continue;
      const statements = alterColumn(table, s, t);
      const widening = s.type === t.type || isWidening(t.type, s.type);
      const plain = s.identity === t.identity && s.generated === t.generated;
      items.push(
        widening && plain
          ? { ...base, statements, action: 'apply', step: 40 }
          : {
              ...base,
              statements,
              ...manual(
                plain
                  ? `${t.type} → ${s.type} is not a widening: values may change or not fit`
                  : 'identity or generation differs',
              ),
            },
      );
      continue;
    }
    const [table, col, place] = (d.problem === 'missing on target' ? src : tgt).columns.get(d.object) ?? [];
    if (!table || !col || place === undefined) continue;
    const both = byTable.get(tableKey(table));
    const renamed = both !== undefined && both.missing.length > 0 && both.extra.length > 0;
    if (d.problem === 'extra on target') {
      // The operator's own addition (a reshaped target): replicated rows get its default.
      if (!renamed && (!col.notNull || col.default !== null || col.identity !== '' || col.generated !== ''))
        continue;
      const partner = renamed ? renamePartner(table, col, place, src) : undefined;
      if (partner) continue; // given once, with the source's name
      items.push({
        ...base,
        statements: [dropColumn(table, col)],
        ...manual(
          renamed
            ? 'dropped, or renamed on the source: decide by hand'
            : "drops the column's values on the target",
        ),
      });
      continue;
    }
    if (renamed) {
      const old = renamePartner(table, col, place, tgt);
      items.push({
        ...base,
        change: old
          ? `renamed on the source? (target has ${displayIdent(old.name)} in its place)`
          : base.change,
        statements: old
          ? [
              `ALTER TABLE ${displayName(table.schema, table.name)} RENAME COLUMN ${displayIdent(old.name)} TO ${displayIdent(col.name)}`,
            ]
          : [addColumn(table, col)],
        ...manual(
          'a column only the source has and one only the target has: maybe a RENAME (adding it would leave it empty)',
        ),
      });
    } else if (col.identity !== '' || (col.generated === '' && !isConstantDefault(col.default))) {
      items.push({
        ...base,
        change: `missing on target (${describeColumn(col)})`,
        statements: [addColumn(table, col)],
        ...manual(
          'its default is not a constant: the rows the target already holds would get other values than on the source; add it, then copy its values from the source',
        ),
      });
    } else {
      items.push({
        ...base,
        change: `missing on target (${describeColumn(col)})`,
        statements: [addColumn(table, col)],
        action: 'apply',
        step: 40,
      });
    }
  }
  return items;
}

/** The column at the same place with the same type on the other side, if only that side has it. */
function renamePartner(
  table: CatalogTable,
  col: CatalogColumn,
  place: number,
  other: Lookup,
): CatalogColumn | undefined {
  const otherTable = other.tables.get(tableKey(table));
  const cand = otherTable?.columns[place];
  if (!otherTable || !cand || cand.type !== col.type) return undefined;
  const stillThere = table.columns.some((c) => c.name === cand.name);
  return stillThere ? undefined : cand;
}
