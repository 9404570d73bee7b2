/**
 * The subscription on the target. It is created on an existing slot (create_slot = false)
 * and copies nothing (copy_data = false): the slot already stands at the consistent point
 * of the snapshot the copy was made from, so replay starts exactly after the last copied
 * change. It is created disabled and enabled only once the copy is done.
 *
 * The connection string given to the target holds the source's password: the target
 * server needs it to connect (non-superuser subscriptions on 16+ even require one). It is
 * never logged or put in a message by pgconvoy, and the target server is kept from logging
 * the statement where the role may (quiet-logging.ts).
 *
 * Checked with PostgreSQL 13, 15 and 17 as the source and 17 as the target.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, serverErrorFields, type ErrorCode } from '../errors.js';
import { formatConninfoWithPassword, parseConninfo, type Conninfo } from '../connect/conninfo.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';
import { withoutStatementLogging, type QuietResult } from '../util/quiet-logging.js';
import { SQLSTATE } from '../sqlstate.js';

export interface SubscriptionSpec {
  name: string;
  /** libpq string the TARGET server uses to reach the source, password included. */
  sourceConninfo: string;
  publication: string;
  slotName: string;
}

/**
 * The libpq string the target server uses to reach the source: `override` when the target
 * sees the source under another address (Docker, private networks), else the source's own
 * host, port, database, user and sslmode. The password comes from `spec` when the override
 * has none. Certificate file paths are left out: they name files on pgconvoy's machine, not
 * on the target server.
 */
export function subscriptionConninfo(spec: ConnectionSpec, override?: string): string {
  const info: Conninfo = override
    ? parseConninfo(override)
    : {
        host: spec.host,
        port: String(spec.port),
        dbname: spec.database,
        user: spec.user,
        sslmode: spec.sslmode,
        ...(spec.connectTimeoutSeconds !== undefined
          ? { connect_timeout: String(spec.connectTimeoutSeconds) }
          : {}),
      };
  if (info.password === undefined && spec.password !== undefined) info.password = spec.password;
  return formatConninfoWithPassword(info);
}

const SUBSCRIPTION_SQL = `
SELECT s.subenabled AS enabled, s.subslotname AS slot_name
FROM pg_catalog.pg_subscription s
WHERE s.subname = $1
  AND s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())`; // 10+

/** The subscription `name` in the connected database, if it exists. */
export async function readSubscription(
  client: pg.Client,
  name: string,
): Promise<{ enabled: boolean; slotName: string | null } | undefined> {
  const res = await client.query<{ enabled: boolean; slot_name: string | null }>(SUBSCRIPTION_SQL, [name]);
  const row = res.rows[0];
  return row ? { enabled: row.enabled, slotName: row.slot_name } : undefined;
}

/**
 * Creates the subscription, disabled, on the existing slot, copying nothing. Idempotent: an
 * existing subscription of that name on the same slot is left as it is.
 *
 * It connects to the source once (connect = true, the default) to learn the published
 * tables: without that the target would ignore their changes.
 */
export async function createSubscription(
  client: pg.Client,
  spec: SubscriptionSpec,
): Promise<{ created: boolean; loggedBy?: string[] }> {
  const existing = await readSubscription(client, spec.name);
  if (existing) {
    if (existing.slotName !== spec.slotName) {
      throw new PgconvoyError(
        `subscription "${spec.name}" exists on the target on slot "${existing.slotName ?? 'NONE'}", not "${spec.slotName}"`,
        {
          code: 'SUBSCRIPTION_CONFLICT',
          hint: 'it is left over from another run: run pgconvoy teardown, then start again',
          exitCode: EXIT.target,
        },
      );
    }
    return { created: false };
  }
  let quiet: QuietResult<unknown>;
  try {
    quiet = await withoutStatementLogging(client, () =>
      client.query(
        `CREATE SUBSCRIPTION ${quoteIdent(spec.name)}
         CONNECTION ${quoteLiteral(spec.sourceConninfo)}
         PUBLICATION ${quoteIdent(spec.publication)}
         WITH (create_slot = false, slot_name = ${quoteLiteral(spec.slotName)}, copy_data = false, enabled = false)`,
      ),
    );
  } catch (err) {
    throw subscriptionError(err, spec.name, spec.sourceConninfo);
  }
  return quiet.loggedAlways.length ? { created: true, loggedBy: quiet.loggedAlways } : { created: true };
}

