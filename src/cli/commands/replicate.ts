/**
 * `pgconvoy replicate`: runs the relay (start --via relay) in the foreground until Ctrl-C,
 * SIGTERM, or the end of cutover. Parses options and calls relay/run-relay.ts.
 */
import type { Command } from 'commander';
import type { ConnectionSpec } from '../../connect/resolve.js';
import { DEFAULTS } from '../../defaults.js';
import { runRelay, type RelayEvent, type RelayResult } from '../../relay/run-relay.js';
import { formatBytes, formatCount } from '../../util/format.js';
import { loadConfig } from '../common-options.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { openDashboard, type HttpFlags } from '../http-option.js';
import type { LiveRecorder } from '../../observe/live.js';
import { err, isTTY, out, outJson } from '../output.js';

interface ReplicateFlags extends ConnectionFlags, HttpFlags {
  ledgerSchema: string;
  json?: boolean;
  quiet?: boolean;
}

/** Runs the relay until a signal (the current group commits first) or the end of cutover. */
export async function relayInForeground(
  source: ConnectionSpec,
  target: ConnectionSpec,
  ledgerSchema: string,
  flags: { json?: boolean; quiet?: boolean },
  /** The --http dashboard's recorder, when there is one. */
  dashboard?: LiveRecorder,
): Promise<RelayResult> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const live = isTTY() && !flags.json;
  let lastPlain = 0;
  const onEvent = (e: RelayEvent) => {
    dashboard?.relay(e);
    if (e.type !== 'progress') {
      if (live) process.stdout.write('\r\x1b[K');
      if (e.type === 'warning') err(`warning: ${e.message}`);
      else if (!flags.quiet && !flags.json) out(e.message);
      return;
    }
    const line = `applied ${e.appliedLsn}  lag ${formatBytes(e.lagBytes)} ${e.lagSeconds.toFixed(1)} s  ${formatCount(Math.round(e.changesPerSecond))} changes/s  ${formatCount(e.changes)} changes in ${formatCount(e.transactions)} transactions`;
    if (live) process.stdout.write(`\r\x1b[K${line}`);
    else if (!flags.quiet && !flags.json && Date.now() - lastPlain >= 10_000) {
      lastPlain = Date.now();
      out(line);
    }
  };
  try {
    return await runRelay({ source, target, ledgerSchema, signal: controller.signal, onEvent });
  } finally {
    if (live) process.stdout.write('\n');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function printRelayResult(r: RelayResult, json: boolean | undefined): void {
  if (json) return outJson({ ok: true, ...r });
  if (r.reason === 'cutover-done') {
    out(`cutover is done: the relay has nothing more to carry (last applied ${r.appliedLsn})`);
    return;
  }
  out(
    `relay stopped at ${r.appliedLsn} after ${formatCount(r.changes)} changes in ${formatCount(r.transactions)} transactions; everything up to there is committed on the target`,
  );
  out('  next: pgconvoy replicate … to go on, pgconvoy cutover … (with the relay running) to finish');
}

export function registerReplicate(program: Command): void {
  program
    .command('replicate')
    .description(
      "run the relay of an online migration begun with start --via relay: stream the source's changes and apply them to the target",
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option('--json', 'machine-readable summary on stdout when it stops')
    .option('-q, --quiet', 'only warnings, errors and the summary')
    .addHelpText(
      'after',
      `
The relay runs where pgconvoy reaches both servers: it streams the slot's changes over a
replication connection to the source (pgoutput) and applies them to the target in commit
order, many source transactions per target transaction, each of which also records the
relay's position in the ledger. The source is told a change is done only once the target
has committed it, so a relay that is killed or loses a server resumes with this same
command, exactly where the target stands: no change is lost or applied twice.

On a terminal one live line shows the applied position, the lag (bytes and seconds) and
changes per second; otherwise a plain line every 10 s. --http [HOST:]PORT serves the same
on a live page and as Prometheus metrics (pgconvoy_relay_*) while it runs. Ctrl-C or SIGTERM stop it cleanly
after the current group commits. Keep it running through pgconvoy cutover, which waits
until the relay has applied everything up to the write freeze; it stops by itself once
cutover drops the slot.

It stops, and says why, when the source's table no longer matches the target's (a column
added on the source: apply the same DDL on the target, then run replicate again), or when
an UPDATE or DELETE finds no row on the target (divergence: table, key and LSN are named).

Examples:
  pgconvoy replicate --source postgresql://app@old/shop --target postgresql://app@new/shop
  pgconvoy replicate --config pgconvoy.conf`,
    )
    .action(async (flags: ReplicateFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const dashboard = await openDashboard(flags, 'replicate', target, source, flags.ledgerSchema);
      const result = await dashboard.settle(
        relayInForeground(source, target, flags.ledgerSchema, flags, dashboard.live),
      );
      printRelayResult(result, flags.json);
    });
}
