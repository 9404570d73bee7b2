/**
 * `pgconvoy switch-first prepare | move | status | finish | teardown`: the application moves
 * to the target first, the rows follow (library: src/switch-first/).
 */
import path from 'node:path';
import type { Command } from 'commander';
import type pg from 'pg';
import { withClients } from '../../connect/session.js';
import type { ConnectionSpec } from '../../connect/resolve.js';
import { DEFAULTS } from '../../defaults.js';
import { formatCount, formatDuration } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { finishSwitchFirst } from '../../switch-first/finish.js';
import { runMove, type MoveProgress } from '../../switch-first/move.js';
import { parseAcceptance } from '../../switch-first/precheck.js';
import { prepareSwitchFirst } from '../../switch-first/prepare.js';
import { switchFirstStatus } from '../../switch-first/status.js';
import { teardownSwitchFirst } from '../../switch-first/teardown.js';
import { loadConfig } from '../common-options.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { err, out, outJson } from '../output.js';
import { positiveInt } from '../parse-options.js';

interface Flags extends ConnectionFlags {
  json?: boolean;
  ledgerSchema: string;
}

interface PrepareFlags extends Flags {
  accept?: string[];
  sequenceMargin?: number;
  sourceFromTarget?: string;
  pgBin?: string;
  runDir?: string;
}

interface MoveFlags extends Flags {
  jobs?: number;
  batchRows?: number;
  lockTimeout?: number;
}

function common(command: Command): Command {
  return command
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option('--json', 'machine-readable output');
}

