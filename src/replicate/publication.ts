/**
 * The publication on the source: which tables' changes the slot streams.
 *
 * Partitioned tables: the publication lists partitions, never their partitioned parent,
 * and leaves `publish_via_partition_root` at its default (false). Every change is then
 * published under the partition it happened in, which is exactly the table the copy filled
 * on the target (pg_dump recreates the same partitions there), and the same on every
 * version from 10 (which cannot publish a parent at all) to 17. Publishing via the root
 * (13+) is only for a target the operator laid out with the partitioned table as one plain
 * table (`start --schema skip`): then that parent is published, with
 * `publish_via_partition_root` (see copy/partitioned-source.ts).
 *
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { lockHolders, lockHoldersHint } from '../inventory/lock-holders.js';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import type { TableRef } from '../plan/chunk.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import { publishableTables, readReplicationTables, type ReplicationTable } from './replication-tables.js';
import { SQLSTATE } from '../sqlstate.js';

export interface PublicationResult {
  name: string;
  /** False when it existed already (its table list is then brought up to date). */
  created: boolean;
  /** Tables now in the publication. */
  published: TableRef[];
  /** Tables asked for but left out, and why. */
  skipped: { table: TableRef; reason: string }[];
}

const key = (t: TableRef) => `${t.schema}\u0000${t.name}`;

/**
 * Creates publication `name` FOR TABLE the given tables, or, when it exists, sets its table
 * list to them. Only tables with a primary key or another usable replica identity are
 * published (see replication-tables.ts for why); the others are returned in `skipped`.
 *
 * @example await createPublication(source, 'pgconvoy_shop', [{ schema: 'public', name: 'Order Items' }])
 * // CREATE PUBLICATION "pgconvoy_shop" FOR TABLE "public"."Order Items"
 */
