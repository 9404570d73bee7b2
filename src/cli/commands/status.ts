/**
 * `pgferry status`: where the migration stands, from the target's ledger.
 */
import type { Command } from 'commander';
import { DEFAULTS } from '../../defaults.js';
import { openClient } from '../../connect/open-client.js';
import { describeConnection } from '../../connect/resolve.js';
import { readLedgerStatus, type LedgerStatus } from '../../ledger/ledger-status.js';
import { formatBytes, formatCount } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { textTable } from '../text-table.js';
import { isTTY, out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { positiveInt } from '../parse-options.js';

interface StatusFlags extends ConnectionFlags {
  ledgerSchema: string;
  json?: boolean;
  watch?: number | boolean;
  all?: boolean;
}

function printStatus(target: string, s: LedgerStatus, all: boolean): void {
  if (!s.exists) {
    out(`${target}: no pgferry ledger here (nothing started yet)`);
    return;
  }
  const c = s.counts;
  const phase =
    c.total === 0
      ? 'planned'
      : c.done === c.total
        ? s.steps.includes('analyze')
          ? 'done'
          : 'copied; finishing'
        : c.running > 0
          ? 'copying'
          : c.failed > 0
            ? 'stopped with failures'
            : 'waiting for workers';
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
  if (c.failed > 0 || (c.pending > 0 && c.running === 0)) {
    out('');
    out(
      '  next: run the same `pgferry clone` command again (or start `pgferry worker`) to finish the remaining jobs',
    );
  }
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show where a migration stands: jobs done/running/failed/pending and who holds them')
    .option('--target <conninfo>', 'target server: libpq URI or key=value string')
    .option('--config <file>', 'read connections and options from a config file')
    .option('--ledger-schema <name>', "schema of pgferry's ledger on the target", DEFAULTS.ledgerSchema)
    .option('--all', 'list done jobs too')
    .option('--watch [seconds]', 'refresh every N seconds (default 2)', positiveInt)
    .option('--json', 'machine-readable output')
    .action(async (flags: StatusFlags) => {
      const config = loadConfig(flags.config);
      const target = connectionFor('target', flags, config)!;
      const interval = flags.watch === true ? 2 : typeof flags.watch === 'number' ? flags.watch : 0;
      for (;;) {
        const client = await openClient(target, { applicationName: 'pgferry status' });
        let status: LedgerStatus;
        try {
          status = await readLedgerStatus(client, flags.ledgerSchema);
        } finally {
          await client.end();
        }
        if (flags.json) outJson({ ok: true, target: describeConnection(target), ...status });
        else {
          if (interval && isTTY()) process.stdout.write('\x1b[2J\x1b[H');
          printStatus(describeConnection(target), status, Boolean(flags.all));
        }
        if (!interval) return;
        await new Promise((r) => setTimeout(r, interval * 1000));
      }
    });
}
