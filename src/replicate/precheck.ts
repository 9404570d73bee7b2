/**
 * `runPrecheck`: everything that decides whether an online migration (logical replication
 * from source to target) can work, as rows of pass / warn / fail / info with a hint each.
 * Any `fail` blocks (the CLI exits with EXIT.blocked). Read-only on both servers, except
 * for the reachability test, which creates a subscription on the target inside a
 * transaction and rolls it back (see reachability.ts).
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import { DEFAULTS } from '../defaults.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly, withClients } from '../connect/session.js';
import { replicationNames } from './names.js';
import { probeSourceFromTarget, type ReachabilityResult } from './reachability.js';
import { subscriptionConninfo } from './subscription.js';
import { openReplicationClient } from './replication-client.js';
import { errorMessage } from '../errors.js';
import { readSettings, row, type CheckStatus, type PrecheckRow, type Settings } from './precheck-rows.js';
import {
  checkFreezeRights,
  checkSourceRole,
  checkSourceSettings,
  checkSourceTables,
} from './precheck-source.js';
import { checkSourceActivity, leftoverSlotsRow } from './precheck-activity.js';
import { checkReadAccess } from './precheck-access.js';
import { checkCollation } from './precheck-collation.js';
import { checkPartitionFit } from './precheck-partitions.js';
import type { TableRef } from '../plan/chunk.js';
import {
  checkExtensions,
  checkTargetRole,
  checkTargetSettings,
  passwordLoggedRow,
  reachabilityRow,
} from './precheck-target.js';

export type { CheckStatus, PrecheckRow } from './precheck-rows.js';

export interface PrecheckOptions {
  /** Schema of pgconvoy's ledger on the target; never part of the migration. */
  ledgerSchema?: string;
  longTransactionSeconds?: number;
  /** How the TARGET server reaches the source, when it differs from `source` (libpq string). */
  sourceFromTarget?: string;
  /** Test the path from the target server to the source (default true). */
  testReachability?: boolean;
  /** The tables the migration copies (start's filters); all by default. */
  includeTable?: (t: TableRef) => boolean;
  /** Source columns left behind (`--exclude-column`). */
  leftOut?: (t: TableRef, column: string) => boolean;
  /**
   * 'relay': pgconvoy applies the changes itself (start --via relay), so the target needs
   * ordinary write rights only: no subscription right, no path to the source. Instead the
   * replication connection from here to the source is tried.
   */
  via?: 'subscription' | 'relay';
}

export interface ServerSummary {
  connection: string;
  version: string;
  major: number;
}

export interface PrecheckReport {
  /** No row failed: online migration can start. */
  ok: boolean;
  source: ServerSummary;
  target: ServerSummary;
  /** The names pgconvoy will use for its publication, slot and subscription. */
  names: { publication: string; slot: string; subscription: string };
  rows: PrecheckRow[];
  counts: Record<CheckStatus, number>;
}

function summary(spec: ConnectionSpec, settings: Settings): ServerSummary {
  const num = settings.int('server_version_num') ?? 0;
  return {
    connection: describeConnection(spec),
    version: settings.text('server_version') ?? '?',
    major: Math.floor(num / 10000),
  };
}

function versionRow(side: 'source' | 'target', s: ServerSummary, other?: ServerSummary): PrecheckRow {
  const base = { id: `${side}.version`, side, check: 'version' };
  if (s.major < 10) {
    return row({
      ...base,
      status: 'fail',
      detail: `PostgreSQL ${s.version}: logical replication needs 10 or later`,
      hint: 'upgrade this server, or use pgconvoy clone (offline copy) instead',
    });
  }
  if (other && s.major < other.major) {
    return row({
      ...base,
      status: 'warn',
      detail: `PostgreSQL ${s.version}, older than the source's ${other.version}`,
      hint: 'replication works, but the schema dumped from a newer source may use features the target lacks',
    });
  }
  return row({ ...base, status: 'pass', detail: `PostgreSQL ${s.version}` });
}

