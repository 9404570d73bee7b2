/**
 * Schema drift during an online migration: logical replication carries rows, never DDL, so
 * a column, table or index added on the source after `start` is not on the target (and the
 * apply worker stops on the first row that does not fit). This compares the source's and
 * the target's catalogs NOW, with verify's own reading and comparison (verify/catalog.ts,
 * verify/schema-diff.ts), and turns each difference into the statements that align the
 * target, sorted into what `sync-schema` may apply itself and what it leaves to the operator:
 *
 * - apply (in one transaction on the target): new schemas, sequences, tables, columns whose
 *   default is a constant, widened types, defaults, NOT NULL, new constraints, views;
 * - concurrently (after it, outside any transaction): new indexes on existing tables;
 * - manual: drops, renames, narrowing or other type changes, a column whose default is not a
 *   constant (the rows the target already holds would get other values), anything else.
 *
 * What never counts as drift: sequence values (synced at cutover) and whether a
 * materialized view is populated (refreshed at cutover).
 *
 * Read-only. Checked with PostgreSQL 15 as the source and 17 as the target.
 */
import type { Scope } from '../verify/scope.js';
import { findLayouts } from '../verify/layouts.js';
import type pg from 'pg';
import { inSnapshot } from '../connect/session.js';
import { displayIdent, displayName } from '../util/sql.js';
import { readCatalog, type Catalog } from '../verify/catalog.js';
import { compareCatalogs, describeColumn } from '../verify/schema-diff.js';
import type { SchemaDifference } from '../verify/types.js';
import { changeText, columnItems, lookup, manual, tableKey, type Lookup } from './drift-columns.js';
import { addConstraint, createIndex, createSequence, createTable, dropConstraint } from './drift-ddl.js';

import type { DriftItem } from './drift-types.js';
export type { DriftAction, DriftItem } from './drift-types.js';

/** One side's catalog, read in one snapshot. */
async function catalogNow(client: pg.Client, ledgerSchema: string): Promise<Catalog> {
  return inSnapshot(client, () => readCatalog(client, ledgerSchema));
}

/** The drift between the source and the target now; empty when their schemas agree. */
export async function readSchemaDrift(
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
  /** What the migration moves (state.ts migrationScope): the rest is not drift. */
  scope: Scope = { filter: undefined },
): Promise<DriftItem[]> {
  const [s, t] = [await catalogNow(source, ledgerSchema), await catalogNow(target, ledgerSchema)];
  return schemaDrift(s, t, scope);
}

/** Differences that replication makes normal while it runs: not drift. */
function isDrift(d: SchemaDifference): boolean {
  // A column only the target has is a note to verify (the operator may add one with a
  // default), but drift needs it: next to a column only the source has, it is a rename.
  if (d.kind === 'column' && d.problem === 'extra on target') return true;
  if (d.severity !== 'difference') return false;
  if (d.kind === 'sequence' && d.problem === 'different' && /^last_value /.test(d.source ?? '')) return false;
  if (d.kind === 'materialized view' && /populated$/.test(d.source ?? '')) return false;
  return true;
}

const memberKey = (o: { schema: string; table: string; name: string }) =>
  `${displayName(o.schema, o.table)}.${displayIdent(o.name)}`;

/** Turns verify's schema differences into drift items with their statements. */
export function schemaDrift(
  source: Catalog,
  target: Catalog,
  scope: Scope = { filter: undefined },
): DriftItem[] {
  const diffs = compareCatalogs(source, target, scope, findLayouts(source, target)).filter(isDrift);
  const src = lookup(source);
  const tgt = lookup(target);
  const items: DriftItem[] = [];
  const columnDiffs: SchemaDifference[] = [];
  for (const d of diffs) {
    const base = { kind: d.kind, object: d.object, change: changeText(d) };
    if (d.kind === 'column') {
      columnDiffs.push(d);
      continue;
    }
    if (d.kind === 'schema') {
      items.push(
        d.problem === 'missing on target'
          ? { ...base, statements: [`CREATE SCHEMA ${d.object}`], action: 'apply', step: 10 }
          : { ...base, statements: [`DROP SCHEMA ${d.object}`], ...manual('drops a schema on the target') },
      );
    } else if (d.kind === 'table' || d.kind === 'view' || d.kind === 'materialized view') {
      items.push(...relationItems(d, source, src));
    } else if (d.kind === 'index') items.push(indexItem(d, source, target));
    else if (d.kind === 'constraint') items.push(constraintItem(d, source, target));
    else if (d.kind === 'sequence') {
      const seq = source.sequences.find((x) => tableKey(x) === d.object);
      if (d.problem === 'missing on target' && seq?.identity) continue; // made with its identity column
      items.push(
        d.problem === 'missing on target' && seq
          ? { ...base, statements: [createSequence(seq)], action: 'apply', step: 20 }
          : d.problem === 'extra on target'
            ? {
                ...base,
                statements: [`DROP SEQUENCE ${d.object}`],
                ...manual('drops a sequence on the target'),
              }
            : {
                ...base,
                statements: [],
                ...manual('the sequence is defined differently: ALTER SEQUENCE by hand'),
              },
      );
    } else if (d.kind === 'trigger' && d.problem === 'missing on target') {
      const trigger = source.triggers.find((g) => memberKey(g) === d.object);
      const sql = trigger ? [trigger.definition] : [];
      items.push({
        ...base,
        statements: sql,
        ...manual('a new trigger: its function must exist on the target'),
      });
    } else if (d.kind === 'extension' && d.problem === 'missing on target') {
      const ext = `CREATE EXTENSION ${displayIdent(d.object)}`;
      items.push({
        ...base,
        statements: [ext],
        ...manual('needs the extension installed on the target server'),
      });
    } else {
      items.push({ ...base, statements: [], ...manual(`the ${d.kind} differs: align it by hand`) });
    }
  }
  items.push(...columnItems(columnDiffs, src, tgt));
  return items.sort((a, b) => a.step - b.step);
}

