/**
 * One batch of `switch-first move`: rows leave the source table and arrive in the target
 * table exactly once, whatever dies when.
 *
 * pgconvoy drives both servers itself, each in its own transaction (not through
 * postgres_fdw, whose remote commit precedes the local one with nothing to repair the gap):
 *
 *   T (target)  BEGIN; LOCK the target table (ACCESS EXCLUSIVE, lock_timeout)
 *   S (source)  BEGIN; DELETE the batch's rows … RETURNING them into the journal; COMMIT
 *   T           INSERT the rows; INSERT the batch's ledger mark; COMMIT
 *   S           DELETE the batch from the journal
 *
 * - dies before S commits: both roll back; the rows are still on the source.
 * - dies between S's and T's commits: the rows are in the journal (committed, durable:
 *   synchronous_commit is on for S). The next `move` replays the journal: the batch has no
 *   ledger mark, so its rows are inserted with the mark (replayBatch).
 * - dies after T's commit: the ledger mark says the rows are in; the replay only drops the
 *   journal entry.
 * So a row is never in two visible places, and never nowhere durable. While a batch is
 * journaled but not replayed (only after a crash in that window) its rows are not visible to
 * the application: `status` shows them, and the next `move` replays them first.
 *
 * The lock: the application reads and writes the target table (parent of the foreign table),
 * so it waits for T; T waits for the application's open transactions on the table, whose
 * postgres_fdw transactions on the source have committed before their local ones. So a batch
 * never races an application write, and a statement never sees a batch half moved (neither
 * twice nor missing). It is held for one batch (milliseconds) and asked for with a short
 * lock_timeout, so an application transaction held open long delays the move, not the
 * application; the batch is retried.
 *
 * Both sessions run with session_replication_role = replica: moving a row fires no trigger and
 * no foreign key action (prepare refused a source role that cannot set it where it matters).
 *
 * Batches: tables with a key take the `batchRows` smallest keys left (the deleted ones are
 * gone, so no cursor is needed and rows the application updates are never skipped); tables
 * without one take a range of heap blocks (`ctid`, a TID range scan on 14+), and start again
 * at block 0 after the last one until the table is empty (an application UPDATE may put a
 * row version behind the cursor).
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../connect/session.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import { forgetBatch, journalTable, type JournaledBatch } from './journal.js';
import type { SwitchFirstNames } from './names.js';
import type { MovedTable } from './state.js';

export interface BatchContext {
  ledgerSchema: string;
  names: SwitchFirstNames;
  batchRows: number;
  lockTimeoutMs: number;
}

/** Where a table without a key continues: the next heap block, and blocks per batch. */
export interface BlockCursor {
  block: number;
  blocks: number;
}

export interface BatchResult {
  rows: number;
  /** For tables without a key: the range held nothing (the cursor moved on). */
  rangeOnly: boolean;
}

function insertSql(table: MovedTable): string {
  const target = qualifiedName(table.schema, table.name);
  const cols = table.columns.map(quoteIdent);
  return `INSERT INTO ${target} (${cols.join(', ')}) OVERRIDING SYSTEM VALUE
SELECT ${cols.map((c) => `(x.r).${c}`).join(', ')}
FROM (SELECT u::${target} AS r FROM pg_catalog.unnest($1::text[]) AS u OFFSET 0) AS x`;
}

function markSql(ledgerSchema: string): string {
  return `INSERT INTO ${qualifiedName(ledgerSchema, 'switch_first_batches')} (batch_id, table_schema, table_name, rows, replayed)
VALUES ($1, $2, $3, $4, $5)`;
}

async function lockTarget(tgt: pg.Client, table: MovedTable, lockTimeoutMs: number): Promise<void> {
  // synchronous_commit on: the journal entry is dropped once this commit is acknowledged, so
  // the commit must survive a crash of the target right after it.
  await tgt.query(
    `SELECT pg_catalog.set_config('lock_timeout', $1, true), pg_catalog.set_config('synchronous_commit', 'on', true)`,
    [`${lockTimeoutMs}ms`],
  );
  await tgt.query(`LOCK TABLE ONLY ${qualifiedName(table.schema, table.name)} IN ACCESS EXCLUSIVE MODE`);
}

