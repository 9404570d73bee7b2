/**
 * `pgconvoy inspect`: what each server is, what the role may do, and what the source holds.
 */
import type { Command } from 'commander';
import { DEFAULTS } from '../../defaults.js';
import { withClient } from '../../connect/session.js';
import { describeConnection, type ConnectionSpec } from '../../connect/resolve.js';
import { readServerInfo, type ServerInfo } from '../../inventory/server-info.js';
import { readInventory, tablesWithoutKey, type Inventory } from '../../inventory/inventory.js';
import { displayIdent, displayName } from '../../util/sql.js';
import { formatBytes, formatCount } from '../../util/format.js';
import { textTable } from '../../util/text-table.js';
import { out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';

interface InspectFlags extends ConnectionFlags {
  json?: boolean;
  ledgerSchema: string;
}

export interface ServerReport {
  side: 'source' | 'target';
  connection: string;
  server: ServerInfo;
  inventory?: Inventory;
}

export async function inspectServer(
  spec: ConnectionSpec,
  ledgerSchema: string,
  withInventory: boolean,
): Promise<ServerReport> {
  return withClient(
    spec,
    async (client) => {
      const server = await readServerInfo(client);
      const report: ServerReport = { side: spec.side, connection: describeConnection(spec), server };
      if (withInventory) report.inventory = await readInventory(client, ledgerSchema);
      return report;
    },
    { applicationName: 'pgconvoy inspect' },
  );
}

function yesNo(label: string, value: boolean): string {
  return value ? label : `no ${label}`;
}

function printServer(report: ServerReport): void {
  const { server } = report;
  const role = server.role;
  out(`${report.side}  ${report.connection}`);
  out(`  server     PostgreSQL ${server.version} (major ${server.major})`);
  const s = server.settings;
  out(
    `  settings   wal_level=${s.wal_level}  max_replication_slots=${s.max_replication_slots}  max_wal_senders=${s.max_wal_senders}  max_worker_processes=${s.max_worker_processes}`,
  );
  out(
    `             max_wal_size=${s.max_wal_size}  maintenance_work_mem=${s.maintenance_work_mem}  max_connections=${s.max_connections}`,
  );
  const rights = [
    yesNo('superuser', role.superuser),
    yesNo('REPLICATION', role.replication),
    yesNo('CREATE on database', role.createOnDatabase),
    role.canSetReplicationRole ? 'may set session_replication_role' : 'may NOT set session_replication_role',
    ...role.cloudAdminRoles.map((r) => `member of ${r}`),
  ];
  out(`  role       ${role.name}: ${rights.join(', ')}`);
  const inv = report.inventory;
  if (!inv) return;
  out(`  schemas    ${inv.schemas.map(displayIdent).join(', ') || '(none)'}`);
  out('');
  out(`  tables (${inv.tables.length}, ${formatBytes(inv.totalBytes)} of data, largest first)`);
  const rows = inv.tables.map((t) => [
    displayName(t.schema, t.name),
    t.kind + (t.unlogged ? ', unlogged' : '') + (t.partitionOf ? `, partition of ${t.partitionOf}` : ''),
    t.kind === 'table' || t.kind === 'materialized-view' ? formatBytes(t.bytes) : '-',
    formatCount(t.estimatedRows),
    t.primaryKey?.join(', ') ?? '(none)',
    t.splitColumn ? `${t.splitColumn.name} (${t.splitColumn.type})` : '-',
  ]);
  out(textTable(['TABLE', 'KIND', 'SIZE', 'EST. ROWS', 'PRIMARY KEY', 'SPLIT COLUMN'], rows, '  '));
  const noKey = tablesWithoutKey(inv);
  out('');
  out(
    `  without primary key (${noKey.length}): ${noKey.map((t) => displayName(t.schema, t.name)).join(', ') || '-'}`,
  );
  out(
    `  sequences (${inv.sequences.length}): ${inv.sequences.map((q) => `${displayName(q.schema, q.name)}=${q.lastValue ?? 'unused'}`).join(', ') || '-'}`,
  );
  out(`  extensions: ${inv.extensions.map((e) => `${e.name} ${e.version}`).join(', ') || '-'}`);
  out(`  large objects: ${inv.largeObjects}`);
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description("show each server, its settings and the role's rights, and what the source holds")
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option(
      '--ledger-schema <name>',
      "schema of pgconvoy's ledger (left out of the inventory)",
      DEFAULTS.ledgerSchema,
    )
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Examples:
  pgconvoy inspect --source postgresql://app@db1/shop
  pgconvoy inspect --source 'host=db1 dbname=shop' --target 'host=db2 dbname=shop' --json
  PGHOST=db1 PGDATABASE=shop pgconvoy inspect      (libpq environment as the source)`,
    )
    .action(async (flags: InspectFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config, flags.target === undefined);
      const target = connectionFor('target', flags, config, false);
      const reports: ServerReport[] = [];
      if (source) reports.push(await inspectServer(source, flags.ledgerSchema, true));
      if (target) reports.push(await inspectServer(target, flags.ledgerSchema, false));
      if (flags.json) {
        outJson({ ok: true, servers: reports });
        return;
      }
      reports.forEach((r, i) => {
        if (i > 0) out('');
        printServer(r);
      });
    });
}
