/**
 * `pgconvoy status`: where the migration stands, from the target's ledger.
 */
import { phaseSince } from '../../replicate/online-state.js';
import type { Command } from 'commander';
import { DEFAULTS } from '../../defaults.js';
import { withClient } from '../../connect/session.js';
import { describeConnection } from '../../connect/resolve.js';
import { readLedgerStatus, type LedgerStatus } from '../../ledger/ledger-status.js';
import { ledgerPhase, nextStep } from '../../observe/next-step.js';
import { readOnlineStatus, type OnlineStatusReport } from '../../online/online-status.js';
import { formatBytes, formatCount, formatDuration } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { textTable } from '../../util/text-table.js';
import { err, isTTY, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { positiveInt } from '../parse-options.js';
import { sleep } from '../../util/wait.js';

interface StatusFlags extends ConnectionFlags {
  ledgerSchema: string;
  json?: boolean;
  watch?: number | boolean;
  all?: boolean;
}

function printStatus(target: string, s: LedgerStatus, all: boolean): void {
  if (!s.exists) {
    out(`${target}: no pgconvoy ledger here (nothing started yet)`);
    return;
  }
  const c = s.counts;
  const phase = ledgerPhase(s);
  out(`${target}  (from ${s.source ?? '?'})`);
  out(`  phase: ${phase}`);
  out(
    `  jobs: ${c.done} done, ${c.running} running, ${c.failed} failed, ${c.pending} pending (of ${c.total})`,
  );
  out(
    `  data: ${formatBytes(s.bytesDone)} of ~${formatBytes(s.bytesEstimated)}, ${formatCount(s.rowsDone)} rows`,
  );
  out(
    `  steps done: ${s.steps.filter((x) => !x.startsWith('indexes:')).join(', ') || '-'}; tables indexed: ${s.steps.filter((x) => x.startsWith('indexes:')).length}`,
  );
  const shown = s.jobs.filter((j) => all || j.state !== 'done' || s.running.some((r) => r.job.id === j.id));
  if (shown.length > 0) {
    out('');
    const holder = new Map(s.running.map((r) => [r.job.id, r.worker]));
    out(
      textTable(
        ['JOB', 'TABLE', 'CHUNK', 'STATE', 'ROWS', 'WORKER / ERROR'],
        shown.map((j) => [
          String(j.id),
          displayName(j.table.schema, j.table.name),
          j.chunkLabel,
          holder.has(j.id) ? 'running' : j.state,
          j.rows === null ? '' : formatCount(j.rows),
          holder.get(j.id) ?? j.doneBy ?? j.error ?? '',
        ]),
        '  ',
      ),
    );
  }
  const next = nextStep(s, undefined);
  if (next) {
    out('');
    out(`  next: ${next}`);
  }
}

/** The online migration's phase, replication lag, retained WAL and warnings. */
function printOnline(o: OnlineStatusReport, withSource: boolean): void {
  const s = o.state;
  const since = phaseSince(s);
  out(
    `  online phase: ${s.phase}${since ? ` (since ${since.toISOString()})` : ''}; slot "${s.names.slot}", start LSN ${s.startLsn ?? '-'}`,
  );
  const r = o.replication;
  const relay = o.relay;
  if (relay) {
    const p = relay.progress;
    out(
      `  relay (pgconvoy applies the changes): ${relay.running ? `running (walsender pid ${relay.walsenderPid ?? '?'}${p?.host ? `, relay on ${p.host} pid ${p.pid ?? '?'}` : ''})` : 'NOT RUNNING'}; applied ${p?.appliedLsn ?? '?'} at ${p?.appliedAt.toISOString() ?? '?'}, lag ${relay.lagBytes === undefined ? '?' : formatBytes(relay.lagBytes)}; ${formatCount(p?.changes)} changes in ${formatCount(p?.transactions)} transactions since start`,
    );
    out(
      `    slot ${relay.slotFound ? `keeps ${formatBytes(relay.retainedWalBytes ?? 0)} of WAL${relay.walStatus ? ` (${relay.walStatus})` : ''}` : 'missing'}`,
    );
  } else if (r && o.direction) {
    const label =
      o.direction === 'forward' ? 'replication source → target' : 'back-replication target → source';
    const lagSeconds = r.lagSeconds === undefined ? '?' : `${r.lagSeconds.toFixed(1)} s`;
    out(`  ${label}: lag ${r.lagBytes === undefined ? '?' : formatBytes(r.lagBytes)}, ${lagSeconds}`);
    out(
      `    slot ${r.slot ? `${r.slot.active ? 'active' : 'INACTIVE'}, keeps ${formatBytes(r.slot.retainedWalBytes ?? 0)} of WAL${r.slot.walStatus ? ` (${r.slot.walStatus})` : ''}` : 'missing'}; subscription ${r.subscription ? `${r.subscription.enabled ? 'enabled' : 'disabled'}, apply errors ${r.subscription.applyErrorCount ?? 'n/a before 15'}` : 'missing'}`,
    );
  } else if (!withSource && s.phase !== 'rolled-back') {
    out('  (pass --source to see the replication lag and the WAL the slot keeps)');
  }
  printSchemaState(o);
  if (s.back)
    out(
      `  back-replication: ${s.back.createdAt ? `running since ${s.back.createdAt}` : 'prepared (started at cutover)'}`,
    );
  if (s.writesBlockedMs !== null)
    out(`  cutover at ${s.cutoverLsn ?? '?'}: writes were blocked for ${formatDuration(s.writesBlockedMs)}`);
  if (o.freeze && !o.freeze.releasedAt)
    out(
      `  source database "${o.freeze.database}" frozen since ${o.freeze.recordedAt.toISOString()}${o.freeze.provenLsn ? ` (proven at ${o.freeze.provenLsn})` : ' (not proven yet: run cutover again)'}: read-only, CONNECT only for pgconvoy's roles; pgconvoy rollback opens it again`,
    );
  for (const w of o.warnings) err(`  warning: ${w}`);
}

/** Drift between the schemas now, tables still copying, the apply error, and the source's changes since start. */
function printSchemaState(o: OnlineStatusReport): void {
  if (o.drift && o.drift.length > 0) {
    out(`  schema drift (source vs target now; DDL is not replicated): ${o.drift.length} difference(s)`);
    for (const d of o.drift) {
      const how = d.action === 'manual' ? `by hand: ${d.reason ?? ''}` : 'pgconvoy sync-schema applies it';
      out(`    ${d.kind} ${d.object} ${d.change} [${how}]`);
      for (const sql of d.statements) out(`      ${sql};`);
    }
  } else if (o.drift) {
    out("  schema: the source's and the target's agree");
  }
  if (o.syncing.length > 0)
    out(`  tables still copying (added after start): ${o.syncing.map((t) => t.table).join(', ')}`);
  if (o.applyError)
    out(`  apply worker's last error (target log, ${o.applyError.logged}): ${o.applyError.message}`);
  if (o.sourceChangesSinceStart && o.sourceChangesSinceStart.length > 0)
    out(`  source schema changes since start (history): ${o.sourceChangesSinceStart.join('; ')}`);
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show where a migration stands: jobs done/running/failed/pending and who holds them')
    .option(...TARGET_OPTION)
    .option(
      '--source <conninfo>',
      'source server (optional): adds replication lag and retained WAL of an online migration',
    )
    .option('--config <file>', 'read connections and options from a config file')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option('--all', 'list done jobs too')
    .option('--watch [seconds]', 'refresh every N seconds (default 2)', positiveInt)
    .option('--json', 'machine-readable output')
    .action(async (flags: StatusFlags) => {
      const config = loadConfig(flags.config);
      const target = connectionFor('target', flags, config)!;
      const source = connectionFor('source', flags, config, false);
      const interval = flags.watch === true ? 2 : typeof flags.watch === 'number' ? flags.watch : 0;
      for (;;) {
        const session = { applicationName: 'pgconvoy status' };
        const { status, online } = await withClient(
          target,
          async (client) => {
            const ledger = await readLedgerStatus(client, flags.ledgerSchema);
            const report: OnlineStatusReport | undefined = source
              ? await withClient(source, (src) => readOnlineStatus(client, src, flags.ledgerSchema), session)
              : await readOnlineStatus(client, undefined, flags.ledgerSchema);
            return { status: ledger, online: report };
          },
          session,
        );
        if (flags.json) outJson({ ok: true, target: describeConnection(target), ...status, online });
        else {
          if (interval && isTTY()) process.stdout.write('\x1b[2J\x1b[H');
          printStatus(describeConnection(target), status, Boolean(flags.all));
          if (online) printOnline(online, source !== undefined);
        }
        if (!interval) return;
        await sleep(interval * 1000);
      }
    });
}
