/**
 * `pgconvoy clone`'s options that other commands share (start, worker, verify), and the
 * translation of its flags into the library's CloneOptions.
 */
import { readFileSync } from 'node:fs';
import { DEFAULTS, EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import { chunkedTables, defaultWorkerPrefix, type CloneOptions } from '../../clone/run-clone.js';
import { parseSize } from '../../util/format.js';
import { connectionFor, type ConnectionFlags } from '../connections.js';
import { loadConfig } from '../common-options.js';
import { milliseconds } from '../parse-options.js';
import { defaultRunDir } from '../command-log.js';
import { parseExcludedColumn } from '../../copy/table-columns.js';
import { parseTablespaceMap } from '../../schema/tablespaces.js';
import type { FilterFlags } from '../../inventory/table-filter.js';
import type { HttpFlags } from '../http-option.js';
import { filterOf, splitSchemaFlag } from '../filter-options.js';
import type { CopyMethod } from '../../clone/via-fdw.js';

/** `--schema apply|skip`: create the schema with pg_dump, or find the tables there already. */
export const SCHEMA_MODES = ['apply', 'skip'] as const;

/** `--exclude-column`, the same for clone, start and worker. */
export const EXCLUDE_COLUMN_OPTION = [
  '--exclude-column <schema.table.column>',
  'leave a source column behind (the target lacks it, or should keep its own default); repeatable',
  (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
] as const;
/** `--roles`, `--role-passwords`, `--no-tablespaces`, `--tablespace-map`: the same for clone and start. */
export const ROLES_OPTION = [
  '--roles',
  'create the roles the database refers to (owners, grantees, policies) on the target first; existing ones are left as they are',
] as const;
export const ROLE_PASSWORDS_OPTION = [
  '--role-passwords',
  'with --roles: copy their passwords too (read from pg_authid: the source role must be a superuser; never printed)',
] as const;
export const NO_TABLESPACES_OPTION = [
  '--no-tablespaces',
  "put every table and index in the target database's default tablespace",
] as const;
export const TABLESPACE_MAP_OPTION = [
  '--tablespace-map <old=new>',
  "the source's tablespace OLD is NEW on the target; repeatable",
  (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
] as const;

export interface CloneFlags extends ConnectionFlags, HttpFlags, FilterFlags {
  jobs?: number;
  indexJobs?: number;
  ledgerSchema: string;
  runDir?: string;
  /** apply/skip (the schema mode) or schema patterns: see cli/filter-options.ts. */
  schema?: string[];
  indexes?: 'before' | 'after';
  createDatabase?: boolean;
  existingRows: 'error' | 'truncate' | 'skip';
  pgBin?: string;
  owner: boolean;
  privileges: boolean;
  roles?: boolean;
  rolePasswords?: boolean;
  tablespaces?: boolean;
  tablespaceMap?: string[];
  retries: number;
  maintenanceWorkMem: string;
  planOnly?: boolean;
  verify?: boolean;
  queueFile?: string;
  allowGaps?: boolean;
  splitTablesLargerThan?: string;
  chunkSize?: string;
  excludeColumn?: string[];
  vacuum?: boolean;
  via?: CopyMethod;
  sourceFromTarget?: string;
  lockWaitTimeout?: number;
  dryRun?: boolean;
  json?: boolean;
  quiet?: boolean;
}

function readQueueFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new PgconvoyError(`cannot read the queue file "${file}"`, {
      code: 'BAD_QUEUE_FILE',
      exitCode: EXIT.config,
      hint: 'check the path given to --queue-file',
      cause: err,
    });
  }
}

function sizeOption(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const size = parseSize(text);
  if (size === undefined || size <= 0) {
    throw new PgconvoyError(`${flag} "${text}" is not a size`, {
      code: 'BAD_SIZE',
      exitCode: EXIT.usage,
      hint: 'write it like 512MB, 10GB or 1TB',
    });
  }
  return size;
}

/** pg_dump's option, for clone and start: how long a source table lock may be waited for. */
export const LOCK_WAIT_TIMEOUT_OPTION = [
  '--lock-wait-timeout <time>',
  `how long to wait for a table lock on the source (pg_dump's, and for the publication at start) before saying who holds it: 30s, 2min, or milliseconds (default ${DEFAULTS.lockWaitTimeoutMs / 1000}s)`,
  milliseconds,
] as const;

export function buildCloneOptions(flags: CloneFlags, signal: AbortSignal | undefined): CloneOptions {
  if (flags.via === 'fdw' && flags.planOnly)
    throw new PgconvoyError('--via fdw and --plan-only do not go together', {
      code: 'BAD_ARGUMENT',
      exitCode: EXIT.usage,
      hint: '`pgconvoy worker` copies with COPY; --via fdw applies to the copy that clone runs itself: drop one of them',
    });
  const config = loadConfig(flags.config);
  const source = connectionFor('source', flags, config)!;
  const target = connectionFor('target', flags, config)!;
  const opt = (key: string) => config?.options[`clone.${key}`];
  const schemaFlag = splitSchemaFlag(flags.schema, SCHEMA_MODES);
  const runDir = flags.runDir ?? (opt('run-dir') as string | undefined) ?? defaultRunDir(target);
  return {
    source,
    target,
    jobs: flags.jobs ?? (opt('jobs') as number | undefined) ?? DEFAULTS.jobs,
    indexJobs: flags.indexJobs ?? (opt('index-jobs') as number | undefined) ?? DEFAULTS.indexJobs,
    ledgerSchema: flags.ledgerSchema,
    runDir,
    excludeColumns: new Set((flags.excludeColumn ?? []).map(parseExcludedColumn)),
    schema: schemaFlag.mode ?? (opt('schema') as 'apply' | 'skip' | undefined) ?? 'apply',
    filter: filterOf(flags, schemaFlag.patterns),
    vacuum: flags.vacuum !== false,
    lockWaitTimeoutMs: flags.lockWaitTimeout ?? DEFAULTS.lockWaitTimeoutMs,
    indexes: flags.indexes ?? (opt('indexes') as 'before' | 'after' | undefined) ?? 'after',
    createDatabase: Boolean(flags.createDatabase),
    existingRows: flags.existingRows,
    pgBin: flags.pgBin ?? (opt('pg-bin') as string | undefined),
    pathEnv: process.env.PATH ?? '',
    noOwner: !flags.owner,
    noPrivileges: !flags.privileges,
    roles: Boolean(flags.roles || flags.rolePasswords),
    rolePasswords: Boolean(flags.rolePasswords),
    noTablespaces: flags.tablespaces === false,
    tablespaceMap: parseTablespaceMap(flags.tablespaceMap ?? []),
    maxAttempts: flags.retries + 1,
    maintenanceWorkMem: flags.maintenanceWorkMem,
    planOnly: Boolean(flags.planOnly),
    snapshot: undefined,
    planChunks: chunkedTables(
      sizeOption(
        flags.splitTablesLargerThan ?? (opt('split-tables-larger-than') as string | undefined),
        DEFAULTS.splitTablesLargerThan,
        '--split-tables-larger-than',
      ),
      sizeOption(
        flags.chunkSize ?? (opt('chunk-size') as string | undefined),
        DEFAULTS.chunkSize,
        '--chunk-size',
      ),
    ),
    ...(flags.queueFile
      ? {
          queueFile: {
            text: readQueueFile(flags.queueFile),
            fileName: flags.queueFile,
            allowGaps: Boolean(flags.allowGaps),
          },
        }
      : {}),
    workerPrefix: defaultWorkerPrefix(),
    via: flags.via ?? (opt('via') as CopyMethod | undefined) ?? 'copy',
    sourceFromTarget: flags.sourceFromTarget,
    signal,
    onEvent: () => undefined,
  };
}
