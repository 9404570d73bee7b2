/**
 * The source half of `pgconvoy precheck`: can this server publish its changes, and what will
 * logical replication not carry (so that it is copied at cutover instead)?
 * Checked on PostgreSQL 13 and 15 (and 17 as a back-replication source).
 */
import type pg from 'pg';
import { readInventory } from '../inventory/inventory.js';
import { displayName, quoteIdent } from '../util/sql.js';
import { formatBytes } from '../util/format.js';
import type { ReplicationNames } from './names.js';
import { publishableTables, readReplicationTables, tablesWithoutIdentity } from './replication-tables.js';
import { firstItems, readRole, row, type PrecheckRow, type Settings } from './precheck-rows.js';

export interface SourceCheckOptions {
  ledgerSchema: string;
  longTransactionSeconds: number;
  names: ReplicationNames;
}

export async function checkSourceSettings(
  client: pg.Client,
  settings: Settings,
  names: ReplicationNames,
): Promise<PrecheckRow[]> {
  const rows: PrecheckRow[] = [];
  const walLevel = settings.text('wal_level') ?? '?';
  const rds = settings.text('rds.logical_replication');
  rows.push(
    walLevel === 'logical'
      ? row({ id: 'source.wal_level', side: 'source', status: 'pass', check: 'wal_level', detail: 'logical' })
      : row({
          id: 'source.wal_level',
          side: 'source',
          status: 'fail',
          check: 'wal_level',
          detail: `${walLevel}: logical replication needs wal_level = logical`,
          hint: `run ALTER SYSTEM SET wal_level = logical; on the source and restart it; on Amazon RDS / Aurora set rds.logical_replication = 1 in the parameter group and reboot${rds !== undefined ? ` (rds.logical_replication is ${rds} now)` : ''}`,
        }),
  );

  const usage = await client.query<{ slots: string; walsenders: string; own_slot: boolean }>(
    `SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots) AS slots,
            (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'walsender') AS walsenders,
            EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1) AS own_slot`,
    [names.slot],
  );
  const u = usage.rows[0];
  const slotsUsed = Number(u?.slots ?? 0);
  const walsenders = Number(u?.walsenders ?? 0);
  const maxSlots = settings.int('max_replication_slots') ?? 0;
  const needSlots = u?.own_slot ? 0 : 1;
  const freeSlots = maxSlots - slotsUsed;
  rows.push(
    row({
      id: 'source.max_replication_slots',
      side: 'source',
      status: freeSlots >= needSlots ? 'pass' : 'fail',
      check: 'max_replication_slots',
      detail: `${maxSlots} configured, ${slotsUsed} in use, ${freeSlots} free; pgconvoy needs 1${u?.own_slot ? ` (its slot "${names.slot}" exists already)` : ''}`,
      ...(freeSlots >= needSlots
        ? {}
        : {
            hint: `raise max_replication_slots to at least ${slotsUsed + needSlots} (restart needed), or drop slots nobody uses`,
          }),
    }),
  );
  const maxSenders = settings.int('max_wal_senders') ?? 0;
  const freeSenders = maxSenders - walsenders;
  rows.push(
    row({
      id: 'source.max_wal_senders',
      side: 'source',
      status: freeSenders >= 1 ? 'pass' : 'fail',
      check: 'max_wal_senders',
      detail: `${maxSenders} configured, ${walsenders} in use, ${freeSenders} free; pgconvoy needs 1 (the subscription's stream; creating the slot uses it briefly first)`,
      ...(freeSenders >= 1
        ? {}
        : { hint: `raise max_wal_senders to at least ${walsenders + 1} (restart needed)` }),
    }),
  );
  const workers = settings.int('max_worker_processes') ?? 0;
  const logicalWorkers = settings.int('max_logical_replication_workers') ?? 0;
  const backOk = workers >= 2 && logicalWorkers >= 1;
  rows.push(
    row({
      id: 'source.max_worker_processes',
      side: 'source',
      status: backOk ? 'pass' : 'warn',
      check: 'max_worker_processes',
      detail: `${workers} (max_logical_replication_workers ${logicalWorkers}); not used for source → target; back-replication after cutover makes the source a subscriber: 2 workers (launcher + 1 apply), 1 logical replication worker`,
      ...(backOk
        ? {}
        : {
            hint: 'raise max_worker_processes to 2 or more and max_logical_replication_workers to 1 or more before cutover if you want back-replication (restart needed)',
          }),
    }),
  );

  const keep = settings.int('max_slot_wal_keep_size');
  if (keep === undefined) {
    rows.push(
      row({
        id: 'source.max_slot_wal_keep_size',
        side: 'source',
        status: 'info',
        check: 'max_slot_wal_keep_size',
        detail: 'not on this version: the slot keeps WAL without limit',
        hint: "watch the source's free disk while replication runs (the WAL a slot holds: SELECT slot_name, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) FROM pg_replication_slots)",
      }),
    );
  } else if (keep < 0) {
    rows.push(
      row({
        id: 'source.max_slot_wal_keep_size',
        side: 'source',
        status: 'info',
        check: 'max_slot_wal_keep_size',
        detail: '-1 (unlimited): the slot keeps all WAL the target has not confirmed',
        hint: "watch the source's free disk while replication runs (the WAL a slot holds: SELECT slot_name, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) FROM pg_replication_slots)",
      }),
    );
  } else {
    rows.push(
      row({
        id: 'source.max_slot_wal_keep_size',
        side: 'source',
        status: 'warn',
        check: 'max_slot_wal_keep_size',
        detail: `${formatBytes(keep * 1024 * 1024)}: a slot that falls further behind is invalidated`,
        hint: 'an invalidated slot means starting the migration again: make sure the initial copy finishes before the slot holds that much WAL, or set it to -1 during the migration',
      }),
    );
  }
  return rows;
}

