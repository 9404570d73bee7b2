/**
 * The vocabulary of `pgconvoy precheck`: one row per thing checked, with a status, what was
 * found (with the numbers), and a hint saying what to do. Plus the few catalog reads that
 * both sides' checks share. Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'info';

export interface PrecheckRow {
  /** Stable identifier, e.g. "source.wal_level". */
  id: string;
  side: 'source' | 'target';
  status: CheckStatus;
  /** What was checked, short: "wal_level". */
  check: string;
  /** What was found, with the numbers. */
  detail: string;
  /** What to do about it (warn and fail rows; some info rows). */
  hint?: string;
  /** The tables, transactions, slots ... the row is about. */
  items?: string[];
}

export const row = (r: PrecheckRow): PrecheckRow => r;

/** pg_settings values as text, and as integers where they are numbers. */
export class Settings {
  constructor(private readonly values: Map<string, string>) {}
  text(name: string): string | undefined {
    return this.values.get(name);
  }
  int(name: string): number | undefined {
    const v = this.values.get(name);
    return v === undefined || !/^-?\d+$/.test(v) ? undefined : Number(v);
  }
}

const SETTINGS = [
  'server_version_num',
  'server_version',
  'wal_level',
  'max_replication_slots',
  'max_wal_senders',
  'max_worker_processes',
  'max_logical_replication_workers',
  'max_slot_wal_keep_size',
  'rds.logical_replication',
];

export async function readSettings(client: pg.Client): Promise<Settings> {
  const res = await client.query<{ name: string; setting: string }>(
    'SELECT s.name, s.setting FROM pg_catalog.pg_settings s WHERE s.name = ANY($1::text[])',
    [SETTINGS],
  );
  return new Settings(new Map(res.rows.map((r) => [r.name, r.setting])));
}

export interface RoleFacts {
  name: string;
  superuser: boolean;
  replication: boolean;
  createOnDatabase: boolean;
  /** Predefined and cloud admin roles the role is a member of. */
  memberOf: string[];
}

const ROLE_SQL = `
SELECT r.rolname AS name,
       r.rolsuper AS superuser,
       r.rolreplication AS replication,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS create_on_database,
       ARRAY(SELECT a.rolname::text
             FROM pg_catalog.pg_roles a
             WHERE a.rolname IN ('rds_superuser', 'rds_replication', 'azure_pg_admin', 'cloudsqlsuperuser',
                                 'alloydbsuperuser', 'pg_create_subscription', 'pg_read_all_stats', 'pg_signal_backend')
               AND pg_catalog.pg_has_role(r.oid, a.oid, 'MEMBER')
             ORDER BY 1) AS member_of
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user`;

export async function readRole(client: pg.Client): Promise<RoleFacts> {
  const res = await client.query<{
    name: string;
    superuser: boolean;
    replication: boolean;
    create_on_database: boolean;
    member_of: string[];
  }>(ROLE_SQL);
  const r = res.rows[0];
  if (!r) throw new Error('current_user is not in pg_roles');
  return {
    name: r.name,
    superuser: r.superuser,
    replication: r.replication,
    createOnDatabase: r.create_on_database,
    memberOf: r.member_of,
  };
}

export interface LeftoverSlot {
  name: string;
  database: string | null;
  active: boolean;
  retainedBytes: number | null;
}

/** Replication slots named like pgconvoy's on the connected server (all databases). */
export async function readPgconvoySlots(client: pg.Client): Promise<LeftoverSlot[]> {
  const res = await client.query<{
    name: string;
    database: string | null;
    active: boolean;
    retained: string | null;
  }>(
    `SELECT s.slot_name AS name, s.database, s.active,
            pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::int8 AS retained
     FROM pg_catalog.pg_replication_slots s
     WHERE s.slot_name LIKE 'pgconvoy\\_%'
     ORDER BY s.slot_name`,
  );
  return res.rows.map((r) => ({
    name: r.name,
    database: r.database,
    active: r.active,
    retainedBytes: r.retained === null ? null : Number(r.retained),
  }));
}

/** At most `max` items, then "... and N more". */
export function firstItems(items: string[], max = 10): string[] {
  return items.length <= max ? items : [...items.slice(0, max), `... and ${items.length - max} more`];
}