function relationItems(d: SchemaDifference, source: Catalog, src: Lookup): DriftItem[] {
  const base = { kind: d.kind, object: d.object, change: changeText(d) };
  const s = src.tables.get(d.object);
  const word = d.kind === 'table' ? 'TABLE' : d.kind === 'view' ? 'VIEW' : 'MATERIALIZED VIEW';
  if (d.problem === 'extra on target')
    return [
      { ...base, statements: [`DROP ${word} ${d.object}`], ...manual(`drops a ${d.kind} on the target`) },
    ];
  if (d.problem !== 'missing on target' || !s)
    return [{ ...base, statements: [], ...manual(`the ${d.kind} differs: recreate it by hand`) }];
  if (s.relkind === 'v')
    return [
      {
        ...base,
        statements: [`CREATE VIEW ${d.object} AS ${s.definition ?? ''}`],
        action: 'apply',
        step: 60,
      },
    ];
  if (s.relkind !== 'r' && s.relkind !== 'p')
    return [
      {
        ...base,
        statements:
          s.relkind === 'm' ? [`CREATE MATERIALIZED VIEW ${d.object} AS ${s.definition ?? ''}`] : [],
        ...manual(`a new ${d.kind}: create it by hand`),
      },
    ];
  const own = <T extends { schema: string; table: string }>(x: T) =>
    x.schema === s.schema && x.table === s.name;
  const constraints = source.constraints.filter(own);
  const items: DriftItem[] = [
    {
      ...base,
      change: `missing on target (${s.columns.map((c) => `${displayIdent(c.name)} ${describeColumn(c)}`).join(', ')})`,
      statements: createTable(s, s.parent ? [] : constraints, s.parent ? [] : source.indexes.filter(own)),
      action: 'apply',
      step: s.parent ? 31 : 30,
      newTable: { schema: s.schema, name: s.name },
    },
  ];
  // Foreign keys after every new table exists (they may point at each other).
  if (!s.parent)
    for (const k of constraints.filter((x) => x.type === 'f'))
      items.push({
        kind: 'constraint',
        object: memberKey(k),
        change: 'missing on target (of a new table)',
        statements: [addConstraint(k)],
        action: 'apply',
        step: 51,
      });
  return items;
}

function indexItem(d: SchemaDifference, source: Catalog, target: Catalog): DriftItem {
  const base = { kind: d.kind, object: d.object, change: changeText(d) };
  const s = source.indexes.find((i) => displayName(i.schema, i.name) === d.object);
  if (d.problem === 'extra on target')
    return { ...base, statements: [`DROP INDEX ${d.object}`], ...manual('drops an index on the target') };
  if (d.problem === 'not valid on target')
    return {
      ...base,
      statements: [`REINDEX INDEX CONCURRENTLY ${d.object}`],
      action: 'concurrently',
      step: 70,
    };
  if (d.problem === 'missing on target' && s) {
    // The index of a missing PRIMARY KEY, UNIQUE or EXCLUDE constraint comes with it.
    const constraintMissing =
      source.constraints.some((k) => k.schema === s.schema && k.table === s.table && k.name === s.name) &&
      !target.constraints.some((k) => k.schema === s.schema && k.table === s.table && k.name === s.name);
    const index = createIndex(s);
    return {
      ...base,
      statements: constraintMissing ? [] : [index.sql],
      action: index.concurrently ? 'concurrently' : 'apply',
      step: index.concurrently ? 70 : 55,
    };
  }
  return {
    ...base,
    statements: s ? [`DROP INDEX ${d.object}`, s.definition] : [],
    ...manual('the index is defined differently: rebuild it by hand'),
  };
}

function constraintItem(d: SchemaDifference, source: Catalog, target: Catalog): DriftItem {
  const base = { kind: d.kind, object: d.object, change: changeText(d) };
  const s = source.constraints.find((k) => memberKey(k) === d.object);
  const t = target.constraints.find((k) => memberKey(k) === d.object);
  if (d.problem === 'missing on target' && s)
    return { ...base, statements: [addConstraint(s)], action: 'apply', step: s.type === 'f' ? 51 : 50 };
  if (d.problem === 'not valid on target' && t)
    return {
      ...base,
      statements: [
        `ALTER TABLE ${displayName(t.schema, t.table)} VALIDATE CONSTRAINT ${displayIdent(t.name)}`,
      ],
      action: 'apply',
      step: 52,
    };
  if (d.problem === 'extra on target' && t)
    return { ...base, statements: [dropConstraint(t)], ...manual('drops a constraint on the target') };
  return {
    ...base,
    statements: s && t ? [dropConstraint(t), addConstraint(s)] : [],
    ...manual('the constraint is defined differently: replace it by hand'),
  };
}

/** One sentence for a refusal or a warning: what sync-schema applies, and what is left to the operator. */
export function driftSummary(drift: DriftItem[]): string {
  const auto = drift.filter((d) => d.action !== 'manual');
  const left = drift.filter((d) => d.action === 'manual');
  const parts: string[] = [];
  if (auto.length > 0)
    parts.push(`pgconvoy sync-schema applies ${auto.length} of them (--dry-run shows how)`);
  if (left.length > 0)
    parts.push(
      `left to you (${left.length}): ${left
        .map(
          (d) =>
            `${d.object}: ${d.reason ?? ''}${d.statements.length ? ` — ${d.statements.join('; ')}` : ''}`,
        )
        .join(' | ')}`,
    );
  return parts.join('; ');
}
