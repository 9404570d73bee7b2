/**
 * `clone --via fdw`: the copy phase pulled by the target server itself through postgres_fdw
 * (the rows never pass through pgconvoy). The jobs, chunks, ledger and retries are the COPY
 * path's; what differs:
 *
 *   1. before anything is written: the source becomes a foreign server on the target
 *      (fdw/remote-server.ts), and the target server reads from the source once, for real:
 *      a target that cannot reach the source, or may not log in, stops the run here;
 *   2. before the copy: a foreign table for every table left to copy (fdw/foreign-tables.ts),
 *      and the snapshot's session locks those tables against writes (copy/source-write-lock.ts:
 *      postgres_fdw cannot import the snapshot, so writers are kept out instead);
 *   3. each job: INSERT … SELECT from its foreign table (copy/fdw-pull.ts);
 *   4. at the end, whatever happened: the foreign tables, the server, the user mapping (which
 *      holds the source's password) and the extension if pgconvoy created it are dropped.
 *      A run killed outright leaves them to the next run, which drops them when it ends, or
 *      to `pgconvoy clean`.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { closeQuietly } from '../connect/session.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage } from '../errors.js';
import { createForeignTables } from '../fdw/foreign-tables.js';
import {
  createRemoteServer,
  probeRemoteServer,
  remoteSourceAddress,
  removeRemoteServer,
  type RemoteServerNames,
} from '../fdw/remote-server.js';
import type { TableRef } from '../plan/chunk.js';
import type { JobRow } from '../ledger/jobs.js';
import { tableKey } from '../copy/table-columns.js';
import { displayName } from '../util/sql.js';
import { SQLSTATE } from '../sqlstate.js';

/** The copy methods of `clone --via`. */
export const COPY_METHODS = ['copy', 'fdw'] as const;
export type CopyMethod = (typeof COPY_METHODS)[number];

/** The foreign server and schema of a clone, named after its ledger schema. */
export function cloneFdwNames(ledgerSchema: string): RemoteServerNames {
  const base = ledgerSchema.slice(0, 40);
  return { server: `${base}_source`, schema: `${base}_source_tables` };
}

/** The tables with a job not done yet: the ones to import and to lock. */
export function tablesToPull(jobs: readonly JobRow[]): TableRef[] {
  const tables = new Map<string, TableRef>();
  for (const job of jobs) if (job.state !== 'done') tables.set(tableKey(job.table), job.table);
  return [...tables.values()];
}

/** Rows per postgres_fdw fetch: about 8 MB a round trip, within [100, 50000]. */
function fetchSize(_table: TableRef, averageRowBytes: number): number {
  return Math.min(50_000, Math.max(100, Math.round((8 * 1024 * 1024) / Math.max(averageRowBytes, 32))));
}

export interface FdwCloneOptions {
  source: ConnectionSpec;
  /** How the target server reaches the source, when not as pgconvoy does (`--source-from-target`). */
  sourceFromTarget: string | undefined;
  ledgerSchema: string;
  onInfo: (message: string) => void;
  onWarning: (message: string) => void;
}

export class FdwClone {
  private constructor(
    readonly names: RemoteServerNames,
    private readonly o: FdwCloneOptions,
  ) {}

  /** Step 1 of the module comment. Throws, having removed what it made, when the target cannot read the source. */
  static async connect(target: pg.Client, o: FdwCloneOptions): Promise<FdwClone> {
    const fdw = new FdwClone(cloneFdwNames(o.ledgerSchema), o);
    const setup = await createRemoteServer(
      target,
      fdw.names,
      remoteSourceAddress(o.source, o.sourceFromTarget),
      'clone --via fdw',
    );
    if (setup.loggedBy.length > 0)
      o.onWarning(
        `the target server may have logged the statement that carried the source's password as a parameter (${setup.loggedBy.join(', ')}; turning that off for pgconvoy's session needs superuser): remove it from the target's server log`,
      );
    const probe = await probeRemoteServer(target, fdw.names);
    if (probe.status === 'reached') {
      o.onInfo(
        `the target server reads the source through postgres_fdw (source PostgreSQL ${probe.sourceVersion}; foreign server ${fdw.names.server})`,
      );
      return fdw;
    }
    await removeRemoteServer(target, fdw.names).catch(() => undefined);
    const passwordRule = probe.sqlstate === SQLSTATE.prohibitedSqlStatementAttempted;
    throw new PgconvoyError(
      `the target server cannot read the source through postgres_fdw: ${probe.message}`,
      {
        code: probe.status === 'unreachable' ? 'SOURCE_UNREACHABLE_FROM_TARGET' : 'FDW_SETUP_FAILED',
        exitCode: EXIT.blocked,
        hint: passwordRule
          ? "postgres_fdw lets a role that is not a superuser connect only with a password the source asks for: give the source's password (in --source, PGPASSWORD or ~/.pgpass) and make the source's pg_hba.conf ask for it from the target's address"
          : "pgconvoy reaching both servers proves nothing about the path between them: check that the target server can resolve and reach the source's host and port, that the source's pg_hba.conf lets the target's address in, and sslmode; give the address the target sees with --source-from-target; or clone without --via fdw",
        details: { sqlstate: probe.sqlstate },
      },
    );
  }

  /** Step 2: foreign tables for `tables`, by tableKey(); refuses what postgres_fdw would read wrongly. */
  async foreignTables(
    target: pg.Client,
    source: pg.Client,
    tables: readonly TableRef[],
  ): Promise<Map<string, TableRef>> {
    const created = await createForeignTables(target, source, this.names, tables, { fetchSize });
    const parents = created.filter((t) => t.hasChildren);
    if (parents.length > 0)
      throw new PgconvoyError(
        `clone --via fdw cannot copy ${parents.map((t) => displayName(t.source.schema, t.source.name)).join(', ')}: inheritance parent(s), and postgres_fdw reads a parent with its children's rows`,
        {
          code: 'FDW_INHERITED_TABLE',
          exitCode: EXIT.blocked,
          hint: 'clone without --via fdw (COPY reads each table by itself), or exclude those tables (-T) and copy them separately',
        },
      );
    return new Map(created.map((t) => [tableKey(t.source), t.foreign]));
  }

  /** Step 4, on a session of its own (the run's may be gone). Never throws: says what is left. */
  async remove(targetSpec: ConnectionSpec): Promise<void> {
    let client: pg.Client | undefined;
    try {
      client = await openClient(targetSpec, { applicationName: 'pgconvoy clone' });
      const removal = await removeRemoteServer(client, this.names);
      this.o.onInfo(
        `removed the foreign server ${this.names.server}, its user mapping and foreign tables from the target${removal.extension === 'dropped' ? ', and the postgres_fdw extension pgconvoy had created' : ''}`,
      );
    } catch (err) {
      this.o.onWarning(
        `could not remove the foreign server ${this.names.server} from the target (${errorMessage(err)}): its user mapping holds the source's password; run the same command again, or pgconvoy clean, or DROP SCHEMA ${this.names.schema} CASCADE; DROP SERVER ${this.names.server} CASCADE`,
      );
    } finally {
      await closeQuietly(client);
    }
  }
}
