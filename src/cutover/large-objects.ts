/**
 * Large objects are not replicated (they live in pg_largeobject, which no publication can
 * carry): while writes are frozen, the receiving side's large objects are replaced by the
 * sending side's, same OIDs, in one transaction, piece by piece so memory stays at one
 * piece. Used by cutover (source → target) and rollback (target → source).
 *
 * Checked with PostgreSQL 13 and 15 on one side and 17 on the other.
 */
import type pg from 'pg';

const PIECE = 1024 * 1024;

export async function replaceLargeObjects(
  from: pg.Client,
  to: pg.Client,
): Promise<{ count: number; bytes: number }> {
  const list = 'SELECT m.oid::text AS oid FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid';
  const oids = (await from.query<{ oid: string }>(list)).rows.map((r) => r.oid);
  const existing = (await to.query<{ oid: string }>(list)).rows.length;
  if (oids.length === 0 && existing === 0) return { count: 0, bytes: 0 };
  let bytes = 0;
  await to.query('BEGIN');
  try {
    await to.query('SELECT pg_catalog.lo_unlink(m.oid) FROM pg_catalog.pg_largeobject_metadata m');
    for (const oid of oids) {
      await to.query('SELECT pg_catalog.lo_create($1::oid)', [oid]);
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
    }
    await to.query('COMMIT');
  } catch (err) {
    await to.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return { count: oids.length, bytes };
}
