/**
 * `switch-first prepare`: makes the target serve the whole database before any row is moved.
 *
 * 1. Precheck (precheck.ts): what this mode cannot keep correct is refused, per table, unless
 *    accepted. Nothing is written before it passes.
 * 2. Schema: the source's pg_dump schema, indexes and constraints included, foreign keys
 *    left out (they would check only the target's rows; move/finish put them back NOT VALID
 *    then VALIDATE them). Applied with the ledger's state row in one transaction (psql).
 * 3. Attach: the postgres_fdw extension, a server and user mapping for the source
 *    (fdw/remote-server.ts: the password is a bind parameter, never in a statement text), and
 *    for each table a foreign table over the source table that INHERITS from the target
 *    table: a query on the target table reads both its own rows and the source's. The
 *    columns, NOT NULLs and CHECKs come from the parent, so they match by construction. On
 *    the source, the journal of batches in flight (move-batch.ts).
 * 4. Sequences set past the source's by a margin, before the application writes: rows the
 *    application inserts on the source until it switches take values below it.
 * Then (phase `prepared`) the application may switch. Each step is resumable: a rerun
 * continues at the phase the ledger records.
 */
import type pg from 'pg';
import { applySqlAtomically } from '../clone/apply-sql.js';
import { describeConnection, type ConnectionSpec } from '../connect/resolve.js';
import { inDiscardedTransaction, inTransaction } from '../connect/session.js';
import { copySequenceValues, type SequenceValue } from '../finish/sequences.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { foreignTableName } from '../fdw/foreign-tables.js';
import { createRemoteServer, remoteSourceAddress } from '../fdw/remote-server.js';
import { readServerInfo } from '../inventory/server-info.js';
import { ensureLedger } from '../ledger/ledger-schema.js';
import { dumpSchema, findPgTools, schemaSql } from '../schema/index.js';
import { displayName, qualifiedName, quoteIdent, quoteLiteral } from '../util/sql.js';
import { ensureJournal } from './journal.js';
import { switchFirstNames } from './names.js';
import { blockingError, findRisks, type Acceptance, type Finding } from './precheck.js';
import { readSourceTables, type SourceTable } from './source-tables.js';
import { readSwitchFirstState, writeSwitchFirstState, type SwitchFirstState } from './state.js';

export interface PrepareOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  runDir: string;
  accept: Acceptance[];
  /** Increments each target sequence is set past the source's value. */
  sequenceMargin: number;
  /** How the TARGET server reaches the source, when not as --source says. */
  sourceFromTarget?: string | undefined;
  pgBin?: string | undefined;
  pathEnv?: string | undefined;
  log: (line: string) => void;
}

export interface PrepareResult {
  tables: number;
  findings: Finding[];
  sequences: SequenceValue[];
  /** Server settings that may have logged the statement carrying the password. */
  loggedBy: string[];
  /** It was prepared by an earlier run: nothing was done. */
  already: boolean;
}

const READY: readonly string[] = ['prepared', 'moved', 'cleaned', 'finished'];

