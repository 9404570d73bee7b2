/**
 * The target half of `pgconvoy precheck`: can this server run one more subscription, may the
 * role create it, can the target server itself reach the source, and does it have every
 * extension the source uses? Checked with PostgreSQL 17 as the target (and 13, 15).
 */
import type pg from 'pg';
import type { ReachabilityResult } from './reachability.js';
import { extensionGaps, extensionPackageHint } from '../schema/extensions.js';
import { serverMajor } from '../inventory/server-info.js';
import { readRole, row, type PrecheckRow, type RoleFacts, type Settings } from './precheck-rows.js';

/** Processes that are not background workers, as pg_stat_activity.backend_type names them (10–17). */
const NOT_BGWORKERS = [
  'client backend',
  'walsender',
  'autovacuum launcher',
  'autovacuum worker',
  'background writer',
  'checkpointer',
  'walwriter',
  'startup',
  'archiver',
  'walreceiver',
  'walsummarizer',
  'slotsync worker',
  'io worker',
  'standalone backend',
];

export async function checkTargetSettings(
  client: pg.Client,
  settings: Settings,
  subscription: string,
): Promise<PrecheckRow[]> {
  const rows: PrecheckRow[] = [];
  const usage = await client.query<{
    logical_workers: string;
    enabled_subs: string;
    bgworkers: string;
    own: boolean;
  }>(
    `SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
             WHERE a.backend_type LIKE 'logical replication%' AND a.backend_type <> 'logical replication launcher') AS logical_workers,
            (SELECT pg_catalog.count(*) FROM pg_catalog.pg_subscription s WHERE s.subenabled AND s.subname <> $1) AS enabled_subs,
            (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a WHERE a.backend_type <> ALL ($2::text[])) AS bgworkers,
            EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s WHERE s.subname = $1 AND s.subenabled) AS own`,
    [subscription, NOT_BGWORKERS],
  );
  const u = usage.rows[0];
  const need = u?.own ? 0 : 1;
  const inUse = Math.max(Number(u?.logical_workers ?? 0), Number(u?.enabled_subs ?? 0));
  const maxLogical = settings.int('max_logical_replication_workers') ?? 0;
  const freeLogical = maxLogical - inUse;
  rows.push(
    row({
      id: 'target.max_logical_replication_workers',
      side: 'target',
      status: freeLogical >= need ? 'pass' : 'fail',
      check: 'max_logical_replication_workers',
      detail: `${maxLogical} configured, ${inUse} in use, ${freeLogical} free; pgconvoy needs 1 (one apply worker: it copies the tables itself, so no table-sync workers)`,
      ...(freeLogical >= need
        ? {}
        : { hint: `raise max_logical_replication_workers to at least ${inUse + 1} (restart needed)` }),
    }),
  );
  const maxWorkers = settings.int('max_worker_processes') ?? 0;
  const bgworkers = Number(u?.bgworkers ?? 0);
  const freeWorkers = maxWorkers - bgworkers;
  rows.push(
    row({
      id: 'target.max_worker_processes',
      side: 'target',
      status: freeWorkers >= need ? 'pass' : 'fail',
      check: 'max_worker_processes',
      detail: `${maxWorkers} configured, ${bgworkers} background workers running (the logical replication launcher among them), ${freeWorkers} free; pgconvoy needs 1 for the apply worker (parallel queries draw from the same pool)`,
      ...(freeWorkers >= need
        ? {}
        : { hint: `raise max_worker_processes to at least ${bgworkers + 1 + 2} (restart needed)` }),
    }),
  );
  const walLevel = settings.text('wal_level') ?? '?';
  rows.push(
    walLevel === 'logical'
      ? row({
          id: 'target.wal_level',
          side: 'target',
          status: 'pass',
          check: 'wal_level (back-replication)',
          detail: 'logical: the target can replicate back to the source after cutover',
        })
      : row({
          id: 'target.wal_level',
          side: 'target',
          status: 'warn',
          check: 'wal_level (back-replication)',
          detail: `${walLevel}: not needed to migrate, but back-replication (rollback after cutover without losing the target's writes) needs logical`,
          hint: 'ALTER SYSTEM SET wal_level = logical; on the target and restart it before cutover if you want that safety net',
        }),
  );
  return rows;
}

