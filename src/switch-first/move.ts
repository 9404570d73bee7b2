/**
 * `switch-first move`: drains every source table into its target table, batch by batch
 * (move-batch.ts), several tables at once, largest first. First it replays what an earlier
 * run left in the journal. A worker that loses a session (a server restarted, the network)
 * reconnects with backoff, replays its table's journal and goes on. When every source table
 * is empty the foreign keys are put back (NOT VALID, then VALIDATE; violations listed) and
 * the phase becomes `moved`.
 *
 * One move at a time per target: a session-level advisory lock, released by the server when
 * pgconvoy dies.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { DEFAULTS, EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { isTransient } from '../sqlstate.js';
import { runLimited } from '../util/pool.js';
import { displayName } from '../util/sql.js';
import { backoffMs, sleep } from '../util/wait.js';
import { restoreForeignKeys, type ForeignKeyOutcome } from './foreign-keys.js';
import { journaledBatches } from './journal.js';
import {
  moveBatch,
  replayBatch,
  sourceTableShape,
  type BatchContext,
  type BlockCursor,
} from './move-batch.js';
import { switchFirstNames } from './names.js';
import {
  movedRows,
  requireSwitchFirstState,
  tableKey,
  writeSwitchFirstState,
  type MovedTable,
} from './state.js';
import { closeQuietly } from '../connect/session.js';

export interface MoveOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  jobs: number;
  batchRows: number;
  lockTimeoutMs: number;
  /** Called after each batch with the totals so far. */
  onProgress: (p: MoveProgress) => void;
  log: (line: string) => void;
  signal?: AbortSignal | undefined;
}

export interface MoveProgress {
  movedRows: number;
  /** Rows to move at the start (the source's estimates), at least movedRows. */
  totalRows: number;
  tablesDone: number;
  tables: number;
  elapsedMs: number;
}

export interface MoveResult {
  rowsMoved: number;
  replayed: number;
  tables: { schema: string; name: string; rows: number }[];
  foreignKeys: ForeignKeyOutcome[];
  alreadyMoved: boolean;
}

const MOVE_LOCK = 'pgconvoy switch-first move';

async function sessionPair(o: MoveOptions, worker: string): Promise<{ src: pg.Client; tgt: pg.Client }> {
  const src = await openClient(o.source, { applicationName: `pgconvoy move ${worker}` });
  try {
    const tgt = await openClient(o.target, { applicationName: `pgconvoy move ${worker}` });
    await replicaRole(src);
    await replicaRole(tgt);
    return { src, tgt };
  } catch (err) {
    await closeQuietly(src);
    throw err;
  }
}

/** Fires no trigger and no foreign key action for moved rows, where the role may (prepare checked the source). */
async function replicaRole(client: pg.Client): Promise<void> {
  try {
    await client.query('SET session_replication_role = replica');
  } catch {
    // not allowed: prepare refused tables that need it on the source; on the target the
    // foreign keys are not there yet and user triggers were accepted by the operator
  }
}

async function closePair(pair: { src: pg.Client; tgt: pg.Client } | undefined): Promise<void> {
  await closeQuietly(pair?.src);
  await closeQuietly(pair?.tgt);
}

/** The target session that holds the move's advisory lock (one move per target at a time). */
async function controlSession(o: MoveOptions): Promise<pg.Client> {
  const control = await openClient(o.target, { applicationName: 'pgconvoy move' });
  const locked = await control.query<{ ok: boolean }>(
    'SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext($1)) AS ok',
    [`${MOVE_LOCK} ${o.ledgerSchema}`],
  );
  if (!locked.rows[0]?.ok) {
    await closeQuietly(control);
    throw new PgconvoyError('another switch-first move is running on this target', {
      code: 'MOVE_RUNNING',
      hint: 'wait for it (pgconvoy switch-first status shows its progress), or stop it and run move again',
      exitCode: EXIT.blocked,
    });
  }
  await replicaRole(control);
  return control;
}

