/**
 * `pgconvoy sync-schema`: applies the source's additive schema changes to the target of an
 * online migration and lists the others. Calls online/sync-schema.ts.
 */
import type { Command } from 'commander';
import { DEFAULTS } from '../../defaults.js';
import { runSyncSchema, type SyncSchemaResult } from '../../online/sync-schema.js';
import type { DriftItem } from '../../online/schema-drift.js';
import { displayName } from '../../util/sql.js';
import { out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';

interface SyncSchemaFlags extends ConnectionFlags {
  dryRun?: boolean;
  ledgerSchema: string;
  json?: boolean;
}

const line = (d: DriftItem) => `${d.kind} ${d.object} ${d.change}`;

function printResult(r: SyncSchemaResult): void {
  const will = r.dryRun ? 'would apply' : 'applied';
  const nothing = r.transaction.length + r.concurrently.length + r.manual.length === 0;
  if (nothing) {
    out("the source's and the target's schemas agree: nothing to do");
    return;
  }
  if (r.transaction.length > 0) {
    out(`${will}, in one transaction on the target:`);
    for (const d of r.transaction) {
      out(`  ${line(d)}`);
      for (const sql of d.statements) out(`    ${sql};`);
    }
  }
  const created = r.transaction.filter((d) => d.newTable);
  if (r.dryRun && created.length > 0)
    out(
      `then: new tables with a replica identity added to the publication on the source, and ALTER SUBSCRIPTION … REFRESH PUBLICATION WITH (copy_data = true) on the target (the subscription copies their rows once); the others are copied at cutover`,
    );
  for (const t of r.published)
    out(
      `published ${displayName(t.schema, t.name)}: the subscription copies its rows, then applies its changes`,
    );
  for (const t of r.copiedAtCutover)
    out(`not published ${displayName(t.table.schema, t.table.name)} (${t.reason})`);
  if (r.concurrently.length > 0) {
    out(`${r.dryRun ? 'would build' : 'built'}, outside the transaction:`);
    for (const d of r.concurrently) for (const sql of d.statements) out(`  ${sql};`);
  }
  if (r.manual.length > 0) {
    out('left to you (not applied: destructive or ambiguous):');
    for (const d of r.manual) {
      out(`  ${line(d)}: ${d.reason ?? ''}`);
      for (const sql of d.statements) out(`    ${sql};`);
    }
  }
}

export function registerSyncSchema(program: Command): void {
  program
    .command('sync-schema')
    .description("apply the source's additive schema changes to the target of an online migration")
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('--dry-run', 'print the plan, change nothing')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Logical replication does not carry DDL. After start, compares the source's and the target's
schemas (as pgconvoy status and cutover do) and applies, in ONE transaction on the target:
new schemas, sequences and tables, new columns whose default is a constant, widened types
(int → bigint, longer varchar, …), defaults, NOT NULL, new constraints and views. New
tables with a primary key (or replica identity) are then added to the publication and the
subscription is refreshed: PostgreSQL copies their rows once, exactly, and replicates them
from there; tables without one are copied at cutover. New indexes are built CONCURRENTLY.

Never applied, listed with the exact statements: drops, renames, type changes that are not
widenings, columns whose default is not a constant (now(), nextval(), …: the target's
existing rows would get other values). Make those by hand, then run sync-schema again.

Examples:
  pgconvoy sync-schema --source postgresql://app@old/shop --target postgresql://app@new/shop --dry-run
  pgconvoy sync-schema --source ... --target ... --json`,
    )
    .action(async (flags: SyncSchemaFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const result = await runSyncSchema({
        source,
        target,
        ledgerSchema: flags.ledgerSchema,
        dryRun: Boolean(flags.dryRun),
        onInfo: (m) => {
          if (!flags.json) out(m);
        },
      });
      if (flags.json) outJson({ ok: true, ...result });
      else printResult(result);
    });
}