export async function prepareSwitchFirst(
  o: PrepareOptions,
  src: pg.Client,
  tgt: pg.Client,
): Promise<PrepareResult> {
  await ensureLedger(tgt, o.ledgerSchema);
  let state = await readSwitchFirstState(tgt, o.ledgerSchema);
  let findings: Finding[] = [];
  if (state && READY.includes(state.phase))
    return { tables: state.tables.length, findings, sequences: [], loggedBy: [], already: true };
  if (state?.phase === 'torn-down')
    throw new PgconvoyError(
      'a switch-first prepare was torn down on this target; its tables are still there',
      {
        code: 'TARGET_NOT_EMPTY',
        hint: 'prepare into a new, empty target database (drop and recreate this one)',
        exitCode: EXIT.target,
      },
    );
  const names = switchFirstNames(o.ledgerSchema);

  if (!state) {
    const tables = await readSourceTables(src, o.ledgerSchema);
    findings = findRisks(tables, o.accept);
    const blocked = blockingError(findings);
    if (blocked) throw blocked;
    await checkSourceRole(src, tables);
    await checkTargetEmpty(tgt, tables);
    state = {
      phase: 'schema',
      source: describeConnection(o.source),
      tables: tables.map((t) => ({
        schema: t.schema,
        name: t.name,
        foreignName: foreignTableName(t),
        key: t.key,
        columns: t.columns,
        estimatedRows: t.estimatedRows,
        bytes: t.bytes,
      })),
      deferredForeignKeys: uniqueForeignKeys(tables),
      accepted: findings.filter((f) => f.accepted).map((f) => `${f.schema}.${f.table}:${f.risk}`),
      detail: {},
    };
    await applySchema(o, src, state);
    o.log(`schema applied to the target: ${state.tables.length} tables, foreign keys deferred`);
  }

  let loggedBy: string[] = [];
  if (state.phase === 'schema') {
    await ensureJournal(src, names);
    const setup = await createRemoteServer(
      tgt,
      names,
      remoteSourceAddress(o.source, o.sourceFromTarget),
      'pgconvoy switch-first',
    );
    loggedBy = setup.loggedBy;
    state = {
      ...state,
      phase: 'attached',
      detail: { ...state.detail, extensionCreated: setup.extensionCreatedByPgconvoy },
    };
    await attachForeignTables(tgt, o, state);
    o.log(`each target table now shows the source's rows (foreign tables in schema "${names.schema}")`);
  }

  // Sequences: read from the source now, set margin increments further on the target.
  const sequences = await copySequenceValues(src, tgt, o.ledgerSchema, o.sequenceMargin, {
    filter: undefined,
  });
  state = { ...state, phase: 'prepared' };
  await writeSwitchFirstState(tgt, o.ledgerSchema, state);
  return { tables: state.tables.length, findings, sequences, loggedBy, already: false };
}

function uniqueForeignKeys(tables: readonly SourceTable[]): SwitchFirstState['deferredForeignKeys'] {
  const seen = new Map<string, SwitchFirstState['deferredForeignKeys'][number]>();
  for (const t of tables)
    for (const fk of t.foreignKeys)
      seen.set(JSON.stringify([fk.schema, fk.table, fk.name]), {
        schema: fk.schema,
        table: fk.table,
        name: fk.name,
        definition: fk.definition,
      });
  return [...seen.values()];
}

/**
 * The move deletes on the source with session_replication_role = replica so that no trigger
 * and no foreign key action (ON DELETE CASCADE would delete rows not yet moved) fires: the
 * source role must be allowed to set it when any table has either.
 */
async function checkSourceRole(src: pg.Client, tables: readonly SourceTable[]): Promise<void> {
  const needs = tables.filter((t) => t.triggers.length > 0 || t.foreignKeys.length > 0);
  if (needs.length === 0) return;
  await inDiscardedTransaction(src, async () => {
    try {
      await src.query('SET LOCAL session_replication_role = replica');
    } catch (err) {
      throw new PgconvoyError(
        `the source role may not set session_replication_role, which the move needs for ${needs.map((t) => displayName(t.schema, t.name)).join(', ')}`,
        {
          code: 'PRECHECK_BLOCKED',
          exitCode: EXIT.blocked,
          hint: 'deleting moved rows on the source would fire their triggers and foreign key actions (ON DELETE CASCADE deletes rows not yet moved): connect to the source as a superuser, or on 15+ GRANT SET ON PARAMETER session_replication_role TO <role>',
          cause: err,
        },
      );
    }
  });
}

