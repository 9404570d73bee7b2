/**
 * The schema stage of `pgconvoy clone`, part two: apply parts of the dumped schema to the
 * target with `pg_restore --use-list` (pre-data before the copy; each table's indexes when
 * its rows are in; the rest at the end), and show the SQL of any part for --dry-run.
 *
 * Nothing is ignored: pg_restore runs with --exit-on-error, and the first failure stops
 * with the failing statement and the server's message. With singleTransaction the part
 * applies completely or not at all, so a re-run starts from a clean target.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import type { PgTools } from './pg-tools.js';
import { parseRestoreFailure } from './restore-errors.js';
import { childConninfo, childEnv, runTool } from './run-tool.js';
import { mapTablespaceSql } from './tablespaces.js';
import { restoreList } from './toc.js';
import type { SchemaDump, TocEntryRef } from './types.js';

export type SchemaPart = TocEntryRef[] | 'pre-data' | 'post-data';

export interface ApplySchemaOptions {
  target: ConnectionSpec;
  tools: PgTools;
  dump: SchemaDump;
  entries: SchemaPart;
  singleTransaction: boolean;
  /** Settings for the restoring session (maintenance_work_mem, ...), sent through PGOPTIONS. */
  sessionSettings?: Record<string, string>;
  /** Defaults to what dumpSchema was given. */
  noOwner?: boolean;
  noPrivileges?: boolean;
  signal?: AbortSignal;
}

export interface SchemaSqlOptions {
  tools: PgTools;
  dump: SchemaDump;
  entries: SchemaPart;
  noOwner?: boolean;
  noPrivileges?: boolean;
}

function partIds(dump: SchemaDump, part: SchemaPart): number[] {
  if (part === 'pre-data') return dump.preData.map((e) => e.dumpId);
  if (part === 'post-data') return dump.postData.map((e) => e.dumpId);
  const known = new Set(dump.entries.map((e) => e.dumpId));
  for (const ref of part) {
    if (!known.has(ref.dumpId))
      throw new PgconvoyError(`schema item ${ref.dumpId} is not in the archive "${dump.files.archive}"`, {
        code: 'SCHEMA_ITEM_UNKNOWN',
        hint: 'pass items from the SchemaDump of that archive (a re-dump numbers items anew)',
      });
  }
  return part.map((e) => e.dumpId);
}

function partName(part: SchemaPart): string {
  return typeof part === 'string' ? part : `${part.length} schema item${part.length === 1 ? '' : 's'}`;
}

/** Writes the restore list for `part` into a fresh temporary directory under the run directory. */
function withList<T>(dump: SchemaDump, part: SchemaPart, run: (listFile: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(dump.runDir, 'restore-'));
  const listFile = path.join(dir, 'restore.list');
  writeFileSync(listFile, restoreList(dump.entries, partIds(dump, part), partName(part)));
  return run(listFile).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function ownershipFlags(dump: SchemaDump, o: { noOwner?: boolean; noPrivileges?: boolean }): string[] {
  return [
    ...((o.noOwner ?? dump.noOwner) ? ['--no-owner'] : []),
    ...((o.noPrivileges ?? dump.noPrivileges) ? ['--no-privileges'] : []),
    ...(dump.noTablespaces ? ['--no-tablespaces'] : []),
  ];
}

/**
 * Applies a part of the schema to the target.
 *
 * @example
 *   await applySchemaSection({ target, tools, dump, entries: 'pre-data', singleTransaction: true });
 *   const orders = dump.postData.filter((i) => i.phase === 'table' && i.table?.name === 'orders');
 *   await applySchemaSection({ target, tools, dump, entries: orders, singleTransaction: false,
 *                              sessionSettings: { maintenance_work_mem: '1GB' } });
 */
export async function applySchemaSection(options: ApplySchemaOptions): Promise<void> {
  const { target, tools, dump } = options;
  if (typeof options.entries !== 'string' && options.entries.length === 0) return;
  if (dump.tablespaceMap.size > 0) {
    // pg_restore writes to the server itself here: there is no SQL to rename tablespaces in.
    throw new PgconvoyError('applySchemaSection cannot map tablespaces', {
      code: 'INTERNAL',
      hint: 'apply the SQL of schemaSql() (it maps them) instead',
    });
  }
  const flags = ownershipFlags(dump, options);
  await withList(dump, options.entries, async (listFile) => {
    const args = [
      '--verbose',
      '--exit-on-error',
      '--no-password',
      ...(options.singleTransaction ? ['--single-transaction'] : []),
      ...flags,
      `--use-list=${listFile}`,
      `--dbname=${childConninfo(target, 'pgconvoy schema')}`,
      dump.files.archive,
    ];
    const result = await runTool(
      tools.pgRestore,
      args,
      childEnv(target, options.sessionSettings),
      options.signal,
    );
    if (result.code === 0) return;
    const failure = parseRestoreFailure(result.stderr);
    const where = `the target ${describeConnection(target)}`;
    const part = partName(options.entries);
    const rolledBack = options.singleTransaction ? ' (rolled back: nothing of it was applied)' : '';
    const statement = failure.statement ? `; the statement was: ${failure.statement}` : '';
    let hint: string;
    if (failure.missingRole) {
      const grant = /^\s*(GRANT|REVOKE)\b/i.test(failure.statement ?? '');
      hint =
        `the role "${failure.missingRole}" does not exist on the target: create the roles first ` +
        `(pg_dumpall --roles-only | psql) or pass ${grant ? '--no-privileges' : '--no-owner'}`;
    } else if (failure.connection) {
      hint = 'check that the target is reachable with the same connection settings, then run again';
    } else if (/already exists/.test(failure.serverMessage ?? '')) {
      hint =
        'the target already has an object of that name: restore into an empty database, or drop the object first';
    } else {
      hint = `fix the cause on the target and run again; the full SQL is in ${dump.files.whole}`;
    }
    throw new PgconvoyError(
      `applying the ${part} of the schema to ${where} failed${failure.item ? ` at ${failure.item}` : ''}: ` +
        `${failure.serverMessage ?? result.stderr.trim()}${statement}${rolledBack}`,
      {
        code: 'SCHEMA_APPLY_FAILED',
        hint,
        exitCode: EXIT.target,
        details: {
          item: failure.item,
          statement: failure.statement,
          serverMessage: failure.serverMessage,
          missingRole: failure.missingRole,
          stderr: result.stderr,
        },
      },
    );
  });
}

/** The SQL a part of the schema would run, for --dry-run. */
export async function schemaSql(options: SchemaSqlOptions): Promise<string> {
  const { tools, dump } = options;
  return withList(dump, options.entries, async (listFile) => {
    const args = [...ownershipFlags(dump, options), '--file=-', `--use-list=${listFile}`, dump.files.archive];
    const result = await runTool(tools.pgRestore, args, childEnv(undefined));
    if (result.code !== 0) {
      throw new PgconvoyError(`pg_restore could not print the schema: ${result.stderr.trim()}`, {
        code: 'SCHEMA_DUMP_FAILED',
        hint: `check the archive ${dump.files.archive}`,
        exitCode: EXIT.failed,
      });
    }
    return mapTablespaceSql(result.stdout, dump.tablespaceMap);
  });
}