/** A server message with the conninfo's password blanked out, should the server echo any of it. */
export function scrubPassword(message: string, conninfo: string): string {
  let password: string | undefined;
  try {
    password = parseConninfo(conninfo).password;
  } catch {
    password = undefined;
  }
  return password ? message.split(password).join('********') : message;
}

function subscriptionError(err: unknown, name: string, conninfo: string): PgconvoyError {
  const fields = serverErrorFields(err);
  const message = scrubPassword(err instanceof Error ? err.message : String(err), conninfo);
  const make = (what: string, hint: string, code: ErrorCode) =>
    new PgconvoyError(`could not create subscription "${name}" on the target: ${what}`, {
      code,
      hint,
      exitCode: EXIT.target,
      cause: err,
    });
  if (fields?.code === SQLSTATE.insufficientPrivilege) {
    return make(
      message,
      'the target role must be superuser, or (16+) a member of pg_create_subscription with CREATE on the database',
      'SUBSCRIPTION_DENIED',
    );
  }
  if (/could not connect to the publisher/.test(message)) {
    return make(
      message,
      'the TARGET server connects to the source itself: check the network path and pg_hba.conf from the target to the source (pgconvoy precheck tests it)',
      'SOURCE_UNREACHABLE_FROM_TARGET',
    );
  }
  if (fields?.code === SQLSTATE.undefinedTable) {
    return make(message, 'create the schema on the target before subscribing', 'SUBSCRIPTION_TABLE_MISSING');
  }
  return make(message, 'run pgconvoy precheck to see what the target lacks', 'SUBSCRIPTION_FAILED');
}

/** Starts replay. Idempotent. */
export async function enableSubscription(client: pg.Client, name: string): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} ENABLE`);
}

/** Stops replay without dropping anything (the slot keeps the changes). Idempotent. */
export async function disableSubscription(client: pg.Client, name: string): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`);
}

/**
 * Drops subscription `name` without contacting its publisher: disable, detach it from its
 * slot, drop. The slot on the other server must then be dropped separately (teardown does).
 * Returns false when there was no such subscription.
 */
export async function dropSubscription(client: pg.Client, name: string): Promise<boolean> {
  const existing = await readSubscription(client, name);
  if (!existing) return false;
  const sub = quoteIdent(name);
  if (existing.enabled) await client.query(`ALTER SUBSCRIPTION ${sub} DISABLE`);
  if (existing.slotName !== null) await client.query(`ALTER SUBSCRIPTION ${sub} SET (slot_name = NONE)`);
  await client.query(`DROP SUBSCRIPTION IF EXISTS ${sub}`);
  return true;
}

/**
 * Makes the subscription pick up tables added to its publication since it was created or
 * last refreshed, and copy their rows (copy_data = true): PostgreSQL's table
 * synchronization copies each new table in a snapshot of its own and then applies the
 * changes made after it, handing over to the apply worker at an exact position; rows
 * already carried are never copied again. Cannot run in a transaction block.
 */
export async function refreshSubscription(client: pg.Client, name: string): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} REFRESH PUBLICATION WITH (copy_data = true)`);
}

const SYNCING_SQL = `
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS table, r.srsubstate::text AS state
FROM pg_catalog.pg_subscription_rel r
JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid
JOIN pg_catalog.pg_class c ON c.oid = r.srrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE s.subname = $1 AND r.srsubstate NOT IN ('r', 's')
  AND s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
ORDER BY 1`;

/**
 * Tables whose initial copy the subscription has not finished (state i: waiting, d: copying,
 * f: copied, catching up); an empty list when every table is ready.
 */
export async function tablesStillSyncing(
  client: pg.Client,
  name: string,
): Promise<{ table: string; state: string }[]> {
  return (await client.query<{ table: string; state: string }>(SYNCING_SQL, [name])).rows;
}