async function withBoth<T>(
  flags: Flags,
  name: string,
  run: (
    src: pg.Client,
    tgt: pg.Client,
    specs: { source: ConnectionSpec; target: ConnectionSpec },
  ) => Promise<T>,
): Promise<T> {
  const config = loadConfig(flags.config);
  const source = connectionFor('source', flags, config)!;
  const target = connectionFor('target', flags, config)!;
  return withClients(source, target, (src, tgt) => run(src, tgt, { source, target }), {
    applicationName: `pgconvoy switch-first ${name}`,
  });
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function progressLine(p: MoveProgress): string {
  const share = p.movedRows / p.totalRows;
  const eta = share > 0 && share < 1 ? `, ETA ${formatDuration((p.elapsedMs / share) * (1 - share))}` : '';
  return `moved ${formatCount(p.movedRows)} of ~${formatCount(p.totalRows)} rows (${Math.min(100, Math.round(share * 100))}%), ${p.tablesDone}/${p.tables} tables done, ${formatDuration(p.elapsedMs)}${eta}`;
}

export function registerSwitchFirst(program: Command): void {
  const group = program
    .command('switch-first')
    .description('migrate with postgres_fdw: the application switches to the target first, the rows follow')
    .addHelpText('after', SWITCH_FIRST_HELP);

  common(group.command('prepare'))
    .description(
      'create the schema on the target and show the source rows there; then the application may switch',
    )
    .option(
      '--accept <table:risk>',
      'accept a risk the precheck refuses for a table (unique, triggers, foreign-keys, all; * for every table); repeatable',
      collect,
    )
    .option(
      '--sequence-margin <n>',
      `set target sequences this many increments past the source's (default ${DEFAULTS.switchFirstSequenceMargin})`,
      positiveInt,
    )
    .option(
      '--source-from-target <conninfo>',
      'the source as the target server reaches it, when not as --source says (no password)',
    )
    .option('--pg-bin <dir>', "directory of pg_dump/pg_restore/psql (a major >= the source's)")
    .option('--run-dir <dir>', `where the schema files go (default ${DEFAULTS.runDir}/<target>)`)
    .addHelpText('after', PREPARE_HELP)
    .action(prepareAction);

  common(group.command('move'))
    .description('move the rows from the source into the target, in batches, exactly once')
    .option('-j, --jobs <n>', `tables moved at once (default ${DEFAULTS.jobs})`, positiveInt)
    .option('--batch-rows <n>', `rows per batch (default ${DEFAULTS.switchFirstBatchRows})`, positiveInt)
    .option(
      '--lock-timeout <ms>',
      `how long a batch waits for its table lock before it retries (default ${DEFAULTS.switchFirstLockTimeoutMs})`,
      positiveInt,
    )
    .addHelpText('after', MOVE_HELP)
    .action(moveAction);

  common(group.command('status')).description('phase and rows left per table').action(statusAction);

  common(group.command('finish'))
    .description(
      'drop the foreign tables, server, mapping and extension; validate foreign keys; ANALYZE; count',
    )
    .action(finishAction);

  common(group.command('teardown'))
    .description('undo a prepare before any row moved (the application goes back to the source)')
    .action(teardownAction);
}

const SWITCH_FIRST_HELP = `
For a source that cannot do logical replication (wal_level = replica and no restart), tables
without a key, or when no replication slot may hold WAL on the source for days:

  1. pgconvoy switch-first prepare  schema on the target; each target table also shows the
                                    source's rows (a postgres_fdw foreign table inherits it);
                                    sequences set past the source's. Then point the application
                                    at the target.
  2. pgconvoy switch-first move     rows leave the source for the target in small batches,
                                    exactly once even if anything is killed (rerun to resume).
  3. pgconvoy switch-first finish   foreign tables, server, mapping, extension dropped; foreign
                                    keys validated; ANALYZE; row counts.
  pgconvoy switch-first status      phase and rows left per table.
  pgconvoy switch-first teardown    undo a prepare before any row moved.`;

const PREPARE_HELP = `
Refused per table, unless accepted with --accept schema.table:RISK:
  unique        a unique index other than one sequence-filled column: during the move it sees
                only the target's rows, so a row written there can duplicate one on the source
  triggers      user triggers fire on the source for rows not yet moved, on the target otherwise
  foreign-keys  foreign keys are not enforced on the target until finish (then validated; rows
                that break them are listed)
Partitioned tables and inheritance trees are refused. The source's password is stored in the
target's user mapping (pg_user_mapping; the target server needs it to connect) until finish
or teardown drops it; pgconvoy never prints or logs it.

Examples:
  pgconvoy switch-first prepare --source postgresql://app@old-db/shop --target postgresql://app@new-db/shop
  pgconvoy switch-first prepare ... --accept public.orders:foreign-keys --accept public.order_lines:foreign-keys`;

const MOVE_HELP = `
Each batch deletes its rows on the source and keeps them in a journal there (one source
transaction), then inserts them on the target with a ledger mark (one target transaction),
holding the target table's lock for that moment so the application never sees a batch half
moved. A run killed anywhere leaves each row in the source table, the journal or the target:
run move again; it replays the journal first. The foreign keys are added back NOT VALID and
VALIDATEd once every table is empty.

Examples:
  pgconvoy switch-first move --source ... --target ... --jobs 4`;

async function prepareAction(flags: PrepareFlags): Promise<void> {
  const accept = parseAcceptance(flags.accept ?? []);
  await withBoth(flags, 'prepare', async (src, tgt, specs) => {
    const runDir =
      flags.runDir ??
      path.join(
        DEFAULTS.runDir,
        `${specs.target.host.replace(/[^\w.-]/g, '_')}_${specs.target.port}_${specs.target.database.replace(/[^\w.-]/g, '_')}`,
      );
    const result = await prepareSwitchFirst(
      {
        ...specs,
        ledgerSchema: flags.ledgerSchema,
        runDir,
        accept,
        sequenceMargin: flags.sequenceMargin ?? DEFAULTS.switchFirstSequenceMargin,
        sourceFromTarget: flags.sourceFromTarget,
        pgBin: flags.pgBin,
        pathEnv: process.env.PATH ?? '',
        log: flags.json ? () => undefined : out,
      },
      src,
      tgt,
    );
    const at = new Date().toISOString();
    if (flags.json) {
      outJson({ ok: true, ...result, switchAt: at });
      return;
    }
    for (const f of result.findings.filter((f) => f.accepted))
      out(`accepted: ${displayName(f.schema, f.table)} [${f.risk}]: ${f.reason}`);
    for (const logged of result.loggedBy)
      err(
        `warning: ${logged} on the target may have logged the statement that carried the source's password as a parameter`,
      );
    if (result.sequences.length > 0) out(`${result.sequences.length} sequences set past the source's values`);
    out(
      `${result.already ? 'already prepared' : 'prepared'} (${at}): the application may switch to the target now. ` +
        `All ${result.tables} tables show every row there; stop writing to the source directly once it has switched. ` +
        'Next: pgconvoy switch-first move',
    );
  });
}

async function moveAction(flags: MoveFlags): Promise<void> {
  const config = loadConfig(flags.config);
  const source = connectionFor('source', flags, config)!;
  const target = connectionFor('target', flags, config)!;
  let last = 0;
  const result = await runMove({
    source,
    target,
    ledgerSchema: flags.ledgerSchema,
    jobs: flags.jobs ?? DEFAULTS.jobs,
    batchRows: flags.batchRows ?? DEFAULTS.switchFirstBatchRows,
    lockTimeoutMs: flags.lockTimeout ?? DEFAULTS.switchFirstLockTimeoutMs,
    log: flags.json ? () => undefined : out,
    onProgress: (p) => {
      if (flags.json || Date.now() - last < 1000) return;
      last = Date.now();
      out(progressLine(p));
    },
  });
  if (flags.json) {
    outJson({ ok: true, ...result });
    return;
  }
  if (result.alreadyMoved) {
    out(
      'nothing to move: the source tables were emptied by an earlier run. Next: pgconvoy switch-first finish',
    );
    return;
  }
  out(
    `moved ${formatCount(result.rowsMoved)} rows${result.replayed ? ` (and replayed ${result.replayed} journaled ones)` : ''}`,
  );
  for (const fk of result.foreignKeys)
    out(
      `foreign key ${displayName(fk.schema, fk.table)} "${fk.name}": ${fk.status}${fk.violations.length ? ` (${fk.violations.join(', ')})` : ''}`,
    );
  out('every source table is empty. Next: pgconvoy switch-first finish');
}

async function statusAction(flags: Flags): Promise<void> {
  await withBoth(flags, 'status', async (src, tgt) => {
    const status = await switchFirstStatus(src, tgt, flags.ledgerSchema);
    if (flags.json) {
      outJson({ ok: true, ...status });
      return;
    }
    out(`switch-first: ${status.phase} (source ${status.source})`);
    for (const t of status.tables)
      out(
        `  ${displayName(t.schema, t.name)}: ${formatCount(t.moved)} moved, ${t.onSource === null ? '-' : formatCount(t.onSource)} on the source${t.journaled ? `, ${formatCount(t.journaled)} journaled` : ''}`,
      );
    out(`next: ${status.next}`);
  });
}

async function finishAction(flags: Flags): Promise<void> {
  await withBoth(flags, 'finish', async (src, tgt) => {
    const result = await finishSwitchFirst(src, tgt, flags.ledgerSchema);
    if (flags.json) {
      outJson({ ok: true, ...result });
      return;
    }
    if (result.removal)
      out(
        `removed the foreign tables, server and user mapping (postgres_fdw extension: ${result.removal.extension})`,
      );
    for (const fk of result.foreignKeys)
      out(`foreign key ${displayName(fk.schema, fk.table)} "${fk.name}": ${fk.status}`);
    for (const c of result.counts)
      out(
        `  ${displayName(c.schema, c.name)}: ${formatCount(c.targetRows)} rows on the target, ${formatCount(c.sourceRows)} on the source`,
      );
    out(
      result.already
        ? 'already finished'
        : 'finished: the target holds every row; the source tables are empty',
    );
  });
}

async function teardownAction(flags: Flags): Promise<void> {
  await withBoth(flags, 'teardown', async (src, tgt) => {
    const removal = await teardownSwitchFirst(src, tgt, flags.ledgerSchema);
    if (flags.json) {
      outJson({ ok: true, removal });
      return;
    }
    out(
      `removed the foreign tables, server, user mapping and the source's journal (postgres_fdw extension: ${removal.extension}); the target's empty tables are left`,
    );
  });
}
