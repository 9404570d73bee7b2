/**
 * Builds each table's indexes and constraints (its 'table'-phase post-data items) as soon as
 * that table's rows are all in, while other tables are still copying, with at most
 * `--index-jobs` builds at once. Each table's items and its ledger mark commit together.
 *
 * A build costs a pg_restore and a psql run besides its SQL, which for a table of a few rows
 * is nearly all of it: small tables waiting together are built in one transaction (their
 * marks with them, so still exactly once), as many as fit the target's lock budget.
 *
 * Foreign keys between two plain tables (PostDataItem.references) are added here too, each
 * as soon as both of its tables' rows and indexes (the referenced key among them) are in,
 * while other tables still copy: their validation is a join of two tables, the largest
 * part of what is left after the last row. Each has its own mark (foreignKeyStepName); the
 * final post-data leaves them out (earlyForeignKey), and finish() adds those still missing.
 *
 * How much runs at once follows the copy: while copy workers run, `concurrency` builds; once
 * the copy is over (copyDone), up to `tailConcurrency`, on the cores the copy workers gave
 * back. Each build sets maintenance_work_mem, so up to `tailConcurrency` times that much
 * memory is in use on the target at the end. Builds keep the server's
 * max_parallel_maintenance_workers even during the copy: the build of the biggest table
 * usually starts then and runs on into the tail, where a build without workers would leave
 * cores idle (measured: its build 36 s instead of 22 s on the 1 GB bench).
 *
 * A table whose indexes are in is ANALYZEd here too (analyzeEarly), after every build and
 * foreign key waiting, so the statistics are not one more step after the last index. A table
 * that an early foreign key still needs is analyzed only after that key: ANALYZE's lock
 * (SHARE UPDATE EXCLUSIVE) would hold the key's (SHARE ROW EXCLUSIVE) back. An ANALYZE that
 * fails is only left to the final ANALYZE phase, which analyzes every table not in analyzed().
 */
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import type { Steps } from '../ledger/steps.js';
import type { TableRef } from '../plan/chunk.js';
import type { PgTools } from '../schema/pg-tools.js';
import type { PostDataItem, SchemaDump } from '../schema/types.js';
import { displayName, qualifiedName } from '../util/sql.js';
import { tableKey } from '../copy/table-columns.js';
import { applySqlAtomically } from './apply-sql.js';
import { isLostConnection } from '../sqlstate.js';
import { schemaSql } from '../schema/index.js';
import { backoffMs, retry } from '../util/wait.js';
import { unitLocks } from '../schema/batches.js';

export const indexStepName = (t: TableRef): string => `indexes:${tableKey(t)}`;
/** The mark of one foreign key added by the builder (its name is unique on its table). */
export const foreignKeyStepName = (item: PostDataItem): string =>
  `foreign-key:${JSON.stringify([item.table?.schema, item.table?.name, item.objectName ?? item.text])}`;
/** A foreign key the builder adds (not the final post-data). */
export const earlyForeignKey = (item: PostDataItem): boolean =>
  item.phase === 'final' &&
  item.kind === 'fk-constraint' &&
  item.table !== undefined &&
  item.references !== undefined;

/** Up to this size a table's index builds take less time than starting them: they are grouped. */
export const SMALL_TABLE_BYTES = 8 * 1024 ** 2;
/** At most this many tables per grouped build, so one failure or retry costs little. */
const MAX_GROUP = 200;

export interface IndexBuilderOptions {
  tools: PgTools;
  dump: SchemaDump;
  target: ConnectionSpec;
  steps: Steps;
  /** Builds at once while the copy runs. */
  concurrency: number;
  /** Builds at once after copyDone() (the copy workers' share of the target is free then). */
  tailConcurrency: number;
  /** Tables to ANALYZE as soon as their indexes are in; the others wait for the final phase. */
  analyzeEarly?: (table: TableRef) => boolean;
  /** Steps already done (resume): their tables are skipped. */
  done: Set<string>;
  noOwner: boolean;
  noPrivileges: boolean;
  maintenanceWorkMem: string;
  /** Attempts of a build cut short by a lost connection. */
  maxAttempts: number;
  /** A table's size on the source; tables up to SMALL_TABLE_BYTES are built together. */
  tableBytes: (table: TableRef) => number;
  /** Locks one build may take on the target (lockBudget). */
  lockBudget: number;
  /** One call per build: the tables it built together and how many items they had. */
  onBuilt: (tables: TableRef[], items: number, seconds: number) => void;
  /** One call per transaction of foreign keys added early. */
  onForeignKeys?: (count: number, seconds: number) => void;
  signal: AbortSignal | undefined;
}