export async function createPublication(
  client: pg.Client,
  name: string,
  tables: TableRef[],
  options: {
    /**
     * Publish partitions' changes as their partitioned parent's, for partitioned tables in
     * `tables` (a target that has them as plain tables: copy/partitioned-source.ts; 13+).
     */
    viaPartitionRoot?: boolean;
    /** How long to wait for each table's lock (pg_dump's --lock-wait-timeout). */
    lockWaitTimeoutMs?: number;
  } = {},
): Promise<PublicationResult> {
  const viaRoot = options.viaPartitionRoot ?? false;
  const lockWaitTimeoutMs = options.lockWaitTimeoutMs ?? DEFAULTS.lockWaitTimeoutMs;
  const { published, skipped } = await splitPublishable(client, tables, viaRoot);
  const list = published.map((t) => qualifiedName(t.schema, t.name)).join(', ');
  const withRoot = viaRoot ? ' WITH (publish_via_partition_root = true)' : '';

  // Adding tables to a publication locks each of them: wait a bounded time for that, and
  // say so, rather than queue behind someone's long DDL (and queue the application behind us).
  await client.query("SELECT pg_catalog.set_config('lock_timeout', $1, false)", [`${lockWaitTimeoutMs}ms`]);
  try {
    const existing = await client.query<{ oid: number; puballtables: boolean }>(
      'SELECT p.oid, p.puballtables FROM pg_catalog.pg_publication p WHERE p.pubname = $1',
      [name],
    );
    const pub = existing.rows[0];
    if (!pub) {
      await client.query(
        `CREATE PUBLICATION ${quoteIdent(name)}${list ? ` FOR TABLE ${list}` : ''}${withRoot}`,
      );
      return { name, created: true, published, skipped };
    }
    if (pub.puballtables) {
      throw new PgconvoyError(`publication "${name}" exists on the source and publishes ALL TABLES`, {
        code: 'PUBLICATION_CONFLICT',
        hint: 'pgconvoy did not create it that way; drop it (DROP PUBLICATION) or run pgconvoy teardown, then start again',
        exitCode: EXIT.source,
      });
    }
    const current = await client.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_catalog.pg_publication_rel pr
       JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE pr.prpubid = $1`,
      [pub.oid],
    );
    if (viaRoot)
      await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET (publish_via_partition_root = true)`);
    const have = new Set(current.rows.map(key));
    const same = have.size === published.length && published.every((t) => have.has(key(t)));
    if (!same) {
      if (list) {
        await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${list}`);
      } else {
        const all = current.rows.map((t) => qualifiedName(t.schema, t.name)).join(', ');
        await client.query(`ALTER PUBLICATION ${quoteIdent(name)} DROP TABLE ${all}`);
      }
    }
    return { name, created: false, published, skipped };
  } catch (err) {
    if (err instanceof PgconvoyError) throw err;
    if (serverErrorFields(err)?.code === SQLSTATE.lockNotAvailable) {
      const holders = await lockHolders(
        client,
        published.map((t) => qualifiedName(t.schema, t.name)),
        'ShareUpdateExclusiveLock',
      ).catch(() => []);
      throw new PgconvoyError(
        `waited ${lockWaitTimeoutMs / 1000} s (--lock-wait-timeout) for a lock on the tables of publication "${name}" on the source, in vain`,
        {
          code: 'LOCK_TIMEOUT',
          exitCode: EXIT.source,
          hint: `adding a table to a publication takes SHARE UPDATE EXCLUSIVE on it, and another session holds a lock that excludes it (a long transaction that ran DDL, VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY): ${lockHoldersHint(holders)}`,
          details: { holders },
          cause: err,
        },
      );
    }
    if (serverErrorFields(err)?.code === SQLSTATE.insufficientPrivilege) {
      throw new PgconvoyError(`not allowed to create publication "${name}" on the source`, {
        code: 'PUBLICATION_DENIED',
        hint: `the source role needs CREATE on the database and must own every published table (or be superuser); tables: ${published.map((t) => displayName(t.schema, t.name)).join(', ')}`,
        exitCode: EXIT.source,
        cause: err,
      });
    }
    throw new PgconvoyError(`could not create publication "${name}" on the source: ${errorMessage(err)}`, {
      code: 'PUBLICATION_FAILED',
      hint: 'run pgconvoy precheck to see what the source lacks',
      exitCode: EXIT.source,
      cause: err,
    });
  } finally {
    await client.query('RESET lock_timeout').catch(() => undefined);
  }
}

/** Via the root, a partitioned table is published like a plain one (its identity decides). */
const asPlain = (t: ReplicationTable): ReplicationTable =>
  t.kind === 'partitioned' ? { ...t, kind: 'table' } : t;

/** The tables among `tables` that can be published, and the others with the reason. */
async function splitPublishable(
  client: pg.Client,
  tables: TableRef[],
  viaRoot = false,
): Promise<{ published: TableRef[]; skipped: PublicationResult['skipped'] }> {
  const known = new Map((await readReplicationTables(client)).map((t) => [key(t), t]));
  const all = [...known.values()];
  const usable = new Set(publishableTables(viaRoot ? all.map(asPlain) : all).map(key));
  const published: TableRef[] = [];
  const skipped: PublicationResult['skipped'] = [];
  for (const table of tables) {
    const info = known.get(key(table));
    if (usable.has(key(table))) published.push({ schema: table.schema, name: table.name });
    else if (!info) skipped.push({ table, reason: 'no such table' });
    else if (info.kind === 'partitioned')
      skipped.push({ table, reason: 'partitioned: its partitions are published' });
    else if (info.unlogged) skipped.push({ table, reason: 'unlogged: not in WAL, copied at cutover' });
    else skipped.push({ table, reason: 'no primary key or replica identity: copied at cutover' });
  }
  return { published, skipped };
}

/**
 * Adds tables made after start to publication `name` (those that can be published; the
 * others are returned in `skipped`, copied at cutover).
 */
export async function addPublicationTables(
  client: pg.Client,
  name: string,
  tables: TableRef[],
): Promise<{ published: TableRef[]; skipped: PublicationResult['skipped'] }> {
  const split = await splitPublishable(client, tables);
  if (split.published.length > 0)
    await client.query(
      `ALTER PUBLICATION ${quoteIdent(name)} ADD TABLE ${split.published.map((t) => qualifiedName(t.schema, t.name)).join(', ')}`,
    );
  return split;
}

/** Drops publication `name` if it exists; true when it did. */
export async function dropPublication(client: pg.Client, name: string): Promise<boolean> {
  const res = await client.query('SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1', [name]);
  if (res.rowCount === 0) return false;
  await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`);
  return true;
}
