/**
 * Settings for target sessions that load data, each safe per session:
 *  - session_replication_role = replica: user triggers and foreign-key checks do not fire
 *    (only when the role may set it; otherwise the caller must make sure none exist yet);
 *  - synchronous_commit = off: a target crash may lose the last commits, but a job's rows
 *    and its "done" mark commit together, so a lost commit is simply a job done again;
 *  - no statement, lock or idle timeouts cutting a long load short;
 *  - row_security = off: COPY FROM refuses a table whose policies apply to the role anyway,
 *    and the DELETE that empties a table before a cutover copy must fail rather than
 *    delete only the rows a policy shows.
 */
import type pg from 'pg';

export interface TargetSessionOptions {
  replicationRole: boolean;
  maintenanceWorkMem?: string;
}

export async function prepareTargetSession(client: pg.Client, o: TargetSessionOptions): Promise<void> {
  const settings: [string, string][] = [
    ['synchronous_commit', 'off'],
    ['statement_timeout', '0'],
    ['lock_timeout', '0'],
    ['idle_in_transaction_session_timeout', '0'],
    ['row_security', 'off'],
  ];
  if (o.replicationRole) settings.push(['session_replication_role', 'replica']);
  if (o.maintenanceWorkMem) settings.push(['maintenance_work_mem', o.maintenanceWorkMem]);
  for (const [name, value] of settings) {
    await client.query('SELECT pg_catalog.set_config($1, $2, false)', [name, value]);
  }
}
