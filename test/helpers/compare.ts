/**
 * Test-side truth: per-table row counts and content checksums computed independently of
 * pgconvoy's own verify code (md5 of each row's text, sorted, hashed), and catalog facts.
 */
import assert from 'node:assert/strict';
import type { LocalServer } from '../../src/sandbox/local-server.js';

const PIN = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex';`;

export interface TableFacts {
  rows: number;
  checksum: string;
  distinctRows: number;
}

export async function tableFacts(server: LocalServer, db: string, qualified: string): Promise<TableFacts> {
  const rows = await server.sql<{ n: string; d: string; sum: string }>(
    `${PIN} SELECT count(*) AS n, count(DISTINCT md5(t::text)) AS d, coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), 'empty') AS sum FROM ONLY ${qualified} t`,
    db,
  );
  const r = rows[0]!;
  return { rows: Number(r.n), checksum: r.sum, distinctRows: Number(r.d) };
}

/** Every ordinary table (and partition) of a database, as a quoted qualified name. */
export async function userTables(server: LocalServer, db: string, exclude = 'pgconvoy'): Promise<string[]> {
  const rows = await server.sql<{ q: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS q FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname !~ '^pg_toast' ORDER BY 1`,
    db,
    [exclude],
  );
  return rows.map((r) => r.q);
}

export async function catalogFacts(server: LocalServer, db: string): Promise<Record<string, unknown>> {
  const rows = await server.sql<Record<string, unknown>>(
    `SELECT
       (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgconvoy') AND n.nspname !~ '^pg_toast') AS indexes,
       (SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgconvoy') AND n.nspname !~ '^pg_toast') AS indexes_valid,
       (SELECT array_agg(conname::text || ':' || contype::text || ':' || convalidated::text ORDER BY conname) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgconvoy') AND k.contype IN ('p', 'u', 'f', 'c', 'x')) AS constraints,
       (SELECT array_agg(tgname::text || ':' || tgenabled::text ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
       (SELECT array_agg(x ORDER BY x) FROM (SELECT format('%I.%I', schemaname, sequencename) || '=' || coalesce(last_value::text, 'null') AS x FROM pg_sequences WHERE schemaname <> 'pgconvoy') q) AS sequences,
       (SELECT array_agg(x ORDER BY x) FROM (SELECT format('%I.%I', schemaname, matviewname) || ':' || ispopulated::text AS x FROM pg_matviews) q) AS matviews,
       (SELECT count(*)::int FROM pg_largeobject_metadata) AS large_objects,
       (SELECT array_agg(format('%I.%I.%I', n.nspname, c.relname, a.attname) ORDER BY n.nspname, c.relname, a.attname) FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attnotnull AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgconvoy') AND n.nspname !~ '^pg_toast') AS not_null`,
    db,
  );
  return rows[0]!;
}

/** Same tables, and per table the same row count and content checksum, on both sides. */
export async function assertSameData(
  source: LocalServer,
  sdb: string,
  target: LocalServer,
  tdb: string,
): Promise<void> {
  const tables = await userTables(source, sdb);
  assert.deepEqual(await userTables(target, tdb), tables, 'same tables');
  for (const t of tables) {
    const [s, d] = await Promise.all([tableFacts(source, sdb, t), tableFacts(target, tdb, t)]);
    assert.deepEqual(d, s, `table ${t}`);
  }
}

/**
 * A database's own definition, as pg_dump --create would carry it: encoding, locale and
 * provider, owner, comment, connection limit, settings and privileges (role names, not OIDs).
 */
export async function databaseFacts(
  server: LocalServer,
  major: number,
  db: string,
): Promise<Record<string, unknown>> {
  const provider = major >= 15 ? 'd.datlocprovider::text' : `'c'`;
  const locale = major >= 17 ? 'd.datlocale' : major >= 15 ? 'd.daticulocale' : 'NULL::text';
  const rows = await server.sql<Record<string, unknown>>(
    `SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, d.datctype AS ctype,
            ${provider} AS provider, ${locale} AS locale, pg_get_userbyid(d.datdba) AS owner,
            shobj_description(d.oid, 'pg_database') AS comment, d.datconnlimit AS connection_limit,
            (SELECT array_agg(x ORDER BY x) FROM (
               SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC') || ':' || a.privilege_type || ':' || a.is_grantable AS x
               FROM aclexplode(d.datacl) a) q) AS acl,
            (SELECT array_agg(x ORDER BY x) FROM (
               SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '') || ':' || array_to_string(s.setconfig, ';') AS x
               FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) q) AS settings
     FROM pg_database d WHERE d.datname = $1`,
    'postgres',
    [db],
  );
  return rows[0]!;
}

/** pgconvoy's replication objects (or anyone's) left in a database: slots, subscriptions, publications. */
export async function replicationObjects(
  server: LocalServer,
  db: string,
): Promise<{ slots: number; subs: number; pubs: number }> {
  const rows = await server.sql<{ slots: number; subs: number; pubs: number }>(
    `SELECT (SELECT count(*)::int FROM pg_replication_slots WHERE database = current_database()) AS slots,
            (SELECT count(*)::int FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())) AS subs,
            (SELECT count(*)::int FROM pg_publication) AS pubs`,
    db,
  );
  return rows[0]!;
}

/**
 * PostgreSQL 18 keeps NOT NULL as constraints in pg_constraint (contype 'n'), one per
 * attnotnull column: returns the columns where the two disagree (none on 18 and later).
 */
export async function notNullWithoutConstraint(server: LocalServer, db: string): Promise<string[]> {
  const rows = await server.sql<{ c: string }>(
    `SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname) AS c
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE a.attnotnull AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgconvoy') AND n.nspname !~ '^pg_toast'
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'n' AND k.conkey = ARRAY[a.attnum])
     ORDER BY 1`,
    db,
  );
  return rows.map((r) => r.c);
}

/** Every sequence's last_value (pgconvoy's own left out), by quoted qualified name. */
export async function sequenceValues(server: LocalServer, db: string): Promise<Map<string, bigint>> {
  const rows = await server.sql<{ name: string; v: string | null }>(
    "SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text AS v FROM pg_sequences WHERE schemaname <> 'pgconvoy' ORDER BY 1",
    db,
  );
  return new Map(rows.map((r) => [r.name, BigInt(r.v ?? '0')]));
}