/** The control session, opened again (with its lock) when the target restarted meanwhile. */
async function liveControl(o: MoveOptions, control: pg.Client): Promise<pg.Client> {
  try {
    await control.query('SELECT 1');
    return control;
  } catch (err) {
    if (!isTransient(err)) throw err;
    await closeQuietly(control);
    return controlSession(o);
  }
}

export async function runMove(o: MoveOptions): Promise<MoveResult> {
  let control = await controlSession(o);
  let source: pg.Client | undefined;
  try {
    const state = await requireSwitchFirstState(control, o.ledgerSchema, 'move');
    if (state.phase === 'schema' || state.phase === 'attached')
      throw new PgconvoyError(`switch-first prepare did not complete (phase "${state.phase}")`, {
        code: 'SWITCH_FIRST_PHASE',
        hint: 'run switch-first prepare again; the application must not switch before it says so',
        exitCode: EXIT.usage,
      });
    if (state.phase !== 'prepared' && state.phase !== 'moved')
      return { rowsMoved: 0, replayed: 0, tables: [], foreignKeys: [], alreadyMoved: true };
    const names = switchFirstNames(o.ledgerSchema);
    const ctx: BatchContext = {
      ledgerSchema: o.ledgerSchema,
      names,
      batchRows: o.batchRows,
      lockTimeoutMs: o.lockTimeoutMs,
    };
    source = await openClient(o.source, { applicationName: 'pgconvoy move' });
    await replicaRole(source);
    const others = await otherSourceSessions(source);
    if (others)
      o.log(
        `warning: ${others} on the source database: a row it writes there directly during the move can be lost or moved twice; point every writer at the target`,
      );

    // What an earlier run left between its two commits.
    let replayed = 0;
    for (const batch of await journaledBatches(source, names)) {
      const table = state.tables.find((t) => t.schema === batch.schema && t.name === batch.table);
      if (!table) throw unknownJournalTable(batch.schema, batch.table);
      if ((await replayBatch(source, control, ctx, table, batch)) === 'replayed')
        replayed += batch.rows.length;
    }
    if (replayed > 0) o.log(`replayed ${replayed} rows journaled by an interrupted run`);

    const before = await movedRows(control, o.ledgerSchema);
    const moved = new Map<string, number>();
    const totalRows =
      state.tables.reduce(
        (sum, t) => sum + Math.max(0, t.estimatedRows - (before.get(tableKey(t.schema, t.name)) ?? 0)),
        0,
      ) || 1;
    const started = Date.now();
    let movedTotal = 0;
    let tablesDone = 0;
    const progress = () =>
      o.onProgress({
        movedRows: movedTotal,
        totalRows: Math.max(totalRows, movedTotal),
        tablesDone,
        tables: state.tables.length,
        elapsedMs: Date.now() - started,
      });

    const order = [...state.tables].sort((a, b) => b.bytes - a.bytes);
    await runLimited(order, o.jobs, async (table) => {
      await drainTable(o, ctx, table, (rows) => {
        movedTotal += rows;
        moved.set(
          tableKey(table.schema, table.name),
          (moved.get(tableKey(table.schema, table.name)) ?? 0) + rows,
        );
        progress();
      });
      tablesDone++;
      progress();
    });

    // Every source table empty and nothing journaled: the move is done.
    control = await liveControl(o, control);
    await closeQuietly(source);
    source = await openClient(o.source, { applicationName: 'pgconvoy move' });
    const left = await journaledBatches(source, names);
    if (left.length > 0)
      throw new PgconvoyError('batches are still journaled on the source', {
        code: 'MOVE_BATCH_FAILED',
        hint: 'run switch-first move again',
        exitCode: EXIT.failed,
      });
    const foreignKeys = await restoreForeignKeys(control, state.deferredForeignKeys, { onlyParent: true });
    await writeSwitchFirstState(control, o.ledgerSchema, { ...state, phase: 'moved' });
    return {
      rowsMoved: movedTotal,
      replayed,
      tables: state.tables.map((t) => ({
        schema: t.schema,
        name: t.name,
        rows: moved.get(tableKey(t.schema, t.name)) ?? 0,
      })),
      foreignKeys,
      alreadyMoved: false,
    };
  } finally {
    await closeQuietly(source);
    await closeQuietly(control);
  }
}

