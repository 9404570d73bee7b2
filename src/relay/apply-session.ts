/**
 * The relay's session on the target: source transactions applied in commit order, many of
 * them in one target transaction (a group), which also moves the relay's position in the
 * ledger. Statements are pipelined (node-postgres `pipeline`): sent without waiting for
 * the answer to the one before, each prepared once per session; a run of inserts into one
 * table goes as one `INSERT … SELECT … FROM ROWS FROM (unnest($1::text[]), …)`. Answers are checked as
 * they arrive: an UPDATE or DELETE that found no row is a divergence, and the group rolls
 * back before anything of it commits.
 *
 * The session runs with session_replication_role = replica (triggers and foreign keys do
 * not fire, as for PostgreSQL's own apply worker) when the role may set it, and with
 * synchronous_commit = local: a group the relay reports as flushed to the source must be on
 * the target's disk, or a crash of the target would lose changes the slot no longer holds.
 *
 * Checked with PostgreSQL 13, 15 and 17 as the target.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, serverErrorFields } from '../errors.js';
import { SQLSTATE } from '../sqlstate.js';
import { formatLsn } from './lsn.js';
import type { PgoutputMessage, TupleValue } from './pgoutput-decoder.js';
import { advanceSql } from './relay-progress.js';
import {
  deleteStatement,
  describeKey,
  isDifference,
  planRelation,
  updateStatement,
  type PlannedStatement,
  type RelationPlan,
} from './target-relation.js';

type Relation = Extract<PgoutputMessage, { tag: 'relation' }>;

/** Statements in flight before the session waits for the oldest answers. */
const MAX_IN_FLIGHT = 2000;
/** Row text in flight before the session waits for every answer (memory stays bounded). */
const MAX_IN_FLIGHT_BYTES = 32 << 20;
/** Rows (or text bytes) in one multi-row INSERT. */
const INSERT_BATCH_ROWS = 1000;
const INSERT_BATCH_BYTES = 4 << 20;

interface InsertRun {
  plan: RelationPlan;
  columns: (string | null)[][];
  rows: number;
  bytes: number;
}

export class ApplySession {
  /** The last Relation message per source relation id, and its plan once a change needed it. */
  private readonly relations = new Map<number, Relation>();
  private readonly plans = new Map<number, RelationPlan>();
  private readonly statementNames = new Map<string, string>();
  /** The target socket, corked while a turn of the event loop queues statements. */
  private readonly socket: { cork(): void; uncork(): void } | undefined;
  private corked = false;
  private inflight: Promise<void>[] = [];
  private inflightBytes = 0;
  private failure: Error | undefined;
  private run: InsertRun | undefined;
  private groupOpen = false;
  /** The commit LSN of the source transaction being applied, for messages. */
  private commitLsn = 0n;
  groupChanges = 0;
  groupTransactions = 0;
  groupStartedAt = 0;
  /** Rows written in this session, committed or not. */
  changes = 0;
  readonly replicaRole: boolean;

  private constructor(
    private readonly client: pg.Client,
    private readonly ledgerSchema: string,
    replicaRole: boolean,
    private readonly leftOut: (schema: string, table: string, column: string) => boolean,
  ) {
    this.replicaRole = replicaRole;
    this.socket = (client as unknown as { connection?: { stream?: { cork(): void; uncork(): void } } })
      .connection?.stream;
  }