/** May the target role create a subscription? Refined by the reachability probe, which tries it. */
export async function checkTargetRole(
  client: pg.Client,
  major: number,
  sourceHasPassword: boolean,
  probe: ReachabilityResult | undefined,
): Promise<PrecheckRow> {
  const role: RoleFacts = await readRole(client);
  const base = { id: 'target.role', side: 'target' as const, check: 'subscription right' };
  if (probe?.status === 'denied') {
    return row({
      ...base,
      status: 'fail',
      detail: `role "${role.name}" may not create subscriptions: ${probe.message}`,
      hint: subscriptionHint(role.name, major),
    });
  }
  if (role.superuser) return row({ ...base, status: 'pass', detail: `role "${role.name}" is superuser` });
  if (major >= 16 && role.memberOf.includes('pg_create_subscription')) {
    if (!role.createOnDatabase) {
      return row({
        ...base,
        status: 'fail',
        detail: `role "${role.name}" is in pg_create_subscription but has no CREATE on the database`,
        hint: `GRANT CREATE ON DATABASE <target db> TO "${role.name}"`,
      });
    }
    if (!sourceHasPassword) {
      return row({
        ...base,
        status: 'fail',
        detail: `role "${role.name}" is not superuser, so its subscription must log in to the source with a password, and the source connection has none`,
        hint: 'put the source password in --source, PGPASSWORD or the password file',
      });
    }
    return row({
      ...base,
      status: 'pass',
      detail: `role "${role.name}" is in pg_create_subscription and has CREATE on the database (its subscription logs in with a password)`,
    });
  }
  if (probe?.status === 'reached' || probe?.status === 'unreachable') {
    // CREATE SUBSCRIPTION checks the right before it connects: the test got past it.
    return row({
      ...base,
      status: 'pass',
      detail: `role "${role.name}" may create subscriptions (the test subscription was allowed)`,
    });
  }
  const cloud = role.memberOf.find((r) =>
    ['rds_superuser', 'azure_pg_admin', 'cloudsqlsuperuser', 'alloydbsuperuser'].includes(r),
  );
  if (cloud) {
    return row({
      ...base,
      status: 'warn',
      detail: `role "${role.name}" is in ${cloud}, which the provider usually lets create subscriptions (not tested)`,
      hint: 'run precheck with the reachability test on to find out for sure',
    });
  }
  return row({
    ...base,
    status: 'fail',
    detail: `role "${role.name}" may not create subscriptions`,
    hint: subscriptionHint(role.name, major),
  });
}

function subscriptionHint(name: string, major: number): string {
  return major >= 16
    ? `GRANT pg_create_subscription TO "${name}" and GRANT CREATE ON DATABASE to it, or use a superuser for --target`
    : `before PostgreSQL 16 only a superuser (or a cloud admin role such as rds_superuser) may create subscriptions: use one for --target`;
}

export function reachabilityRow(probe: ReachabilityResult | undefined, where: string): PrecheckRow {
  const base = { id: 'target.reaches_source', side: 'target' as const, check: 'target reaches source' };
  if (!probe)
    return row({
      ...base,
      status: 'warn',
      detail: 'not tested (turned off)',
      hint: 'the subscription is opened BY THE TARGET SERVER: make sure it can connect to the source',
    });
  switch (probe.status) {
    case 'reached':
      return row({
        ...base,
        status: 'pass',
        detail: `the target server opened a replication connection to ${where} (a test subscription, rolled back)`,
      });
    case 'denied':
      return row({
        ...base,
        status: 'warn',
        detail: 'not tested: the target role may not create subscriptions',
        hint: 'grant the right (see "subscription right"), then run precheck again',
      });
    case 'unreachable':
      return row({
        ...base,
        status: 'fail',
        detail: `the target server could not connect to ${where}: ${probe.message}`,
        hint: 'the subscription connects FROM THE TARGET SERVER: check the network path and firewall from it, the source\'s pg_hba.conf for the target\'s address (database entry, not "replication"), the password and REPLICATION right; if the target sees the source under another address, pass it with --source-from-target',
      });
    case 'error':
      return row({
        ...base,
        status: 'fail',
        detail: `the test subscription failed: ${probe.message}`,
        hint: 'see the message; the test creates nothing (it is rolled back)',
      });
  }
}

/** The test subscription's text, password included, may be in the target's log. */
export function passwordLoggedRow(loggedBy: string[]): PrecheckRow {
  return row({
    id: 'target.password_logged',
    side: 'target',
    check: 'password kept out of the log',
    status: 'warn',
    detail: `the target server may have logged the test subscription's connection string, password included (${loggedBy.join(', ')})`,
    hint: "pgconvoy turns statement logging off for its own session when its role may (superuser); otherwise remove the line from the target's log, or give the target server a password file so that the connection string needs none",
  });
}

export async function checkExtensions(source: pg.Client, target: pg.Client): Promise<PrecheckRow[]> {
  const { used, missing, notInstalled } = await extensionGaps(source, target);
  const targetMajor = await serverMajor(target);
  const rows: PrecheckRow[] = [];
  const base = { side: 'target' as const, check: 'extensions' };
  if (missing.length > 0) {
    rows.push(
      row({
        ...base,
        id: 'target.extensions_missing',
        status: 'fail',
        detail: `${missing.length} extension(s) of the source are not available on the target server`,
        hint: `install their packages on the target server (or drop them from the source if unused): the schema cannot be created without them; ${missing.map((e) => extensionPackageHint(e.name, targetMajor)).join('; ')}`,
        items: missing.map((e) => `${e.name} ${e.version}`),
      }),
    );
  }
  if (notInstalled.length > 0) {
    rows.push(
      row({
        ...base,
        id: 'target.extensions_not_installed',
        status: 'warn',
        detail: `${notInstalled.length} extension(s) of the source are available on the target but not installed in its database`,
        hint: 'the schema step creates them (CREATE EXTENSION), which may need a superuser or a trusted extension; or create them now',
        items: notInstalled.map((e) => `${e.name} ${e.version} (target default ${e.targetDefault ?? '?'})`),
      }),
    );
  }
  if (rows.length === 0) {
    rows.push(
      row({
        ...base,
        id: 'target.extensions',
        status: 'pass',
        detail:
          used.length === 0
            ? 'the source uses none besides plpgsql'
            : `all ${used.length} are installed on the target`,
      }),
    );
  }
  return rows;
}
