/**
 * What is going on on a server right now that would delay or endanger replication: long
 * and prepared transactions on the source (creating the slot waits for them), and pgconvoy
 * slots nobody streams from (they keep WAL until the disk is full).
 * Checked on PostgreSQL 13, 15 and 17.
 */
import type pg from 'pg';
import { formatBytes, formatDuration } from '../util/format.js';
import { firstItems, readPgconvoySlots, readRole, row, type PrecheckRow } from './precheck-rows.js';
import type { SourceCheckOptions } from './precheck-source.js';

export async function checkSourceActivity(
  client: pg.Client,
  options: SourceCheckOptions,
): Promise<PrecheckRow[]> {
  const rows: PrecheckRow[] = [];
  const role = await readRole(client);
  const seesAll = role.superuser || role.memberOf.includes('pg_read_all_stats');
  const long = await client.query<{
    pid: number;
    usename: string | null;
    application_name: string | null;
    state: string | null;
    datname: string | null;
    seconds: number;
  }>(
    `SELECT a.pid, a.usename, a.application_name, a.state, a.datname,
            EXTRACT(EPOCH FROM pg_catalog.now() - a.xact_start)::float8 AS seconds
     FROM pg_catalog.pg_stat_activity a
     WHERE a.xact_start < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
       AND a.pid <> pg_catalog.pg_backend_pid()
     ORDER BY a.xact_start`,
    [options.longTransactionSeconds],
  );
  const limit = formatDuration(options.longTransactionSeconds * 1000);
  rows.push(
    long.rows.length === 0
      ? row({
          id: 'source.long_transactions',
          side: 'source',
          status: 'pass',
          check: 'long transactions',
          detail: `none open longer than ${limit}${seesAll ? '' : ' (among the sessions this role may see)'}`,
        })
      : row({
          id: 'source.long_transactions',
          side: 'source',
          status: 'warn',
          check: 'long transactions',
          detail: `${long.rows.length} transaction(s) open longer than ${limit}`,
          hint: 'creating the slot waits until every transaction open at that moment has ended, and they hold back the slot and VACUUM: end them (SELECT pg_terminate_backend(pid)) or wait before starting',
          items: firstItems(
            long.rows.map(
              (t) =>
                `pid ${t.pid} ${t.usename ?? '?'}@${t.datname ?? '?'} "${t.application_name ?? ''}" ${t.state ?? '?'} for ${formatDuration(t.seconds * 1000)}`,
            ),
          ),
        }),
  );
  const prepared = await client.query<{ gid: string; owner: string; database: string; seconds: number }>(
    `SELECT p.gid, p.owner, p.database, EXTRACT(EPOCH FROM pg_catalog.now() - p.prepared)::float8 AS seconds
     FROM pg_catalog.pg_prepared_xacts p ORDER BY p.prepared`,
  );
  rows.push(
    prepared.rows.length === 0
      ? row({
          id: 'source.prepared_transactions',
          side: 'source',
          status: 'pass',
          check: 'prepared transactions',
          detail: 'none',
        })
      : row({
          id: 'source.prepared_transactions',
          side: 'source',
          status: 'warn',
          check: 'prepared transactions',
          detail: `${prepared.rows.length} prepared transaction(s): the slot cannot be created until they are committed or rolled back`,
          hint: "finish them: COMMIT PREPARED 'gid' or ROLLBACK PREPARED 'gid' (ask their owner which)",
          items: firstItems(
            prepared.rows.map(
              (p) =>
                `'${p.gid}' by ${p.owner} in ${p.database}, prepared ${formatDuration(p.seconds * 1000)} ago`,
            ),
          ),
        }),
  );
  rows.push(await leftoverSlotsRow(client, 'source', options.names.slot));
  return rows;
}

/** pgconvoy slots nobody streams from: they keep WAL until the disk is full. */
export async function leftoverSlotsRow(
  client: pg.Client,
  side: 'source' | 'target',
  ownSlot: string,
): Promise<PrecheckRow> {
  const slots = await readPgconvoySlots(client);
  const inactive = slots.filter((s) => !s.active);
  const describe = (s: (typeof slots)[number]) =>
    `${s.name} (database ${s.database ?? '?'}, ${s.active ? 'active' : 'inactive'}, holds ${s.retainedBytes === null ? '?' : formatBytes(s.retainedBytes)} of WAL)${s.name === ownSlot ? " — this migration's slot" : ''}`;
  if (inactive.length === 0) {
    return row({
      id: `${side}.leftover_slots`,
      side,
      status: 'pass',
      check: 'leftover pgconvoy slots',
      detail: slots.length === 0 ? 'none' : `none inactive; active: ${slots.map((s) => s.name).join(', ')}`,
    });
  }
  return row({
    id: `${side}.leftover_slots`,
    side,
    status: 'warn',
    check: 'leftover pgconvoy slots',
    detail: `${inactive.length} inactive pgconvoy replication slot(s) on the ${side}: a forgotten slot keeps WAL until the disk is full`,
    hint: `run pgconvoy teardown for the migration they belong to, or drop one with SELECT pg_drop_replication_slot('name') on the ${side}`,
    items: inactive.map(describe),
  });
}
