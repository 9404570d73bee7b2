/**
 * What a server is and what the connecting role may do there. Checked on 13, 15, 17.
 */
import type pg from 'pg';

export interface ServerInfo {
  versionNum: number;
  major: number;
  version: string;
  database: string;
  settings: Record<string, string>;
  role: RoleRights;
}

export interface RoleRights {
  name: string;
  superuser: boolean;
  replication: boolean;
  createdb: boolean;
  createrole: boolean;
  /** Cloud stand-ins for superuser that the role belongs to (rds_superuser, ...). */
  cloudAdminRoles: string[];
  createOnDatabase: boolean;
  /** May this role SET session_replication_role (needed to load with triggers and FK checks off)? */
  canSetReplicationRole: boolean;
  /** Member of pg_create_subscription (16+) */
  canCreateSubscription: boolean;
}

export const INTERESTING_SETTINGS = [
  'wal_level',
  'max_replication_slots',
  'max_wal_senders',
  'max_worker_processes',
  'max_logical_replication_workers',
  'max_wal_size',
  'maintenance_work_mem',
  'max_slot_wal_keep_size',
  'max_connections',
  'server_encoding',
  'shared_preload_libraries',
] as const;

const SETTINGS_SQL = `
SELECT name, setting, unit
FROM pg_catalog.pg_settings
WHERE name = ANY($1::text[])`;

// pg_has_role() errors on a role that does not exist, so look the names up first.
const ROLE_SQL = `
SELECT r.rolname AS name,
       r.rolsuper AS superuser,
       r.rolreplication AS replication,
       r.rolcreatedb AS createdb,
       r.rolcreaterole AS createrole,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS create_on_database,
       ARRAY(SELECT a.rolname::text
             FROM pg_catalog.pg_roles a
             WHERE a.rolname IN ('rds_superuser', 'azure_pg_admin', 'cloudsqlsuperuser', 'alloydbsuperuser', 'pg_create_subscription')
               AND pg_catalog.pg_has_role(r.oid, a.oid, 'MEMBER')) AS admin_roles
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user`;

function withUnit(setting: string, unit: string | null): string {
  if (!unit) return setting;
  const n = Number(setting);
  const bytes: Record<string, number> = { B: 1, kB: 1024, '8kB': 8192, MB: 1024 ** 2, GB: 1024 ** 3 };
  const factor = bytes[unit];
  if (factor === undefined || !Number.isFinite(n) || n < 0) return `${setting}${unit}`;
  const total = n * factor;
  for (const [suffix, size] of [
    ['GB', 1024 ** 3],
    ['MB', 1024 ** 2],
    ['kB', 1024],
  ] as const) {
    if (total >= size && total % size === 0) return `${total / size}${suffix}`;
  }
  return `${total}B`;
}

export async function readServerInfo(client: pg.Client): Promise<ServerInfo> {
  const v = await client.query<{ num: string; version: string; db: string }>(
    "SELECT pg_catalog.current_setting('server_version_num') AS num, pg_catalog.current_setting('server_version') AS version, pg_catalog.current_database() AS db",
  );
  const versionNum = Number(v.rows[0]!.num);
  const settings: Record<string, string> = {};
  const s = await client.query<{ name: string; setting: string; unit: string | null }>(SETTINGS_SQL, [
    INTERESTING_SETTINGS,
  ]);
  for (const row of s.rows) settings[row.name] = withUnit(row.setting, row.unit);
  const r = await client.query<{
    name: string;
    superuser: boolean;
    replication: boolean;
    createdb: boolean;
    createrole: boolean;
    create_on_database: boolean;
    admin_roles: string[];
  }>(ROLE_SQL);
  const role = r.rows[0]!;
  let canSetReplicationRole = role.superuser;
  if (!canSetReplicationRole && versionNum >= 150000) {
    // 15+ can GRANT SET ON PARAMETER session_replication_role to a non-superuser.
    const p = await client.query<{ ok: boolean }>(
      "SELECT pg_catalog.has_parameter_privilege('session_replication_role', 'SET') AS ok",
    );
    canSetReplicationRole = p.rows[0]!.ok;
  }
  const cloudAdminRoles = role.admin_roles.filter((n) => n !== 'pg_create_subscription');
  return {
    versionNum,
    major: Math.floor(versionNum / 10000),
    version: v.rows[0]!.version,
    database: v.rows[0]!.db,
    settings,
    role: {
      name: role.name,
      superuser: role.superuser,
      replication: role.replication || role.superuser,
      createdb: role.createdb,
      createrole: role.createrole,
      cloudAdminRoles,
      createOnDatabase: role.create_on_database,
      canSetReplicationRole,
      canCreateSubscription: role.superuser || role.admin_roles.includes('pg_create_subscription'),
    },
  };
}

/** The server's version as a number (170002 for 17.2), in one round trip. */
export async function serverVersionNum(client: pg.Client): Promise<number> {
  const res = await client.query<{ v: string }>(
    "SELECT pg_catalog.current_setting('server_version_num') AS v",
  );
  return Number(res.rows[0]!.v);
}

/** The server's major version (13, 14, …, 18), in one round trip. */
export async function serverMajor(client: pg.Client): Promise<number> {
  return Math.floor((await serverVersionNum(client)) / 10000);
}