export async function checkSourceRole(client: pg.Client): Promise<PrecheckRow> {
  const role = await readRole(client);
  const via = role.superuser
    ? 'superuser'
    : role.replication
      ? 'REPLICATION'
      : role.memberOf.find((r) => r === 'rds_replication' || r === 'rds_superuser');
  if (via) {
    return row({
      id: 'source.role',
      side: 'source',
      status: 'pass',
      check: 'replication right',
      detail: `role "${role.name}" has ${via}`,
    });
  }
  return row({
    id: 'source.role',
    side: 'source',
    status: 'fail',
    check: 'replication right',
    detail: `role "${role.name}" is neither superuser nor has REPLICATION: it cannot create the slot, and the subscription cannot stream as it`,
    hint: `as a superuser run ALTER ROLE "${role.name}" WITH REPLICATION; on Amazon RDS GRANT rds_replication TO "${role.name}"`,
  });
}

export async function checkSourceTables(
  client: pg.Client,
  options: SourceCheckOptions,
): Promise<PrecheckRow[]> {
  const rows: PrecheckRow[] = [];
  const role = await readRole(client);
  const tables = await readReplicationTables(client, options.ledgerSchema);
  const published = publishableTables(tables);
  const notOwned = published.filter((t) => !t.owned).map((t) => displayName(t.schema, t.name));
  const mayPublish = role.superuser || (role.createOnDatabase && notOwned.length === 0);
  rows.push(
    row({
      id: 'source.publication_rights',
      side: 'source',
      status: mayPublish ? 'pass' : 'fail',
      check: 'publication right',
      detail: mayPublish
        ? `role "${role.name}" may publish the ${published.length} replicated tables`
        : `role "${role.name}" ${role.createOnDatabase ? '' : 'has no CREATE on the database and '}does not own ${notOwned.length} of the ${published.length} tables to publish`,
      ...(mayPublish
        ? {}
        : {
            hint: "CREATE PUBLICATION needs CREATE on the database and ownership of every table in it: use the tables' owner (or a superuser) for --source",
            items: firstItems(notOwned),
          }),
    }),
  );
  const noIdentity = tablesWithoutIdentity(tables).map((t) => displayName(t.schema, t.name));
  rows.push(
    noIdentity.length === 0
      ? row({
          id: 'source.replica_identity',
          side: 'source',
          status: 'pass',
          check: 'primary keys',
          detail: `all ${published.length} logged tables have a primary key or replica identity`,
        })
      : row({
          id: 'source.replica_identity',
          side: 'source',
          status: 'warn',
          check: 'primary keys',
          detail: `${noIdentity.length} table(s) without a primary key or usable replica identity: not replicated, copied at cutover`,
          hint: "they are never added to the publication, because a published table without replica identity makes the SOURCE application's UPDATE and DELETE on it fail; their rows will be copied at cutover, while writes are stopped. To replicate one continuously, add a primary key or ALTER TABLE ... REPLICA IDENTITY USING INDEX (a unique index on NOT NULL columns)",
          items: noIdentity,
        }),
  );
  const unlogged = tables
    .filter((t) => t.kind === 'table' && t.unlogged)
    .map((t) => displayName(t.schema, t.name));
  if (unlogged.length > 0) {
    rows.push(
      row({
        id: 'source.unlogged',
        side: 'source',
        status: 'warn',
        check: 'unlogged tables',
        detail: `${unlogged.length} unlogged table(s): not written to WAL, so not replicated; copied at cutover`,
        hint: 'keep writes to them stopped from cutover on, or make them logged (ALTER TABLE ... SET LOGGED) to replicate them',
        items: unlogged,
      }),
    );
  }
  const inventory = await readInventory(client, options.ledgerSchema);
  rows.push(
    row({
      id: 'source.sequences',
      side: 'source',
      status: 'info',
      check: 'sequences',
      detail: `${inventory.sequences.length} sequence(s): not replicated, their values are set on the target at cutover`,
    }),
  );
  rows.push(
    inventory.largeObjects === 0
      ? row({
          id: 'source.large_objects',
          side: 'source',
          status: 'pass',
          check: 'large objects',
          detail: 'none',
        })
      : row({
          id: 'source.large_objects',
          side: 'source',
          status: 'warn',
          check: 'large objects',
          detail: `${inventory.largeObjects} large object(s): not replicated, copied at cutover`,
          hint: 'cutover copies them while writes are stopped; many or big ones make the cutover longer',
        }),
  );
  return rows;
}