/** Deletes one batch on the source and journals it, in one committed source transaction. */
async function takeFromSource(
  src: pg.Client,
  ctx: BatchContext,
  table: MovedTable,
  batchId: string,
  cursor: BlockCursor | undefined,
): Promise<string[]> {
  const source = qualifiedName(table.schema, table.name);
  const pick = table.key
    ? `SELECT s.ctid FROM ONLY ${source} AS s ORDER BY ${table.key.map((k) => `s.${quoteIdent(k)}`).join(', ')} LIMIT $4 FOR UPDATE`
    : `SELECT s.ctid FROM ONLY ${source} AS s WHERE s.ctid >= pg_catalog.format('(%s,0)', $4::int8)::tid AND s.ctid < pg_catalog.format('(%s,0)', $5::int8)::tid FOR UPDATE`;
  const values: unknown[] = [batchId, table.schema, table.name];
  if (table.key) values.push(ctx.batchRows);
  else values.push(cursor!.block, cursor!.block + cursor!.blocks);
  return inTransaction(src, async () => {
    await src.query(
      `SELECT pg_catalog.set_config('synchronous_commit', 'on', true), pg_catalog.set_config('lock_timeout', $1, true)`,
      [`${ctx.lockTimeoutMs * 5}ms`],
    );
    const res = await src.query<{ row: string }>(
      `WITH moved AS (
  DELETE FROM ONLY ${source} AS r WHERE r.ctid = ANY (ARRAY(${pick}))
  RETURNING r::text AS row
)
INSERT INTO ${journalTable(ctx.names)} (batch_id, table_schema, table_name, row)
SELECT $1, $2, $3, moved.row FROM moved
RETURNING row`,
      values,
    );
    return res.rows.map((r) => r.row);
  });
}

/** Moves one batch of `table`. */
export async function moveBatch(
  src: pg.Client,
  tgt: pg.Client,
  ctx: BatchContext,
  table: MovedTable,
  cursor: BlockCursor | undefined,
): Promise<BatchResult> {
  const batchId = randomUUID();
  let rows: string[] = [];
  try {
    await inTransaction(tgt, async () => {
      await lockTarget(tgt, table, ctx.lockTimeoutMs);
      rows = await takeFromSource(src, ctx, table, batchId, cursor);
      if (rows.length > 0) {
        // From here until COMMIT the rows are only in the source's journal.
        await tgt.query(insertSql(table), [rows]);
        await tgt.query(markSql(ctx.ledgerSchema), [batchId, table.schema, table.name, rows.length, false]);
      }
    });
  } catch (err) {
    if (rows.length > 0) throw batchFailure(table, rows.length, err);
    throw err;
  }
  if (rows.length > 0) await forgetBatch(src, ctx.names, batchId);
  return { rows: rows.length, rangeOnly: rows.length === 0 && !table.key };
}

function batchFailure(table: MovedTable, rows: number, err: unknown): PgconvoyError {
  const e = new PgconvoyError(
    `a batch of ${rows} rows of ${displayName(table.schema, table.name)} was taken from the source but could not be written to the target: ${err instanceof Error ? err.message : String(err)}`,
    {
      code: 'MOVE_BATCH_FAILED',
      exitCode: EXIT.target,
      hint: "the rows are kept in the source's journal (not visible to the application until replayed): fix the cause and run switch-first move again, which replays the journal first",
      cause: err,
    },
  );
  return e;
}

/**
 * Brings one journaled batch to the target unless its ledger mark says it is there, then
 * drops it from the journal. Idempotent.
 */
export async function replayBatch(
  src: pg.Client,
  tgt: pg.Client,
  ctx: BatchContext,
  table: MovedTable,
  batch: JournaledBatch,
): Promise<'replayed' | 'was in'> {
  let outcome: 'replayed' | 'was in' = 'was in';
  try {
    await inTransaction(tgt, async () => {
      await lockTarget(tgt, table, ctx.lockTimeoutMs);
      const mark = await tgt.query(
        `SELECT 1 FROM ${qualifiedName(ctx.ledgerSchema, 'switch_first_batches')} WHERE batch_id = $1`,
        [batch.batchId],
      );
      if (mark.rows.length === 0) {
        await tgt.query(insertSql(table), [batch.rows]);
        await tgt.query(markSql(ctx.ledgerSchema), [
          batch.batchId,
          table.schema,
          table.name,
          batch.rows.length,
          true,
        ]);
        outcome = 'replayed';
      }
    });
  } catch (err) {
    throw batchFailure(table, batch.rows.length, err);
  }
  await forgetBatch(src, ctx.names, batch.batchId);
  return outcome;
}

/** Heap blocks of the source table now, and whether it still holds a row. */
export async function sourceTableShape(
  src: pg.Client,
  table: MovedTable,
): Promise<{ blocks: number; empty: boolean }> {
  const source = qualifiedName(table.schema, table.name);
  const res = await src.query<{ blocks: string; empty: boolean }>(
    `SELECT (pg_catalog.pg_relation_size($1::pg_catalog.regclass) / pg_catalog.current_setting('block_size')::int8)::text AS blocks,
            NOT EXISTS (SELECT 1 FROM ONLY ${source}) AS empty`,
    [source],
  );
  const row = res.rows[0]!;
  return { blocks: Number(row.blocks), empty: row.empty };
}