export class IndexBuilder {
  private readonly byTable = new Map<string, PostDataItem[]>();
  private readonly queued = new Set<string>();
  private readonly waiting: TableRef[] = [];
  /** Tables whose rows and indexes are in (this run or an earlier one). */
  private readonly inTables = new Set<string>();
  /** Foreign keys not added yet, by each of their two tables. */
  private readonly keysByTable = new Map<string, PostDataItem[]>();
  private readonly keysQueued = new Set<PostDataItem>();
  private readonly keysWaiting: PostDataItem[] = [];
  private readonly analyzeWaiting: TableRef[] = [];
  /** Tables to analyze once their foreign keys still to add are in. */
  private readonly analyzeAfterKeys = new Map<string, TableRef>();
  private readonly keysAdded = new Set<PostDataItem>();
  private readonly analyzedTables = new Set<string>();
  private copying = true;
  private running = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private firstError: Error | undefined;

  constructor(private readonly o: IndexBuilderOptions) {
    for (const item of o.dump.postData) {
      if (item.phase !== 'table' || !item.table) continue;
      const key = tableKey(item.table);
      const list = this.byTable.get(key) ?? [];
      list.push(item);
      this.byTable.set(key, list);
    }
    for (const item of o.dump.postData) {
      if (!earlyForeignKey(item) || o.done.has(foreignKeyStepName(item))) continue;
      for (const t of [item.table!, item.references!]) {
        const list = this.keysByTable.get(tableKey(t)) ?? [];
        if (!list.includes(item)) list.push(item);
        this.keysByTable.set(tableKey(t), list);
      }
    }
  }

  /** Tables that have 'table'-phase items. */
  tables(): TableRef[] {
    return [...this.byTable.values()].map((items) => items[0]!.table!);
  }

  /** Queue a table whose rows are all in. Safe to call more than once per table. */
  tableReady(table: TableRef): void {
    const key = tableKey(table);
    if (this.queued.has(key)) return;
    if (!this.byTable.has(key) || this.o.done.has(indexStepName(table))) {
      this.tableIn(table);
      return;
    }
    this.queued.add(key);
    this.waiting.push(table);
    this.pump();
  }

  /** The copy workers are done: more builds at once, each with parallel maintenance workers. */
  copyDone(): void {
    this.copying = false;
    this.pump();
  }

  /** Tables ANALYZEd by the builder (analyzeEarly): the final phase leaves them out. */
  analyzed(): ReadonlySet<string> {
    return this.analyzedTables;
  }

  /** Every table counts as in now, and every foreign key left is added (after the last copy job). */
  async finish(): Promise<void> {
    this.copying = false;
    for (const table of this.tables()) this.tableReady(table);
    await this.drain();
    for (const list of this.keysByTable.values()) for (const item of list) this.queueKey(item);
    this.pump();
    await this.drain();
  }

  /** A table's rows and indexes are in: its foreign keys whose other table is in too can be added. */
  private tableIn(table: TableRef): void {
    const key = tableKey(table);
    if (this.inTables.has(key)) return;
    this.inTables.add(key);
    if (this.o.analyzeEarly?.(table)) this.analyzeAfterKeys.set(key, table);
    this.analyzeWhenKeysIn(key);
    for (const item of this.keysByTable.get(key) ?? []) {
      if (this.inTables.has(tableKey(item.table!)) && this.inTables.has(tableKey(item.references!)))
        this.queueKey(item);
    }
    this.pump();
  }

  /** Queues the table's ANALYZE when it waits for one and no foreign key of it is left to add. */
  private analyzeWhenKeysIn(key: string): void {
    const table = this.analyzeAfterKeys.get(key);
    if (!table || (this.keysByTable.get(key) ?? []).some((k) => !this.keysAdded.has(k))) return;
    this.analyzeAfterKeys.delete(key);
    this.analyzeWaiting.push(table);
  }

  private queueKey(item: PostDataItem): void {
    if (this.keysQueued.has(item)) return;
    this.keysQueued.add(item);
    this.keysWaiting.push(item);
  }

  private pump(): void {
    const limit = this.copying ? this.o.concurrency : Math.max(this.o.concurrency, this.o.tailConcurrency);
    while (
      this.running < limit &&
      this.waiting.length + this.keysWaiting.length + this.analyzeWaiting.length > 0 &&
      !this.o.signal?.aborted
    ) {
      // Indexes first: a table's indexes let its own foreign keys (and others' into it) follow;
      // statistics last, nothing waits for them.
      const work =
        this.waiting.length > 0
          ? this.build(this.takeGroup())
          : this.keysWaiting.length > 0
            ? this.addKeys(this.takeKeys())
            : this.analyze(this.analyzeWaiting.shift()!);
      this.running++;
      const p = work
        .catch((err: unknown) => {
          this.firstError ??= err instanceof Error ? err : new Error(String(err));
        })
        .finally(() => {
          this.running--;
          this.inFlight.delete(p);
          this.pump();
        });
      this.inFlight.add(p);
    }
  }

