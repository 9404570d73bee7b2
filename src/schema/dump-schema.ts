/**
 * The schema stage of `pgconvoy clone`, part one: dump the source's schema once with
 * `pg_dump --format=custom --schema-only` into the run directory, read the archive's table
 * of contents back with pg_restore, and sort every entry by pg_dump's own sections and
 * entry types (never by editing SQL text: a function body may say "GRANT ALL ON ...").
 *
 * Writes, into the run directory, the files Flexy users know:
 *   schema.dump                  the archive (the one source of truth for the steps after)
 *   schema.sql                   the whole schema
 *   schema_no_indexes.sql        pre-data: what must exist before the data
 *   schema_indexes_only.sql      post-data: indexes, constraints, triggers, ...
 *   schema-pre-data.list / schema-post-data.list   the restore lists behind those two files
 */
import { chmodSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConnectionSpec } from '../connect/resolve.js';
import { describeConnection } from '../connect/resolve.js';
import { openClient } from '../connect/open-client.js';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { quoteIdent } from '../util/sql.js';
import { makePrivateDir, writePrivateFile } from '../util/private-files.js';
import { lockShortageHint } from '../inventory/lock-capacity.js';
import { lockHolders, lockHoldersHint } from '../inventory/lock-holders.js';
import { classifyPostData } from './classify.js';
import { mapTablespaceSql } from './tablespaces.js';
import type { PgTools } from './pg-tools.js';
import { childConninfo, childEnv, runTool, type ToolResult } from './run-tool.js';
import { assignSections, listedIds, parseTocListing, restoreList } from './toc.js';
import type { SchemaDump } from './types.js';

export interface DumpSchemaOptions {
  source: ConnectionSpec;
  tools: PgTools;
  runDir: string;
  /** Schemas left out of the dump (pgconvoy's own ledger schema, say). Exact names, not patterns. */
  excludeSchemas: string[];
  /** pg_dump's --schema/--table/... switches of a filter (inventory/table-filter.ts pgDumpFilterArgs). */
  filterArgs?: string[];
  /** Write the SQL files without ALTER ... OWNER TO (and make that the default when applying). */
  noOwner?: boolean;
  /** pg_dump's --lock-wait-timeout, in milliseconds (default DEFAULTS.lockWaitTimeoutMs). */
  lockWaitTimeoutMs?: number;
  /** Write the SQL files without GRANT/REVOKE (and make that the default when applying). */
  noPrivileges?: boolean;
  /** Leave tablespaces out (pg_restore --no-tablespaces). */
  noTablespaces?: boolean;
  /** Rename tablespaces in the SQL (--tablespace-map OLD=NEW). */
  tablespaceMap?: ReadonlyMap<string, string>;
  /** Dump in this exported snapshot (pg_dump --snapshot), the one the data is copied in. */
  snapshot?: string | undefined;
  signal?: AbortSignal;
}

function toolFailure(what: string, result: ToolResult, spec: ConnectionSpec, hint: string): PgconvoyError {
  const stderr = result.stderr.trim();
  const exitCode = spec.side === 'source' ? EXIT.source : EXIT.target;
  return new PgconvoyError(
    `${what} failed for the ${spec.side} ${describeConnection(spec)}` +
      (result.signal ? ` (killed by ${result.signal})` : ` (exit code ${result.code})`) +
      (stderr ? `: ${stderr}` : ''),
    { code: 'SCHEMA_DUMP_FAILED', hint, exitCode, details: { stderr } },
  );
}

/**
 * pg_dump gave up waiting for a table's lock (its --lock-wait-timeout): name the table (pg_dump
 * prints the LOCK TABLE it ran) and who holds the lock that kept it waiting.
 */
async function lockWaitExpired(
  source: ConnectionSpec,
  dumped: ToolResult,
  waitedMs: number,
): Promise<PgconvoyError> {
  const table = /LOCK TABLE (.+?) IN ACCESS SHARE MODE/.exec(dumped.stderr)?.[1];
  const client = await openClient(source, { applicationName: 'pgconvoy schema' });
  let holders: string[];
  try {
    holders = table ? await lockHolders(client, [table], 'AccessShareLock') : [];
  } finally {
    await client.end().catch(() => undefined);
  }
  return new PgconvoyError(
    `pg_dump waited ${waitedMs / 1000} s (--lock-wait-timeout) for a lock on ${table ? `table ${table}` : 'a table'} of the source, in vain`,
    {
      code: 'LOCK_TIMEOUT',
      exitCode: EXIT.source,
      hint: `pg_dump needs ACCESS SHARE on every table it dumps, and another session holds a lock that excludes it: ${lockHoldersHint(holders)}`,
      details: { stderr: dumped.stderr.trim(), holders },
    },
  );
}

async function restoreTool(tools: PgTools, args: string[], signal?: AbortSignal): Promise<string> {
  const result = await runTool(tools.pgRestore, args, childEnv(undefined), signal);
  if (result.code !== 0) {
    throw new PgconvoyError(`pg_restore ${args.join(' ')} failed: ${result.stderr.trim()}`, {
      code: 'SCHEMA_DUMP_FAILED',
      hint: `check the archive and the run directory; ${tools.pgRestore} is "${tools.version}"`,
      exitCode: EXIT.failed,
      details: { stderr: result.stderr },
    });
  }
  return result.stdout;
}

