/**
 * Large objects live in pg_largeobject, which neither a dump's data section here nor a
 * publication carries: they are copied with the same OIDs, in one transaction on the
 * receiving side, piece by piece so memory stays at one piece. Used by clone (after the copy,
 * in its snapshot), cutover (source → target) and rollback (target → source).
 *
 * Checked with PostgreSQL 13 and 15 on one side and 17 on the other.
 */
import type pg from 'pg';
import { inTransaction } from '../connect/session.js';

const PIECE = 1024 * 1024;
const LIST_SQL = 'SELECT m.oid::text AS oid FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid';

export interface LargeObjectsCopied {
  count: number;
  bytes: number;
}

export interface LargeObjectOptions {
  /** Unlink the receiving side's large objects first (cutover, rollback); clone's target has none. */
  replace: boolean;
  /** Runs in the receiving transaction before COMMIT (clone's ledger mark commits with the data). */
  beforeCommit?: (to: pg.Client, copied: LargeObjectsCopied) => Promise<void>;
}

/** Copies every large object of `from` to `to`. */
export async function copyLargeObjects(
  from: pg.Client,
  to: pg.Client,
  options: LargeObjectOptions,
): Promise<LargeObjectsCopied> {
  const oids = (await from.query<{ oid: string }>(LIST_SQL)).rows.map((r) => r.oid);
  if (options.replace && !options.beforeCommit && oids.length === 0) {
    const existing = (await to.query<{ oid: string }>(LIST_SQL)).rows.length;
    if (existing === 0) return { count: 0, bytes: 0 };
  }
  return inTransaction(to, async () => {
    if (options.replace) {
      await to.query('SELECT pg_catalog.lo_unlink(m.oid) FROM pg_catalog.pg_largeobject_metadata m');
    }
    let bytes = 0;
    for (const oid of oids) bytes += await copyOne(from, to, oid);
    const copied = { count: oids.length, bytes };
    await options.beforeCommit?.(to, copied);
    return copied;
  });
}

/** One large object, piece by piece; returns its size. */
async function copyOne(from: pg.Client, to: pg.Client, oid: string): Promise<number> {
  await to.query('SELECT pg_catalog.lo_create($1::oid)', [oid]);
  let bytes = 0;
  for (let offset = 0; ; offset += PIECE) {
    const res = await from.query<{ piece: Buffer }>(
      'SELECT pg_catalog.lo_get($1::oid, $2::int8, $3) AS piece',
      [oid, offset, PIECE],
    );
    const piece = res.rows[0]?.piece;
    if (!piece || piece.length === 0) break;
    await to.query('SELECT pg_catalog.lo_put($1::oid, $2::int8, $3::bytea)', [oid, offset, piece]);
    bytes += piece.length;
    if (piece.length < PIECE) break;
  }
  return bytes;
}