/**
 * What cutover's write freeze needs (cutover/write-freeze.ts): the database's owner or a
 * superuser to make the database read-only and revoke CONNECT; pg_signal_backend (or
 * superuser) to end other roles' sessions, without which cutover waits for them to end.
 */
export async function checkFreezeRights(client: pg.Client): Promise<PrecheckRow[]> {
  const res = await client.query<{
    role: string;
    db: string;
    owner: boolean;
    superuser: boolean;
    signal: boolean;
  }>(
    `SELECT current_user AS role, pg_catalog.current_database() AS db,
            pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE') AS owner,
            r.rolsuper AS superuser,
            r.rolsuper OR pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signal
     FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
     WHERE d.datname = pg_catalog.current_database() AND r.rolname = current_user`,
  );
  const r = res.rows[0];
  if (!r) return [];
  const role = quoteIdent(r.role);
  const db = quoteIdent(r.db);
  return [
    r.owner || r.superuser
      ? row({
          id: 'source.freeze_rights',
          side: 'source',
          status: 'pass',
          check: 'write freeze at cutover',
          detail: `role "${r.role}" ${r.superuser ? 'is a superuser' : 'owns the database'}: it can make the database read-only and revoke CONNECT`,
        })
      : row({
          id: 'source.freeze_rights',
          side: 'source',
          status: 'fail',
          check: 'write freeze at cutover',
          detail: `role "${r.role}" does not own database ${db}: cutover could not stop the application's writes there`,
          hint: `run pgconvoy as the database's owner, or as a superuser: ALTER DATABASE ${db} OWNER TO ${role}`,
        }),
    r.signal
      ? row({
          id: 'source.end_sessions',
          side: 'source',
          status: 'pass',
          check: "ending others' sessions",
          detail: `role "${r.role}" may end other roles' sessions at the freeze`,
        })
      : row({
          id: 'source.end_sessions',
          side: 'source',
          status: 'warn',
          check: "ending others' sessions",
          detail: `role "${r.role}" may not end other roles' sessions: at the freeze, cutover waits (up to --timeout) for the application's open sessions to end and names them`,
          hint: `GRANT pg_signal_backend TO ${role}; (as a superuser or the cloud's admin role), or end the application's sessions yourself when cutover asks`,
        }),
  ];
}