/**
 * Sessions on the source database that are not pgconvoy's (the application's own writes
 * reach the source through postgres_fdw sessions named `pgconvoy fdw`).
 */
async function otherSourceSessions(src: pg.Client): Promise<string | undefined> {
  const res = await src.query<{ n: number; apps: string | null }>(
    `SELECT pg_catalog.count(*)::int AS n,
            pg_catalog.string_agg(DISTINCT COALESCE(NULLIF(a.application_name, ''), '(no name)'), ', ') AS apps
     FROM pg_catalog.pg_stat_activity a
     WHERE a.datname = pg_catalog.current_database() AND a.backend_type = 'client backend'
       AND a.pid <> pg_catalog.pg_backend_pid() AND a.application_name NOT LIKE 'pgconvoy%'`,
  );
  const row = res.rows[0];
  return row && row.n > 0 ? `${row.n} other session(s) (${row.apps ?? ''}) are connected` : undefined;
}

function unknownJournalTable(schema: string, name: string): PgconvoyError {
  return new PgconvoyError(
    `the source's journal holds rows of ${displayName(schema, name)}, which this migration does not move`,
    {
      code: 'LEDGER_DAMAGED',
      hint: 'the journal or the ledger was changed by hand: compare them, then run move again',
      exitCode: EXIT.failed,
    },
  );
}

/**
 * Moves batches of one table until its source table is empty. A transient failure (a lost
 * session, a lock wait that timed out) closes both sessions, waits, reconnects, replays the
 * table's journal and continues; DEFAULTS.jobRetries failures in a row stop it.
 */
async function drainTable(
  o: MoveOptions,
  ctx: BatchContext,
  table: MovedTable,
  onRows: (rows: number) => void,
): Promise<void> {
  let pair: { src: pg.Client; tgt: pg.Client } | undefined;
  let failures = 0;
  let cursor: BlockCursor | undefined;
  try {
    for (;;) {
      if (o.signal?.aborted)
        throw new PgconvoyError('interrupted', {
          code: 'INTERRUPTED',
          exitCode: EXIT.interrupted,
          hint: 'run switch-first move again to continue',
        });
      try {
        if (!pair) {
          pair = await sessionPair(o, `${table.schema}.${table.name}`);
          for (const batch of await journaledBatches(pair.src, ctx.names, table))
            if ((await replayBatch(pair.src, pair.tgt, ctx, table, batch)) === 'replayed')
              onRows(batch.rows.length);
        }
        if (!table.key && !cursor) {
          const shape = await sourceTableShape(pair.src, table);
          if (shape.empty) return;
          const perBlock =
            table.bytes > 0 && table.estimatedRows > 0
              ? table.estimatedRows / Math.max(1, table.bytes / 8192)
              : 50;
          cursor = { block: 0, blocks: Math.max(1, Math.floor(o.batchRows / Math.max(1, perBlock))) };
        }
        const result = await moveBatch(pair.src, pair.tgt, ctx, table, cursor);
        failures = 0;
        if (result.rows > 0) onRows(result.rows);
        if (cursor) {
          cursor.block += cursor.blocks;
          if (result.rows === 0) {
            const shape = await sourceTableShape(pair.src, table);
            if (shape.empty) return;
            if (cursor.block >= shape.blocks) cursor.block = 0;
          }
        } else if (result.rows === 0) {
          return;
        }
      } catch (err) {
        failures++;
        if (!isTransient(err) || failures >= DEFAULTS.switchFirstRetries) throw err;
        o.log(
          `${displayName(table.schema, table.name)}: ${err instanceof Error ? err.message : String(err)}; retrying (${failures}/${DEFAULTS.switchFirstRetries - 1})`,
        );
        await closePair(pair);
        pair = undefined;
        await sleep(backoffMs(failures), o.signal);
      }
    }
  } finally {
    await closePair(pair);
  }
}
