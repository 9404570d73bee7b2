/**
 * `pgconvoy teardown`: removes the publications, replication slots and subscriptions pgconvoy
 * made for this database, both directions, on both servers. Safe to run again.
 */
import type { Command } from 'commander';
import { withClients } from '../../connect/session.js';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { lockMigration, readOnlineState } from '../../replicate/online-state.js';
import { replicationNames, type ReplicationNames } from '../../replicate/names.js';
import type { ConnectionSpec } from '../../connect/resolve.js';
import { readSubscription } from '../../replicate/subscription.js';
import { teardown, type RemovedObject } from '../../replicate/teardown.js';
import { out, outJson } from '../output.js';
import { connectionFor, type ConnectionFlags, SOURCE_OPTION, TARGET_OPTION } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { defaultRunDir, logged, RUN_DIR_OPTION } from '../command-log.js';

interface TeardownFlags extends ConnectionFlags {
  runDir?: string;
  json?: boolean;
  force?: boolean;
  ledgerSchema: string;
}

/** Removes both directions' objects; refuses to remove a running back-replication unless --force. */
async function removeReplication(
  source: ConnectionSpec,
  target: ConnectionSpec,
  names: ReplicationNames,
  flags: TeardownFlags,
): Promise<RemovedObject[]> {
  return withClients(
    source,
    target,
    async (src, tgt) => {
      await lockMigration(tgt, flags.ledgerSchema, 'teardown');
      const state = await readOnlineState(tgt, flags.ledgerSchema);
      if (state?.phase === 'done' && !flags.force && (await readSubscription(src, names.backSubscription)))
        throw new PgconvoyError(
          'back-replication from the target to the source is running: it is the way back',
          {
            code: 'BACK_REPLICATION_RUNNING',
            exitCode: EXIT.blocked,
            hint: 'pgconvoy rollback uses it to return to the source without losing the writes made on the target since cutover; when you no longer need a way back, run teardown with --force',
          },
        );
      return await teardown(src, tgt, names);
    },
    { applicationName: 'pgconvoy teardown' },
  );
}

function describe(r: RemovedObject): string {
  const direction = r.direction === 'forward' ? 'source → target' : 'back-replication target → source';
  return `removed ${r.kind} "${r.name}" on the ${r.side} (${direction})`;
}

export function registerTeardown(program: Command): void {
  program
    .command('teardown')
    .description(
      "remove pgconvoy's replication objects (subscriptions, slots, publications) from both servers",
    )
    .option(...SOURCE_OPTION)
    .option(...TARGET_OPTION)
    .option('--config <file>', 'read connections and options from a config file')
    .option('--force', 'also remove back-replication after a cutover (the way back to the source is lost)')
    .option('--ledger-schema <name>', "schema of pgconvoy's ledger on the target", DEFAULTS.ledgerSchema)
    .option(...RUN_DIR_OPTION)
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Removes, for the source database's migration, in both directions (source → target and the
back-replication target → source): the subscriptions (without contacting the other server),
the replication slots (stopping a walsender still attached), and the publications. A
forgotten slot keeps WAL on its server until the disk is full: run this when a migration is
finished or abandoned. Running it again removes nothing and says so. After a cutover whose
back-replication is running, teardown refuses without --force: it is the way back (rollback)
without losing the writes made on the target.

Examples:
  pgconvoy teardown --source postgresql://app@db1/shop --target postgresql://app@db2/shop
  pgconvoy teardown --config pgconvoy.conf --json`,
    )
    .action(async (flags: TeardownFlags) => {
      const config = loadConfig(flags.config);
      const source = connectionFor('source', flags, config);
      const target = connectionFor('target', flags, config);
      if (!source || !target) return;
      const names = replicationNames(source.database);
      const removed = await logged('teardown', flags.runDir ?? defaultRunDir(target), () =>
        removeReplication(source, target, names, flags),
      );
      if (flags.json) {
        outJson({ ok: true, removed });
        return;
      }
      if (removed.length === 0) {
        out(
          `nothing to remove: no pgconvoy subscription, slot or publication named "${names.slot}" or "${names.backSlot}" on either server`,
        );
        return;
      }
      for (const r of removed) out(describe(r));
    });
}