  /** The next waiting table, with the small tables waiting behind it when it is small itself. */
  private takeGroup(): TableRef[] {
    const first = this.waiting.shift()!;
    const group = [first];
    if (this.o.tableBytes(first) > SMALL_TABLE_BYTES) return group;
    let locks = this.locks(first);
    for (let i = 0; i < this.waiting.length && group.length < MAX_GROUP;) {
      const t = this.waiting[i]!;
      const more = this.locks(t);
      if (this.o.tableBytes(t) > SMALL_TABLE_BYTES || locks + more > this.o.lockBudget) {
        i++;
        continue;
      }
      group.push(t);
      locks += more;
      this.waiting.splice(i, 1);
    }
    return group;
  }

  /** Waiting foreign keys, as many as fit the lock budget (each locks its two tables). */
  private takeKeys(): PostDataItem[] {
    const keys: PostDataItem[] = [];
    let locks = 0;
    while (this.keysWaiting.length > 0 && keys.length < MAX_GROUP) {
      const more = unitLocks({ entries: [this.keysWaiting[0]!], marks: [] }) + 2;
      if (keys.length > 0 && locks + more > this.o.lockBudget) break;
      keys.push(this.keysWaiting.shift()!);
      locks += more;
    }
    return keys;
  }

  private locks(table: TableRef): number {
    return unitLocks({ entries: this.byTable.get(tableKey(table)) ?? [], marks: [] });
  }

  private async build(group: TableRef[]): Promise<void> {
    if (this.firstError) return;
    const items = group.flatMap((t) => this.byTable.get(tableKey(t)) ?? []);
    const started = Date.now();
    await this.apply(
      items,
      group.map((t) =>
        this.o.steps.markDoneScript(indexStepName(t), { items: this.byTable.get(tableKey(t))?.length }),
      ),
      `the indexes and constraints of ${names(group)}`,
    );
    this.o.onBuilt(group, items.length, (Date.now() - started) / 1000);
    for (const t of group) this.tableIn(t);
  }

  private async addKeys(keys: PostDataItem[]): Promise<void> {
    if (this.firstError) return;
    const started = Date.now();
    await this.apply(
      keys,
      keys.map((k) => this.o.steps.markDoneScript(foreignKeyStepName(k))),
      `the foreign key(s) ${keys
        .slice(0, 5)
        .map((k) => k.label)
        .join(', ')}${keys.length > 5 ? ` and ${keys.length - 5} more` : ''}`,
    );
    this.o.onForeignKeys?.(keys.length, (Date.now() - started) / 1000);
    for (const k of keys) this.keysAdded.add(k);
    for (const k of keys) for (const t of [k.table!, k.references!]) this.analyzeWhenKeysIn(tableKey(t));
  }

  /** ANALYZE of one table; a failure leaves it to the final phase (see analyzed()). */
  private async analyze(table: TableRef): Promise<void> {
    if (this.firstError) return;
    const client = await openClient(this.o.target, { applicationName: 'pgconvoy analyze' }).catch(
      () => undefined,
    );
    if (!client) return;
    try {
      await client.query(`ANALYZE ${qualifiedName(table.schema, table.name)}`);
      this.analyzedTables.add(tableKey(table));
    } catch {
      // The final ANALYZE phase does it (and reports what it cannot).
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** One transaction: a build cut short by a lost connection left nothing, so it is simply run again. */
  private async apply(items: PostDataItem[], marks: string[], what: string): Promise<void> {
    const sql = await schemaSql({
      tools: this.o.tools,
      dump: this.o.dump,
      entries: items,
      noOwner: this.o.noOwner,
      noPrivileges: this.o.noPrivileges,
    });
    await retry(
      () =>
        applySqlAtomically({
          tools: this.o.tools,
          target: this.o.target,
          sql,
          ledgerSql: marks.join('\n'),
          settings: { maintenance_work_mem: this.o.maintenanceWorkMem },
          what,
          applicationName: 'pgconvoy index',
          ...(this.o.signal ? { signal: this.o.signal } : {}),
        }),
      {
        retryable: isLostConnection,
        attempts: this.o.maxAttempts,
        delayMs: (attempt) => backoffMs(attempt),
        signal: this.o.signal,
      },
    );
  }

  /** Waits for every queued build; throws the first failure. */
  async drain(): Promise<void> {
    while (
      this.inFlight.size > 0 ||
      (this.waiting.length + this.keysWaiting.length + this.analyzeWaiting.length > 0 &&
        !this.firstError &&
        !this.o.signal?.aborted)
    ) {
      if (this.inFlight.size > 0) await Promise.race(this.inFlight);
      else this.pump();
    }
    if (this.firstError) throw this.firstError;
  }
}

const names = (group: TableRef[]): string =>
  `${group
    .slice(0, 5)
    .map((t) => displayName(t.schema, t.name))
    .join(', ')}${group.length > 5 ? ` and ${group.length - 5} more table(s)` : ''}`;