export async function runPrecheck(
  source: ConnectionSpec,
  target: ConnectionSpec,
  options: PrecheckOptions = {},
): Promise<PrecheckReport> {
  const ledgerSchema = options.ledgerSchema ?? DEFAULTS.ledgerSchema;
  const longTransactionSeconds = options.longTransactionSeconds ?? DEFAULTS.longTransactionSeconds;
  const names = replicationNames(source.database);
  const session = { applicationName: 'pgconvoy precheck' };
  return withClients(
    source,
    target,
    async (src, tgt) => {
      const srcSettings = await readSettings(src);
      const tgtSettings = await readSettings(tgt);
      const sourceSummary = summary(source, srcSettings);
      const targetSummary = summary(target, tgtSettings);
      const rows: PrecheckRow[] = [versionRow('source', sourceSummary)];
      const replicable = sourceSummary.major >= 10;
      if (replicable) {
        rows.push(...(await checkSourceSettings(src, srcSettings, names)));
        rows.push(await checkSourceRole(src));
        rows.push(...(await checkFreezeRights(src)));
        rows.push(...(await checkSourceTables(src, { ledgerSchema, longTransactionSeconds, names })));
        rows.push(...(await checkReadAccess(src, 'source', ledgerSchema)));
        rows.push(...(await checkSourceActivity(src, { ledgerSchema, longTransactionSeconds, names })));
      }
      rows.push(versionRow('target', targetSummary, sourceSummary));
      let probe: ReachabilityResult | undefined;
      if (options.via === 'relay') {
        rows.push(await relayConnectionRow(source));
        rows.push(
          row({
            id: 'target.relay',
            side: 'target',
            check: 'relay',
            status: 'info',
            detail:
              'pgconvoy applies the changes itself (--via relay): the target needs no subscription right and no path to the source',
          }),
        );
      } else if (targetSummary.major >= 10) {
        rows.push(...(await checkTargetSettings(tgt, tgtSettings, names.subscription)));
        if (options.testReachability !== false) {
          probe = await probeSourceFromTarget(tgt, subscriptionConninfo(source, options.sourceFromTarget));
        }
        rows.push(await checkTargetRole(tgt, targetSummary.major, source.password !== undefined, probe));
        rows.push(
          reachabilityRow(
            probe,
            options.sourceFromTarget
              ? 'the source (as --source-from-target names it)'
              : describeConnection(source),
          ),
        );
        if (probe?.loggedBy) rows.push(passwordLoggedRow(probe.loggedBy));
        rows.push(await leftoverSlotsRow(tgt, 'target', names.backSlot));
      }
      rows.push(...(await checkReadAccess(tgt, 'target', ledgerSchema)));
      rows.push(...(await checkExtensions(src, tgt)));
      rows.push(await checkCollation(src, sourceSummary.major, tgt, targetSummary.major));
      if (replicable)
        rows.push(
          ...(await checkPartitionFit(src, tgt, {
            ledgerSchema,
            ...(options.includeTable ? { includeTable: options.includeTable } : {}),
            ...(options.leftOut ? { leftOut: options.leftOut } : {}),
          })),
        );
      const counts: Record<CheckStatus, number> = { pass: 0, warn: 0, fail: 0, info: 0 };
      for (const r of rows) counts[r.status]++;
      return {
        ok: counts.fail === 0,
        source: sourceSummary,
        target: targetSummary,
        names: { publication: names.publication, slot: names.slot, subscription: names.subscription },
        rows,
        counts,
      };
    },
    session,
  );
}

/** The relay streams over a replication connection from this machine: try one. */
async function relayConnectionRow(source: ConnectionSpec): Promise<PrecheckRow> {
  const base = { id: 'source.relay-connection', side: 'source' as const, check: 'replication connection' };
  try {
    const client = await openReplicationClient(source, 'pgconvoy precheck');
    try {
      await client.query('IDENTIFY_SYSTEM');
    } finally {
      await closeQuietly(client);
    }
    return row({
      ...base,
      status: 'pass',
      detail: 'pgconvoy opened a replication connection to the source (for the relay)',
    });
  } catch (err) {
    return row({
      ...base,
      status: 'fail',
      detail: `the relay's replication connection to the source failed: ${errorMessage(err)}`,
      hint: "the source role needs REPLICATION (or the cloud's replication role), and the source's pg_hba.conf must let it connect to the database from this machine",
    });
  }
}
