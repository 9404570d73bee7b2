/**
 * `pgconvoy verify`: prove that the target holds what the source holds — row counts and
 * in-server checksums per chunk, the rows that differ, and the schema — and exit 6 when
 * anything differs.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { formatCount, formatDuration } from '../../util/format.js';
import { displayName } from '../../util/sql.js';
import { formatReport } from '../../verify/report-text.js';
import { addFilterOptions, FILTER_HELP, filterOf } from '../filter-options.js';
import type { FilterFlags } from '../../inventory/table-filter.js';
import { VERIFY_DEFAULTS, type VerifyEvent } from '../../verify/types.js';
import { verifyDatabases } from '../../verify/verify-databases.js';
import { loadConfig } from '../common-options.js';
import { openDashboard, type HttpFlags } from '../http-option.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { err, out, outJson } from '../output.js';
import { positiveInt } from '../parse-options.js';
import { parseExcludedColumn } from '../../copy/table-columns.js';
import { EXCLUDE_COLUMN_OPTION } from './clone-options.js';

interface VerifyFlags extends ConnectionFlags, HttpFlags, FilterFlags {
  jobs: number;
  maxDiffs: number;
  chunkRows: number;
  ledgerSchema: string;
  sourceSnapshot?: string;
  countsOnly?: boolean;
  excludeColumn?: string[];
  json?: boolean;
}

function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number of 0 or more');
  return Number(value);
}

/** Progress on stderr: one redrawn line on a terminal, plain lines otherwise. */
function progressPrinter(): { handle: (e: VerifyEvent) => void; done: () => void } {
  const live = Boolean(process.stderr.isTTY) && process.env.CI === undefined;
  let tables = 0;
  let tablesDone = 0;
  let chunks = 0;
  let differing = 0;
  let drawn = false;
  const draw = () => {
    process.stderr.write(
      `\r\x1b[Kverify: ${tablesDone}/${tables} tables, ${formatCount(chunks)} chunks checked, ${differing} table(s) differ`,
    );
    drawn = true;
  };
  const line = (text: string) => {
    if (drawn) process.stderr.write('\r\x1b[K');
    err(text);
    if (live) draw();
  };
  return {
    handle: (e) => {
      switch (e.type) {
        case 'snapshot':
          line(`verify: ${e.side} snapshot ${e.snapshot}${e.lsn ? ` at LSN ${e.lsn}` : ''}`);
          break;
        case 'schema-done':
          line(`verify: schema compared, ${e.differences} difference(s)`);
          break;
        case 'planned':
          tables = e.tables;
          line(`verify: ${e.tables} table(s) to compare`);
          break;
        case 'narrowing':
          line(`verify: ${displayName(e.table.schema, e.table.name)} ${e.chunk} differs; narrowing`);
          break;
        case 'chunk-done':
          chunks = e.chunksDone;
          if (live) draw();
          break;
        case 'table-done': {
          tablesDone = e.tablesDone;
          const r = e.result;
          if (r.status !== 'match') differing++;
          if (live) draw();
          else {
            err(
              `verify: ${displayName(r.schema, r.name)}: ${r.status}, ${formatCount(r.rows.source)} rows, ` +
                `${r.chunks.total} chunk(s) in ${formatDuration(r.seconds * 1000)} (${e.tablesDone}/${e.tablesTotal})`,
            );
          }
          break;
        }
      }
    },
    done: () => {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}

export function registerVerify(program: Command): void {
  addFilterOptions(program.command('verify'))
    .description('prove that the target equals the source: rows, checksums per chunk, schema, sequences')
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('--jobs <n>', 'workers (each holds one session per side)', positiveInt, DEFAULTS.jobs)
    .option('--max-diffs <n>', 'row differences listed per table', wholeNumber, VERIFY_DEFAULTS.maxDiffs)
    .option('--chunk-rows <n>', 'rows per key-range chunk', positiveInt, VERIFY_DEFAULTS.chunkRows)
    .option(
      '--counts-only',
      'exact row counts and the schema, no checksums: several times faster, and weaker',
    )
    .option(
      '--source-snapshot <id>',
      'read the source in this exported snapshot (from pg_export_snapshot(); its transaction must stay open)',
    )
    .option(
      '--ledger-schema <name>',
      "schema of pgconvoy's ledger on the target (not compared)",
      DEFAULTS.ledgerSchema,
    )
    .option(
      EXCLUDE_COLUMN_OPTION[0],
      'a source column the copy left behind (as given to clone or start): not compared, and not a difference when the target lacks it; repeatable',
      EXCLUDE_COLUMN_OPTION[2],
    )
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Every table is compared by exact row counts and a checksum computed inside each server
(no rows are shipped), chunk by chunk on the table's integer key, or by hash buckets for
tables without one. A differing chunk is narrowed down by bisection and up to --max-diffs
rows per table are named: missing on target, extra on target, or changed (with the
columns). Then the schema: tables, columns and types, indexes, constraints (and whether
they are validated), triggers, views, sequences (and their values), extensions.

The source is read in one snapshot (its id and WAL position are printed); every session
is read-only and holds locks only for one chunk. Exit 0 when everything matches, 6 when
anything differs.
${FILTER_HELP}
Verify a filtered clone with the same filters; --exclude-table-data tables are compared by
definition, not rows. Likewise --exclude-column: the rows are compared over the other
columns the two sides have in common.

Examples:
  pgconvoy verify --source postgresql://app@db1/shop --target postgresql://app@db2/shop
  pgconvoy verify --source S --target T --table 'public."Order Items"' --table sales.orders --json
  pgconvoy verify --source S --target T --schema sales --jobs 8 --max-diffs 100`,
    )
    .action(async (flags: VerifyFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const filter = filterOf(flags);
      const progress = progressPrinter();
      const dashboard = await openDashboard(flags, 'verify', target, source, flags.ledgerSchema);
      let report;
      try {
        const work = verifyDatabases({
          source,
          target,
          jobs: flags.jobs,
          filter,
          excludeColumns: new Set((flags.excludeColumn ?? []).map(parseExcludedColumn)),
          maxDiffs: flags.maxDiffs,
          chunkRows: flags.chunkRows,
          ledgerSchema: flags.ledgerSchema,
          ...(flags.sourceSnapshot !== undefined ? { sourceSnapshot: flags.sourceSnapshot } : {}),
          ...(flags.countsOnly ? { contents: 'counts' as const } : {}),
          onProgress: (e) => {
            progress.handle(e);
            dashboard.live?.verify(e);
          },
        });
        report = await dashboard.settle(work);
      } finally {
        progress.done();
      }
      if (flags.json) outJson(report);
      else for (const line of formatReport(report)) out(line);
      process.exitCode = report.ok ? EXIT.ok : EXIT.mismatch;
    });
}