/**
 * Dumps the source's schema and classifies its TOC.
 *
 * @example
 *   const dump = await dumpSchema({ source, tools, runDir: '.pgconvoy', excludeSchemas: ['pgconvoy'] });
 *   dump.postData.filter((i) => i.phase === 'table' && i.table?.name === 'orders');
 */
export async function dumpSchema(options: DumpSchemaOptions): Promise<SchemaDump> {
  const { source, tools, runDir, signal } = options;
  makePrivateDir(runDir);
  const archive = path.join(runDir, 'schema.dump');
  const dumpArgs = [
    '--format=custom',
    '--schema-only',
    '--no-password',
    // The source's own subscriptions pull from its upstreams: a copy on the target would too.
    '--no-subscriptions',
    // pg_dump locks every table it dumps; one held by someone else's long DDL would make it
    // (and the application's queries queued behind it) wait without end.
    `--lock-wait-timeout=${options.lockWaitTimeoutMs ?? DEFAULTS.lockWaitTimeoutMs}`,
    `--file=${archive}`,
    // The schema of the same instant as the data (the copy's exported snapshot).
    ...(options.snapshot ? [`--snapshot=${options.snapshot}`] : []),
    ...options.excludeSchemas.map((s) => `--exclude-schema=${quoteIdent(s)}`),
    ...(options.filterArgs ?? []),
    `--dbname=${childConninfo(source, 'pgconvoy pg_dump')}`,
  ];
  const dumped = await runTool(tools.pgDump, dumpArgs, childEnv(source), signal);
  // pg_dump's --lock-wait-timeout is a statement_timeout around its LOCK TABLE.
  if (dumped.code !== 0 && /due to (lock|statement) timeout[\s\S]*LOCK TABLE /.test(dumped.stderr))
    throw await lockWaitExpired(source, dumped, options.lockWaitTimeoutMs ?? DEFAULTS.lockWaitTimeoutMs);
  if (dumped.code !== 0) {
    throw toolFailure(
      'pg_dump --schema-only',
      dumped,
      source,
      /permission denied/i.test(dumped.stderr)
        ? 'the source role must be able to read every object it dumps: connect as the owner or a superuser'
        : /out of shared memory/.test(dumped.stderr)
          ? `pg_dump locks every table it dumps in one transaction; ${lockShortageHint()}`
          : `the command was ${tools.pgDump} ${dumpArgs.slice(0, -1).join(' ')} --dbname=<source>`,
    );
  }

  const [verbose, preListing, postListing] = await Promise.all([
    restoreTool(tools, ['--list', '--verbose', archive], signal),
    restoreTool(tools, ['--list', '--section=pre-data', archive], signal),
    restoreTool(tools, ['--list', '--section=post-data', archive], signal),
  ]);
  const entries = parseTocListing(verbose);
  assignSections(entries, { 'pre-data': listedIds(preListing), 'post-data': listedIds(postListing) });

  const client = await openClient(source, { applicationName: 'pgconvoy schema' });
  let postData;
  try {
    postData = await classifyPostData(client, entries);
  } finally {
    await client.end().catch(() => undefined);
  }
  const preData = entries.filter((e) => e.section === 'pre-data');

  const files = {
    archive,
    whole: path.join(runDir, 'schema.sql'),
    preData: path.join(runDir, 'schema_no_indexes.sql'),
    postData: path.join(runDir, 'schema_indexes_only.sql'),
  };
  const preList = path.join(runDir, 'schema-pre-data.list');
  const postList = path.join(runDir, 'schema-post-data.list');
  writePrivateFile(
    preList,
    restoreList(
      entries,
      preData.map((e) => e.dumpId),
      'pre-data',
    ),
  );
  writePrivateFile(
    postList,
    restoreList(
      entries,
      postData.map((e) => e.dumpId),
      'post-data',
    ),
  );
  const flags = [
    ...(options.noOwner ? ['--no-owner'] : []),
    ...(options.noPrivileges ? ['--no-privileges'] : []),
    ...(options.noTablespaces ? ['--no-tablespaces'] : []),
  ];
  await Promise.all([
    restoreTool(tools, [...flags, `--file=${files.whole}`, archive], signal),
    restoreTool(tools, [...flags, `--file=${files.preData}`, `--use-list=${preList}`, archive], signal),
    restoreTool(tools, [...flags, `--file=${files.postData}`, `--use-list=${postList}`, archive], signal),
  ]);
  const tablespaceMap = options.tablespaceMap ?? new Map<string, string>();
  if (tablespaceMap.size > 0) {
    // The files say what pgconvoy applies.
    for (const file of [files.whole, files.preData, files.postData])
      writePrivateFile(file, mapTablespaceSql(readFileSync(file, 'utf8'), tablespaceMap));
  }
  // pg_dump and pg_restore create their files with our umask: narrow them like ours.
  for (const file of [archive, files.whole, files.preData, files.postData]) chmodSync(file, 0o600);

  return {
    runDir,
    files,
    pgDumpVersion: tools.version,
    entries,
    preData,
    postData,
    noOwner: options.noOwner ?? false,
    noPrivileges: options.noPrivileges ?? false,
    noTablespaces: options.noTablespaces ?? false,
    tablespaceMap,
  };
}
