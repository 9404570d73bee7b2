/**
 * What comes after the rows: sequences set to the source's values, large objects,
 * materialized views refreshed, ANALYZE. Each step commits together with its ledger mark.
 * Checked on 13, 15, 17.
 */
import type pg from 'pg';
import type { Steps } from '../ledger/steps.js';
import type { Inventory, TableInfo } from '../inventory/inventory.js';
import { qualifiedName } from '../util/sql.js';

/** Sequences read, and set, per statement. */
const SEQUENCE_BATCH = 500;

/**
 * Reads every sequence in the source session (which is in the copy's snapshot) and sets it on
 * the target: a few hundred per statement on each side, all in one target transaction with
 * the step's mark.
 */
export async function syncSequences(
  source: pg.Client,
  target: pg.Client,
  inventory: Inventory,
  steps: Steps,
): Promise<number> {
  await target.query('BEGIN');
  try {
    for (let start = 0; start < inventory.sequences.length; start += SEQUENCE_BATCH) {
      const names = inventory.sequences
        .slice(start, start + SEQUENCE_BATCH)
        .map((seq) => qualifiedName(seq.schema, seq.name));
      const res = await source.query<{ i: number; last_value: string; is_called: boolean }>(
        names
          .map((name, i) => `SELECT ${i} AS i, last_value::text, is_called FROM ${name}`)
          .join('\nUNION ALL '),
      );
      const rows = res.rows.map((r) => ({ ...r, name: names[Number(r.i)]! }));
      await target.query(
        `SELECT pg_catalog.setval(s.name::pg_catalog.regclass, s.value, s.called)
         FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::int8[]), pg_catalog.unnest($3::boolean[]))
              AS s(name, value, called)`,
        [rows.map((r) => r.name), rows.map((r) => r.last_value), rows.map((r) => r.is_called)],
      );
    }
    await steps.markDone(target, 'sequences', { count: inventory.sequences.length });
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return inventory.sequences.length;
}

const LO_PIECE = 1024 * 1024;

/** Copies large objects (same OIDs) piece by piece: memory stays at one piece. */
export async function copyLargeObjects(
  source: pg.Client,
  target: pg.Client,
  steps: Steps,
): Promise<{ count: number; bytes: number }> {
  const oids = (
    await source.query<{ oid: string }>(
      'SELECT oid::text FROM pg_catalog.pg_largeobject_metadata ORDER BY oid',
    )
  ).rows.map((r) => r.oid);
  let bytes = 0;
  await target.query('BEGIN');
  try {
    for (const oid of oids) {
      await target.query('SELECT pg_catalog.lo_create($1::oid)', [oid]);
      for (let offset = 0; ; offset += LO_PIECE) {
        const res = await source.query<{ piece: Buffer }>(
          'SELECT pg_catalog.lo_get($1::oid, $2::int8, $3) AS piece',
          [oid, offset, LO_PIECE],
        );
        const piece = res.rows[0]?.piece;
        if (!piece || piece.length === 0) break;
        await target.query('SELECT pg_catalog.lo_put($1::oid, $2::int8, $3::bytea)', [oid, offset, piece]);
        bytes += piece.length;
        if (piece.length < LO_PIECE) break;
      }
    }
    await steps.markDone(target, 'large-objects', { count: oids.length, bytes });
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return { count: oids.length, bytes };
}

/** Materialized views that hold data on the source, in creation order (dependencies first). */
export async function populatedMatviews(
  source: pg.Client,
  ledgerSchema: string,
): Promise<{ schema: string; name: string }[]> {
  const res = await source.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname <> $1
     ORDER BY c.oid`,
    [ledgerSchema],
  );
  return res.rows;
}

export async function refreshMatviews(
  target: pg.Client,
  views: { schema: string; name: string }[],
  steps: Steps,
): Promise<void> {
  await target.query('BEGIN');
  try {
    for (const v of views) await target.query(`REFRESH MATERIALIZED VIEW ${qualifiedName(v.schema, v.name)}`);
    await steps.markDone(target, 'materialized-views', { count: views.length });
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Tables to ANALYZE: every copied table and partitioned parent. */
export function analyzeTargets(inventory: Inventory): TableInfo[] {
  return inventory.tables.filter(
    (t) => t.kind === 'table' || t.kind === 'partitioned' || t.kind === 'materialized-view',
  );
}