  /** `leftOut`: source columns the migration does not move (`--exclude-column`). */
  static async open(
    spec: ConnectionSpec,
    ledgerSchema: string,
    leftOut: (schema: string, table: string, column: string) => boolean = () => false,
  ): Promise<ApplySession> {
    const client = await openClient(spec, { applicationName: 'pgconvoy relay apply', pipeline: true });
    try {
      await client.query("SELECT pg_catalog.set_config('synchronous_commit', 'local', false)");
      let replicaRole = true;
      try {
        await client.query("SELECT pg_catalog.set_config('session_replication_role', 'replica', false)");
      } catch (err) {
        if (serverErrorFields(err)?.code !== SQLSTATE.insufficientPrivilege) throw err;
        replicaRole = false;
      }
      return new ApplySession(client, ledgerSchema, replicaRole, leftOut);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  get inGroup(): boolean {
    return this.groupOpen;
  }

  /** A Relation message: remembered; the target is read when a change first needs it. */
  relation(msg: Relation): void {
    this.relations.set(msg.oid, msg);
    this.plans.delete(msg.oid);
  }

  /** Opens the group's target transaction if needed; `commitLsn` names the source transaction. */
  beginTransaction(commitLsn: bigint): void {
    this.commitLsn = commitLsn;
    if (this.groupOpen) return;
    this.groupOpen = true;
    this.groupStartedAt = Date.now();
    this.groupChanges = 0;
    this.groupTransactions = 0;
    this.send({ text: 'BEGIN', values: [] }, false);
  }

  async endTransaction(): Promise<void> {
    this.flushInserts();
    this.groupTransactions++;
    await this.throttle();
  }

  async insert(oid: number, row: TupleValue[]): Promise<void> {
    const plan = await this.plan(oid);
    if (this.run && this.run.plan !== plan) this.flushInserts();
    const run = (this.run ??= { plan, columns: plan.insertIndexes.map(() => []), rows: 0, bytes: 0 });
    plan.insertIndexes.forEach((from, i) => {
      const v = row[from];
      const text = v?.kind === 'text' ? v.text : v?.kind === 'null' ? null : undefined;
      if (text === undefined)
        throw new Error(`pgoutput: a ${v?.kind ?? 'missing'} value in an insert into ${plan.qualified}`);
      run.columns[i]?.push(text);
      run.bytes += text?.length ?? 0;
    });
    run.rows++;
    if (run.rows >= INSERT_BATCH_ROWS || run.bytes >= INSERT_BATCH_BYTES) this.flushInserts();
    await this.throttle();
  }

  async update(oid: number, old: TupleValue[] | undefined, row: TupleValue[]): Promise<void> {
    const plan = await this.plan(oid);
    this.flushInserts();
    this.sendChecked(updateStatement(plan, old, row), plan, old ?? row, 'UPDATE');
    await this.throttle();
  }

  async delete(oid: number, old: TupleValue[]): Promise<void> {
    const plan = await this.plan(oid);
    this.flushInserts();
    this.sendChecked(deleteStatement(plan, old), plan, old, 'DELETE');
    await this.throttle();
  }

  /** TRUNCATE of the tables the source truncated together (those it cascaded to are among them when published). */
  async truncate(oids: number[], restartIdentity: boolean): Promise<void> {
    const plans: RelationPlan[] = [];
    for (const oid of oids) plans.push(await this.plan(oid));
    this.flushInserts();
    this.send(
      {
        text: `TRUNCATE ${plans.map((p) => p.qualified).join(', ')}${restartIdentity ? ' RESTART IDENTITY' : ''}`,
        values: [],
      },
      false,
    );
    this.changes++;
    this.groupChanges++;
  }

  /**
   * Commits the group with the ledger's position moved to `lsn` (the end of its last source
   * transaction). Every answer is checked before COMMIT is sent.
   */
  async commitGroup(lsn: bigint): Promise<void> {
    if (!this.groupOpen) return;
    this.flushInserts();
    const ledger = this.client.query(advanceSql(this.ledgerSchema), [
      formatLsn(lsn),
      this.groupChanges,
      this.groupTransactions,
    ]);
    this.track(
      ledger.then((res) => {
        if (res.rowCount !== 1) throw anotherRelay(lsn);
      }),
    );
    await this.drain();
    const res = await this.client.query('COMMIT');
    // COMMIT of a transaction that failed answers ROLLBACK, without an error.
    if (res.command !== 'COMMIT') throw new Error(`the target answered ${res.command} to COMMIT`);
    this.groupOpen = false;
  }

  /** Moves the ledger's position outside a group (the source was idle up to `lsn`). */
  async advanceIdle(lsn: bigint): Promise<void> {
    if (this.groupOpen) throw new Error('advanceIdle inside a group');
    await this.client.query(advanceSql(this.ledgerSchema), [formatLsn(lsn), 0, 0]);
  }

  async rollback(): Promise<void> {
    this.run = undefined;
    await Promise.allSettled(this.inflight);
    this.inflight = [];
    if (this.groupOpen) await this.client.query('ROLLBACK').catch(() => undefined);
    this.groupOpen = false;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  private async plan(oid: number): Promise<RelationPlan> {
    const known = this.plans.get(oid);
    if (known) return known;
    const rel = this.relations.get(oid);
    if (!rel) throw new Error(`pgoutput: a change for relation ${oid} before its Relation message`);
    // Answers to earlier statements first: a failed one would make this read fail instead.
    await this.drain();
    const plan = await planRelation(this.client, rel, (column) => this.leftOut(rel.schema, rel.name, column));
    if (isDifference(plan)) {
      throw new PgconvoyError(
        `the source's table ${plan.table} differs from the target's at ${formatLsn(this.commitLsn)}: ${plan.problems.join('; ')}`,
        {
          code: 'RELAY_SCHEMA_CHANGED',
          exitCode: EXIT.blocked,
          hint: `apply the same change to the target table (ALTER TABLE ${plan.table} …), then run pgconvoy replicate again: it resumes from the last applied transaction, before this one`,
          details: { table: plan.table, problems: plan.problems, lsn: formatLsn(this.commitLsn) },
        },
      );
    }
    this.plans.set(oid, plan);
    return plan;
  }

  private flushInserts(): void {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    this.send({ text: run.plan.insertSql, values: run.columns as unknown as (string | null)[] }, true);
    this.inflightBytes += run.bytes;
    this.changes += run.rows;
    this.groupChanges += run.rows;
  }

  private sendChecked(stmt: PlannedStatement, plan: RelationPlan, old: TupleValue[], verb: string): void {
    const lsn = this.commitLsn;
    this.changes++;
    this.groupChanges++;
    this.track(
      this.query(stmt, true).then((res) => {
        if (res.rowCount !== 1)
          throw new PgconvoyError(
            `divergence: the source's ${verb} of ${plan.qualified} (${describeKey(plan, old)}) in the transaction committed at ${formatLsn(lsn)} matches no row on the target`,
            {
              code: 'RELAY_DIVERGED',
              exitCode: EXIT.mismatch,
              hint: 'the target no longer holds what the source changed (written on the target, or a row lost before the relay started); nothing of this group was committed. Compare with pgconvoy verify, repair the row on the target, then run pgconvoy replicate again',
              details: { table: plan.qualified, key: describeKey(plan, old), lsn: formatLsn(lsn) },
            },
          );
      }),
    );
  }

  private send(stmt: PlannedStatement, prepared: boolean): void {
    this.track(this.query(stmt, prepared).then(() => undefined));
  }

  private query(stmt: PlannedStatement, prepared: boolean): Promise<pg.QueryResult> {
    this.cork();
    if (!prepared) return this.client.query(stmt.text, stmt.values);
    let name = this.statementNames.get(stmt.text);
    if (!name) {
      name = `pgconvoy_relay_${this.statementNames.size + 1}`;
      this.statementNames.set(stmt.text, name);
    }
    return this.client.query({ name, text: stmt.text, values: stmt.values });
  }

  /**
   * node-postgres writes each protocol message of each statement on its own (Bind, Execute,
   * Sync: a system call apiece); corked until the event loop's next turn, the statements queued
   * meanwhile leave in one write. Answers are awaited only on later turns, so nothing waits
   * on a corked statement.
   */
  private cork(): void {
    if (this.corked || !this.socket) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(() => {
      this.corked = false;
      this.socket?.uncork();
    });
  }

  private track(p: Promise<void>): void {
    this.inflight.push(
      p.catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      }),
    );
  }

  /** Waits for the oldest answers when too many are in flight (memory stays bounded). */
  private async throttle(): Promise<void> {
    this.raise();
    if (this.inflightBytes >= MAX_IN_FLIGHT_BYTES) return this.drain();
    if (this.inflight.length < MAX_IN_FLIGHT) return;
    await Promise.all(this.inflight.splice(0, MAX_IN_FLIGHT / 2));
    this.raise();
  }

  private async drain(): Promise<void> {
    this.inflightBytes = 0;
    await Promise.all(this.inflight.splice(0));
    this.raise();
  }

  /** The first statement that failed (or diverged) stops the group. */
  private raise(): void {
    const failure = this.failure;
    if (failure) throw failure;
  }
}

function anotherRelay(lsn: bigint): PgconvoyError {
  return new PgconvoyError(
    `the ledger's relay position is already past ${formatLsn(lsn)}: another relay applies into this target`,
    {
      code: 'RELAY_RUNNING',
      exitCode: EXIT.target,
      hint: 'run one relay per target; stop the other one (pgconvoy status shows where it runs)',
    },
  );
}
