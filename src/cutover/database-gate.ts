/**
 * The gate of a write freeze on the source database: who holds CONNECT, its own
 * default_transaction_read_only, and opening it again exactly as it was (see write-freeze.ts).
 */
import type pg from 'pg';
import { markFreezeReleased, readFreeze, type ConnectGrant } from '../replicate/freeze-record.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';

export const CONNECT_HOLDERS_SQL = `
SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE r.rolname END AS grantee, x.is_grantable AS grantable
FROM pg_catalog.pg_database d,
     LATERAL pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) x
     LEFT JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
WHERE d.datname = pg_catalog.current_database() AND x.privilege_type = 'CONNECT'
  AND (x.grantee = 0 OR r.rolname IS NOT NULL)
ORDER BY 1`;

export const DATABASE_READ_ONLY_SQL = `
SELECT (SELECT pg_catalog.substr(c, pg_catalog.length('default_transaction_read_only=') + 1)
        FROM pg_catalog.unnest(s.setconfig) c WHERE c LIKE 'default\\_transaction\\_read\\_only=%') AS value
FROM pg_catalog.pg_db_role_setting s
JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
WHERE d.datname = pg_catalog.current_database() AND s.setrole = 0`;

/**
 * Opens the source database again exactly as the ledger says it was before the freeze:
 * CONNECT given back to whoever lost it (with grant option where they had it), CONNECT taken
 * from the roles pgconvoy granted it to, the database's read-only default as it was.
 * Returns the grantees given back. Idempotent; a no-op when nothing is frozen.
 */
export async function releaseFreeze(
  source: pg.Client,
  target: pg.Client,
  ledgerSchema: string,
): Promise<string[]> {
  const record = await readFreeze(target, ledgerSchema);
  if (!record || record.releasedAt) return [];
  const qdb = quoteIdent(record.database);
  const now = (await source.query<ConnectGrant>(CONNECT_HOLDERS_SQL)).rows;
  const holding = new Map(now.map((h) => [h.grantee, h.grantable]));
  const roles = new Set(
    (await source.query<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles')).rows.map(
      (r) => r.rolname,
    ),
  );
  const given: string[] = [];
  for (const g of record.priorConnect) {
    if (holding.get(g.grantee) === g.grantable) continue;
    if (g.grantee !== 'PUBLIC' && !roles.has(g.grantee)) continue; // dropped since: nothing to give back
    const who = g.grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(g.grantee);
    await source.query(
      `GRANT CONNECT ON DATABASE ${qdb} TO ${who}${g.grantable ? ' WITH GRANT OPTION' : ''}`,
    );
    given.push(g.grantee);
  }
  const prior = new Set(record.priorConnect.map((g) => g.grantee));
  for (const role of record.granted)
    if (!prior.has(role) && roles.has(role))
      await source.query(`REVOKE CONNECT ON DATABASE ${qdb} FROM ${quoteIdent(role)}`);
  await source.query(
    record.priorReadOnly === null
      ? `ALTER DATABASE ${qdb} RESET default_transaction_read_only`
      : `ALTER DATABASE ${qdb} SET default_transaction_read_only = ${quoteLiteral(record.priorReadOnly)}`,
  );
  await markFreezeReleased(target, ledgerSchema);
  return given;
}
