/**
 * The relay's main loop: one frame at a time from the replication stream, one method per
 * protocol message kind, with the group (the open target transaction) and the positions
 * it has confirmed. `runRelay` (run-relay.ts) opens the sessions around it; see its header
 * for the exactly-once rules this follows.
 */
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { sleep } from '../util/wait.js';
import type { ApplySession } from './apply-session.js';
import { formatLsn } from './lsn.js';
import { decodePgoutput, streamedXid, type PgoutputMessage } from './pgoutput-decoder.js';
import type { ReplicationFrame, ReplicationStream } from './replication-stream.js';
import type { StreamSpill } from './stream-spill.js';

type Change = Exclude<
  PgoutputMessage,
  { tag: 'begin' | 'commit' | 'origin' | 'stream-start' | 'stream-stop' | 'stream-commit' | 'stream-abort' }
>;
type Message<T extends PgoutputMessage['tag']> = Extract<PgoutputMessage, { tag: T }>;
type Keepalive = Extract<ReplicationFrame, { kind: 'keepalive' }>;

export interface RelayProgressEvent {
  type: 'progress';
  appliedLsn: string;
  /** Source WAL the server had sent past what the target committed. */
  lagBytes: number;
  /** Age of the oldest source commit not yet applied (0 when caught up). */
  lagSeconds: number;
  changesPerSecond: number;
  changes: number;
  transactions: number;
}

export type RelayEvent = RelayProgressEvent | { type: 'info' | 'warning'; message: string };

/** Microseconds since 2000-01-01 (pgoutput's timestamps) → Unix milliseconds. */
const commitMs = (t: bigint) => Number(t / 1000n) + 946_684_800_000;

/** A group open between transactions commits when no frame arrives for this long. */
const IDLE_COMMIT_MS = 5;

export interface RelayLoopOptions {
  maxGroupChanges: number;
  maxGroupMs: number;
  onEvent: (e: RelayEvent) => void;
}

export class RelayLoop {
  /** What the target has committed: the only position ever reported as flushed. */
  confirmed: bigint;
  private received: bigint;
  private lastIdleWrite = 0;
  totalChanges = 0;
  totalTransactions = 0;
  /** The open non-streamed transaction: skip it (already applied), and its end. */
  private txn: { skip: boolean; commitTime: bigint } | undefined;
  private streamXid: number | undefined;
  /** End LSN of the last source transaction in the open group. */
  private groupEnd = 0n;
  private oldestPendingCommit: number | undefined;
  private stopping = false;
  private readonly frames: AsyncIterator<ReplicationFrame>;

  constructor(
    private readonly s: ReplicationStream,
    private readonly a: ApplySession,
    private readonly sp: StreamSpill,
    private readonly resumeLsn: bigint,
    private readonly o: RelayLoopOptions,
  ) {
    this.confirmed = resumeLsn;
    this.received = resumeLsn;
    this.frames = s.frames[Symbol.asyncIterator]();
  }

  // write = flush: a position reported as written but not flushed would stop the server's
  // keepalives, which are how an idle relay learns that it has caught up.
  private reportStatus(reply = false): void {
    this.s.sendStatus(this.confirmed, this.confirmed, reply);
  }