async function checkTargetEmpty(tgt: pg.Client, tables: readonly SourceTable[]): Promise<void> {
  const res = await tgt.query<{ name: string }>(
    `SELECT pg_catalog.format('%I.%I', t.s, t.n) AS name
     FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS t(s, n)
     WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.s, t.n)) IS NOT NULL`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  if (res.rows.length > 0)
    throw new PgconvoyError(
      `the target already has ${res.rows.length} of the source's tables (${res.rows
        .slice(0, 5)
        .map((r) => r.name)
        .join(', ')}${res.rows.length > 5 ? ', …' : ''})`,
      {
        code: 'TARGET_NOT_EMPTY',
        hint: 'switch-first prepare creates the schema itself: give it an empty target database',
        exitCode: EXIT.target,
      },
    );
}

/** pg_dump's schema minus foreign keys, and the ledger's state row, in one transaction. */
async function applySchema(o: PrepareOptions, src: pg.Client, state: SwitchFirstState): Promise<void> {
  const info = await readServerInfo(src);
  const tools = findPgTools({
    sourceMajor: info.major,
    ...(o.pgBin ? { pgBin: o.pgBin } : {}),
    ...(o.pathEnv !== undefined ? { pathEnv: o.pathEnv } : {}),
  });
  const dump = await dumpSchema({
    source: o.source,
    tools,
    runDir: o.runDir,
    excludeSchemas: [o.ledgerSchema],
  });
  const entries = [...dump.preData, ...dump.postData.filter((e) => e.kind !== 'fk-constraint')];
  const sql = await schemaSql({ tools, dump, entries });
  const s = qualifiedName(o.ledgerSchema, 'switch_first');
  const json = (v: unknown) => `${quoteLiteral(JSON.stringify(v))}::jsonb`;
  await applySqlAtomically({
    tools,
    target: o.target,
    sql,
    ledgerSql: `INSERT INTO ${s} (id, phase, source, tables, deferred_fks, accepted, detail)
VALUES (1, 'schema', ${quoteLiteral(state.source)}, ${json(state.tables)}, ${json(state.deferredForeignKeys)}, ${json(state.accepted)}, ${json(state.detail)});`,
    what: 'the schema (switch-first)',
    applicationName: 'pgconvoy switch-first prepare',
  });
}

/**
 * One foreign table per source table, inheriting from the target table, and the state
 * `attached`, in one transaction. Not fdw/foreign-tables.ts' createForeignTables: an
 * inheritance child must carry its parent's CHECK constraints and generated columns, which
 * `CREATE FOREIGN TABLE … () INHERITS (parent)` gives by construction (the name is that
 * module's foreignTableName). The first foreign table is read once so that a target that
 * cannot reach the source fails here, not in the application.
 */
async function attachForeignTables(
  tgt: pg.Client,
  o: PrepareOptions,
  state: SwitchFirstState,
): Promise<void> {
  const names = switchFirstNames(o.ledgerSchema);
  await inTransaction(tgt, async () => {
    for (const t of state.tables) {
      const foreign = qualifiedName(names.schema, t.foreignName);
      await tgt.query(
        `CREATE FOREIGN TABLE IF NOT EXISTS ${foreign} () INHERITS (${qualifiedName(t.schema, t.name)})
         SERVER ${quoteIdent(names.server)} OPTIONS (schema_name ${quoteLiteral(t.schema)}, table_name ${quoteLiteral(t.name)})`,
      );
    }
    const first = state.tables[0];
    if (first) {
      try {
        await tgt.query(`SELECT FROM ONLY ${qualifiedName(names.schema, first.foreignName)} LIMIT 1`);
      } catch (err) {
        throw new PgconvoyError(
          `the target server cannot read the source through postgres_fdw (${displayName(first.schema, first.name)})`,
          {
            code: 'SOURCE_UNREACHABLE_FROM_TARGET',
            exitCode: EXIT.target,
            hint: 'the target server connects to the source itself: check its network path and pg_hba.conf on the source, or give --source-from-target with the address the target server sees',
            cause: err,
          },
        );
      }
    }
    await writeSwitchFirstState(tgt, o.ledgerSchema, state);
  });
}