  /** Standby status updates and progress events, on timers the caller clears. */
  startTimers(timers: NodeJS.Timeout[], statusIntervalMs: number, progressMs: number): void {
    timers.push(setInterval(() => this.reportStatus(), statusIntervalMs));
    let lastChanges = 0;
    let lastAt = Date.now();
    timers.push(
      setInterval(() => {
        const now = Date.now();
        const done = this.a.changes - lastChanges;
        lastChanges = this.a.changes;
        const oldest = this.oldestPendingCommit;
        this.o.onEvent({
          type: 'progress',
          appliedLsn: formatLsn(this.confirmed),
          lagBytes: Number(this.received > this.confirmed ? this.received - this.confirmed : 0n),
          lagSeconds: oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000),
          changesPerSecond: done / Math.max(0.001, (now - lastAt) / 1000),
          changes: this.totalChanges,
          transactions: this.totalTransactions,
        });
        lastAt = now;
      }, progressMs),
    );
  }

  /** Ends the loop once the current group is committed. */
  watch(signal: AbortSignal | undefined): void {
    const onAbort = () => {
      this.stopping = true;
      // Idle between transactions: nothing to finish, end the stream now.
      if (this.betweenTransactions()) void this.s.close();
    };
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
  }

  /** No source transaction open and no group open on the target. */
  private betweenTransactions(): boolean {
    return !this.txn && this.streamXid === undefined && !this.a.inGroup;
  }

  /** Until the stream ends or a stop is asked for; then commits the open group. */
  async run(): Promise<void> {
    try {
      for (let r = await this.nextFrame(); !r.done; r = await this.nextFrame()) {
        const frame = r.value;
        if (frame.kind === 'keepalive') await this.onKeepalive(frame);
        else await this.onMessage(frame.message);
        if (this.stopping && this.betweenTransactions()) break;
      }
    } catch (err) {
      if (!this.stopping) throw err;
    }
    await this.commitGroup();
  }

  /** The next frame; a group left open between transactions commits once the stream is quiet for a moment. */
  private async nextFrame(): Promise<IteratorResult<ReplicationFrame>> {
    const next = this.frames.next();
    // A frame already received needs no timer (one per source transaction costs CPU).
    if (this.a.inGroup && !this.txn && this.streamXid === undefined && this.s.buffered === 0) {
      const quiet = Symbol('quiet');
      const first = await Promise.race([next, sleep(IDLE_COMMIT_MS).then(() => quiet)]);
      if (first !== quiet) return first as IteratorResult<ReplicationFrame>;
      await this.commitGroup();
    }
    return next;
  }

  private async onKeepalive(frame: Keepalive): Promise<void> {
    if (frame.walEnd > this.received) this.received = frame.walEnd;
    // Nothing in flight anywhere: everything before the server's position is on the target.
    if (this.betweenTransactions() && this.sp.open === 0 && frame.walEnd > this.confirmed) {
      if (Date.now() - this.lastIdleWrite >= 200 || frame.replyRequested) {
        await this.a.advanceIdle(frame.walEnd);
        this.confirmed = frame.walEnd;
        this.lastIdleWrite = Date.now();
      }
    }
    if (frame.replyRequested) this.reportStatus();
  }

  private async onMessage(buf: Buffer): Promise<void> {
    if (this.streamXid !== undefined && buf[0] !== 0x45 /* E: Stream Stop */) {
      await this.sp.append(this.streamXid, streamedXid(buf), buf);
      return;
    }
    const m = decodePgoutput(buf, false);
    switch (m.tag) {
      case 'begin':
        this.txn = { skip: m.finalLsn < this.resumeLsn, commitTime: m.commitTime };
        if (!this.txn.skip) this.a.beginTransaction(m.finalLsn);
        return;
      case 'commit':
        if (this.txn && !this.txn.skip) await this.endTransaction(m.endLsn, m.commitTime);
        this.txn = undefined;
        return;
      case 'origin':
        return;
      case 'stream-start':
        return this.onStreamStart(m);
      case 'stream-stop':
        this.streamXid = undefined;
        return;
      case 'stream-abort':
        return this.sp.abort(m.xid, m.subxid);
      case 'stream-commit':
        return this.onStreamCommit(m);
      case 'relation':
        // Always, even in a skipped transaction: the server sends each relation once.
        this.a.relation(m);
        return;
      default:
        return this.onChange(m);
    }
  }

  private async onStreamStart(m: Message<'stream-start'>): Promise<void> {
    this.streamXid = m.xid;
    if (m.firstSegment) await this.sp.begin(m.xid);
    else if (!this.sp.has(m.xid))
      throw new PgconvoyError(`the source streamed a later part of transaction ${m.xid} without its first`, {
        code: 'RELAY_PROTOCOL',
        exitCode: EXIT.source,
        hint: 'run pgconvoy replicate again: the slot streams the transaction again from its start',
      });
  }

  private async onStreamCommit(m: Message<'stream-commit'>): Promise<void> {
    if (m.commitLsn >= this.resumeLsn) {
      this.a.beginTransaction(m.commitLsn);
      for await (const part of this.sp.replay(m.xid))
        await this.applyChange(decodePgoutput(part, true) as Change);
      await this.endTransaction(m.endLsn, m.commitTime);
    } else {
      // Applied before the restart; its Relation messages still stand for later transactions.
      for await (const part of this.sp.replay(m.xid))
        if (part[0] === 0x52 /* R */) await this.applyChange(decodePgoutput(part, true) as Change);
    }
    await this.sp.discard(m.xid);
  }

  /** A change of a non-streamed transaction. */
  private async onChange(m: Change): Promise<void> {
    if (!this.txn)
      throw new PgconvoyError(`the source sent a ${m.tag} outside a transaction`, {
        code: 'RELAY_PROTOCOL',
        exitCode: EXIT.source,
        hint: 'run pgconvoy replicate again; if it recurs, report it with the source version',
      });
    if (!this.txn.skip) await this.applyChange(m);
  }

  private async applyChange(m: Change): Promise<void> {
    const a = this.a;
    switch (m.tag) {
      case 'relation':
        return a.relation(m);
      case 'insert':
        return a.insert(m.oid, m.row);
      case 'update':
        return a.update(m.oid, m.old?.values, m.row);
      case 'delete':
        return a.delete(m.oid, m.old.values);
      case 'truncate':
        return a.truncate(m.oids, m.restartIdentity);
      case 'type':
      case 'message':
        return; // types are the target's own (values go through its input functions); no messages are asked for
    }
  }

  /** After a source transaction's changes: commit the group when it is big or old (or idle: see nextFrame). */
  private async endTransaction(endLsn: bigint, commitTime: bigint): Promise<void> {
    await this.a.endTransaction();
    this.groupEnd = endLsn;
    this.oldestPendingCommit ??= commitMs(commitTime);
    const a = this.a;
    if (
      this.stopping ||
      a.groupChanges >= this.o.maxGroupChanges ||
      Date.now() - a.groupStartedAt >= this.o.maxGroupMs
    )
      await this.commitGroup();
  }

  private async commitGroup(): Promise<void> {
    const a = this.a;
    if (!a.inGroup) return;
    const changes = a.groupChanges;
    const transactions = a.groupTransactions;
    await a.commitGroup(this.groupEnd);
    this.totalChanges += changes;
    this.totalTransactions += transactions;
    this.confirmed = this.groupEnd;
    this.oldestPendingCommit = undefined;
    this.reportStatus();
  }
}
