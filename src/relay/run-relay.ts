/**
 * `pgconvoy replicate` (and the end of `start --via relay`): the relay. pgconvoy, where it
 * reaches both servers, streams the slot's changes and applies them to the target itself,
 * so the target needs no path to the source and no right to subscribe.
 *
 *   ledger position → START_REPLICATION from it → per source transaction, in commit order:
 *   changes into the group's target transaction (or, streamed in progress, into a spill
 *   file until Stream Commit) → group COMMIT with the ledger's new position → standby
 *   status update with that position as flushed
 *
 * Exactly once: the position moves in the same target transaction as the rows; a restart
 * asks the slot for the changes after it and skips any transaction whose commit is not
 * after it (the slot's confirmed position may trail the ledger's by one group). A group
 * ends at a transaction boundary when the stream has nothing more waiting, or when it
 * reaches its size or age bound; so the relay commits often when it keeps up and in big
 * groups when it falls behind.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import os from 'node:os';
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { migrationScope, requireOnlineState } from '../replicate/online-state.js';
import { excludedKey } from '../copy/table-columns.js';
import { ApplySession } from './apply-session.js';
import { formatLsn, parseLsn } from './lsn.js';
import { decodePgoutput, streamedXid, type PgoutputMessage } from './pgoutput-decoder.js';
import { markRelayRunning, markRelayStopped, readRelayProgress } from './relay-progress.js';
import { startReplication, type ReplicationFrame, type ReplicationStream } from './replication-stream.js';
import { sleep } from '../util/wait.js';
import { StreamSpill } from './stream-spill.js';

export interface RelayOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  /** Ends the relay once the current group is committed. */
  signal?: AbortSignal;
  /** A group commits at this many changes … */
  maxGroupChanges?: number;
  /** … or when it is this old (ms), at the next transaction boundary. */
  maxGroupMs?: number;
  /** Standby status updates at least this often (ms); well under wal_sender_timeout. */
  statusIntervalMs?: number;
  /** Progress every this many ms. */
  progressMs?: number;
  onEvent: (e: RelayEvent) => void;
}

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

export interface RelayResult {
  /** Why it stopped: asked to, or cutover finished and dropped the slot. */
  reason: 'stopped' | 'cutover-done';
  appliedLsn: string;
  changes: number;
  transactions: number;
  seconds: number;
}

type Change = Exclude<
  PgoutputMessage,
  { tag: 'begin' | 'commit' | 'origin' | 'stream-start' | 'stream-stop' | 'stream-commit' | 'stream-abort' }
>;

/** Microseconds since 2000-01-01 (pgoutput's timestamps) → Unix milliseconds. */
const commitMs = (t: bigint) => Number(t / 1000n) + 946_684_800_000;

/** A group open between transactions commits when no frame arrives for this long. */
const IDLE_COMMIT_MS = 5;

export async function runRelay(o: RelayOptions): Promise<RelayResult> {
  const started = Date.now();
  const maxGroupChanges = o.maxGroupChanges ?? 20_000;
  const maxGroupMs = o.maxGroupMs ?? 500;
  const tgt = await openClient(o.target, { applicationName: 'pgconvoy relay' });
  let apply: ApplySession | undefined;
  let stream: ReplicationStream | undefined;
  let spill: StreamSpill | undefined;
  const timers: NodeJS.Timeout[] = [];
  let stopReason = 'stopped';
  try {
    const state = await requireOnlineState(tgt, o.ledgerSchema, o.target);
    if (state.via !== 'relay')
      throw new PgconvoyError(
        'this online migration replicates through a subscription on the target, not a relay',
        {
          code: 'RELAY_WRONG_MODE',
          exitCode: EXIT.usage,
          hint: 'pgconvoy status shows how it replicates; the relay serves migrations begun with pgconvoy start --via relay',
        },
      );
    if (state.phase === 'done' || state.phase === 'rolled-back')
      return {
        reason: 'cutover-done',
        appliedLsn: state.cutoverLsn ?? '0/0',
        changes: 0,
        transactions: 0,
        seconds: 0,
      };
    if (state.phase === 'copying')
      throw new PgconvoyError('the initial copy of this online migration has not finished', {
        code: 'ONLINE_PHASE',
        hint: 'pgconvoy start --via relay runs the relay itself once its copy is done; if that start stopped, run pgconvoy teardown, then start again',
      });
    const progress = await readRelayProgress(tgt, o.ledgerSchema);
    if (!progress)
      throw new PgconvoyError('the ledger holds no relay position for this migration', {
        code: 'LEDGER_DAMAGED',
        exitCode: EXIT.target,
        hint: 'the position is written when start --via relay finishes its copy; without it the relay cannot know what the target holds: run pgconvoy teardown, then start again',
      });
    const resumeLsn = parseLsn(progress.appliedLsn);
    // Columns start left out of the copy (--exclude-column) are left out of the changes too.
    const excluded = migrationScope(state, o.ledgerSchema).excludeColumns ?? new Set<string>();
    apply = await ApplySession.open(o.target, o.ledgerSchema, (schema, name, column) =>
      excluded.has(excludedKey({ schema, name }, column)),
    );
    if (!apply.replicaRole)
      o.onEvent({
        type: 'warning',
        message:
          'the target role may not set session_replication_role: triggers and foreign-key checks fire while the relay applies',
      });
    spill = await StreamSpill.create();
    stream = await startReplication(o.source, state.names.slot, state.names.publication, resumeLsn);
    await markRelayRunning(tgt, o.ledgerSchema, os.hostname(), process.pid);
    o.onEvent({
      type: 'info',
      message: `relay streaming slot "${state.names.slot}" from ${progress.appliedLsn} (source ${stream.major}, protocol ${stream.streaming ? '2, large transactions streamed' : '1'})`,
    });

    const s = stream;
    const a = apply;
    const sp = spill;
    /** What the target has committed: the only position ever reported as flushed. */
    let confirmed = resumeLsn;
    let received = resumeLsn;
    let lastIdleWrite = 0;
    let totalChanges = 0;
    let totalTransactions = 0;
    /** The open non-streamed transaction: skip it (already applied), and its end. */
    let txn: { skip: boolean; commitTime: bigint } | undefined;
    let streamXid: number | undefined;
    /** End LSN of the last source transaction in the open group. */
    let groupEnd = 0n;
    let oldestPendingCommit: number | undefined;
    let stopping = false;

    // write = flush: a position reported as written but not flushed would stop the server's
    // keepalives, which are how an idle relay learns that it has caught up.
    const reportStatus = (reply = false) => s.sendStatus(confirmed, confirmed, reply);
    timers.push(setInterval(() => reportStatus(), o.statusIntervalMs ?? 10_000));
    let lastChanges = 0;
    let lastAt = Date.now();
    timers.push(
      setInterval(() => {
        const now = Date.now();
        const done = a.changes - lastChanges;
        lastChanges = a.changes;
        o.onEvent({
          type: 'progress',
          appliedLsn: formatLsn(confirmed),
          lagBytes: Number(received > confirmed ? received - confirmed : 0n),
          lagSeconds: oldestPendingCommit === undefined ? 0 : Math.max(0, (now - oldestPendingCommit) / 1000),
          changesPerSecond: done / Math.max(0.001, (now - lastAt) / 1000),
          changes: totalChanges,
          transactions: totalTransactions,
        });
        lastAt = now;
      }, o.progressMs ?? 1000),
    );

    const commitGroup = async () => {
      if (!a.inGroup) return;
      const changes = a.groupChanges;
      const transactions = a.groupTransactions;
      await a.commitGroup(groupEnd);
      totalChanges += changes;
      totalTransactions += transactions;
      confirmed = groupEnd;
      oldestPendingCommit = undefined;
      reportStatus();
    };
    const applyChange = async (m: Change) => {
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
    };
    /** After a source transaction's changes: commit the group when it is big or old (or idle: see the loop). */
    const endTransaction = async (endLsn: bigint, commitTime: bigint) => {
      await a.endTransaction();
      groupEnd = endLsn;
      oldestPendingCommit ??= commitMs(commitTime);
      if (stopping || a.groupChanges >= maxGroupChanges || Date.now() - a.groupStartedAt >= maxGroupMs)
        await commitGroup();
    };

    const onAbort = () => {
      stopping = true;
      // Idle between transactions: nothing to finish, end the stream now.
      if (!txn && streamXid === undefined && !a.inGroup) void s.close();
    };
    if (o.signal?.aborted) onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });

    const frames = s.frames[Symbol.asyncIterator]();
    /** The next frame; a group left open between transactions commits once the stream is quiet for a moment. */
    const nextFrame = async () => {
      const next = frames.next();
      // A frame already received needs no timer (one per source transaction costs CPU).
      if (a.inGroup && !txn && streamXid === undefined && s.buffered === 0) {
        const quiet = Symbol('quiet');
        const first = await Promise.race([next, sleep(IDLE_COMMIT_MS).then(() => quiet)]);
        if (first !== quiet) return first as IteratorResult<ReplicationFrame>;
        await commitGroup();
      }
      return next;
    };
    try {
      for (let r = await nextFrame(); !r.done; r = await nextFrame()) {
        const frame = r.value;
        if (frame.kind === 'keepalive') {
          if (frame.walEnd > received) received = frame.walEnd;
          // Nothing in flight anywhere: everything before the server's position is on the target.
          if (!txn && streamXid === undefined && sp.open === 0 && !a.inGroup && frame.walEnd > confirmed) {
            if (Date.now() - lastIdleWrite >= 200 || frame.replyRequested) {
              await a.advanceIdle(frame.walEnd);
              confirmed = frame.walEnd;
              lastIdleWrite = Date.now();
            }
          }
          if (frame.replyRequested) reportStatus();
          if (stopping && !txn && streamXid === undefined && !a.inGroup) break;
          continue;
        }
        const buf = frame.message;
        if (streamXid !== undefined && buf[0] !== 0x45 /* E: Stream Stop */) {
          await sp.append(streamXid, streamedXid(buf), buf);
          continue;
        }
        const m = decodePgoutput(buf, false);
        switch (m.tag) {
          case 'begin':
            txn = { skip: m.finalLsn < resumeLsn, commitTime: m.commitTime };
            if (!txn.skip) a.beginTransaction(m.finalLsn);
            break;
          case 'commit':
            if (txn && !txn.skip) await endTransaction(m.endLsn, m.commitTime);
            txn = undefined;
            break;
          case 'origin':
            break;
          case 'stream-start':
            streamXid = m.xid;
            if (m.firstSegment) await sp.begin(m.xid);
            else if (!sp.has(m.xid))
              throw new PgconvoyError(
                `the source streamed a later part of transaction ${m.xid} without its first`,
                {
                  code: 'RELAY_PROTOCOL',
                  exitCode: EXIT.source,
                  hint: 'run pgconvoy replicate again: the slot streams the transaction again from its start',
                },
              );
            break;
          case 'stream-stop':
            streamXid = undefined;
            break;
          case 'stream-abort':
            await sp.abort(m.xid, m.subxid);
            break;
          case 'stream-commit':
            if (m.commitLsn >= resumeLsn) {
              a.beginTransaction(m.commitLsn);
              for await (const part of sp.replay(m.xid))
                await applyChange(decodePgoutput(part, true) as Change);
              await endTransaction(m.endLsn, m.commitTime);
            } else {
              // Applied before the restart; its Relation messages still stand for later transactions.
              for await (const part of sp.replay(m.xid))
                if (part[0] === 0x52 /* R */) await applyChange(decodePgoutput(part, true) as Change);
            }
            await sp.discard(m.xid);
            break;
          case 'relation':
            // Always, even in a skipped transaction: the server sends each relation once.
            a.relation(m);
            break;
          default:
            if (!txn)
              throw new PgconvoyError(`the source sent a ${m.tag} outside a transaction`, {
                code: 'RELAY_PROTOCOL',
                exitCode: EXIT.source,
                hint: 'run pgconvoy replicate again; if it recurs, report it with the source version',
              });
            if (!txn.skip) await applyChange(m);
        }
        if (stopping && !txn && streamXid === undefined && !a.inGroup) break;
      }
    } catch (err) {
      if (!stopping) throw err;
    }
    await commitGroup();
    return {
      reason: 'stopped',
      appliedLsn: formatLsn(confirmed),
      changes: totalChanges,
      transactions: totalTransactions,
      seconds: (Date.now() - started) / 1000,
    };
  } catch (err) {
    await apply?.rollback();
    const ended = await endedByCutover(tgt, o.ledgerSchema, err);
    if (ended) {
      stopReason = 'cutover finished: the slot was dropped';
      const p = await readRelayProgress(tgt, o.ledgerSchema).catch(() => undefined);
      return {
        reason: 'cutover-done',
        appliedLsn: p?.appliedLsn ?? '?',
        changes: 0,
        transactions: 0,
        seconds: (Date.now() - started) / 1000,
      };
    }
    stopReason = errorMessage(err);
    throw err;
  } finally {
    for (const t of timers) clearInterval(t);
    await stream?.close();
    await apply?.close();
    await spill?.close();
    await markRelayStopped(tgt, o.ledgerSchema, stopReason).catch(() => undefined);
    await tgt.end().catch(() => undefined);
  }
}

/** The walsender was ended because cutover finished (phase done, slot dropped). */
async function endedByCutover(tgt: pg.Client, schema: string, err: unknown): Promise<boolean> {
  const code = serverErrorFields(err)?.code;
  if (code !== undefined && !code.startsWith('57') && !code.startsWith('08') && code !== '42704')
    return false;
  try {
    const state = await requireOnlineState(tgt, schema, { side: 'target' } as ConnectionSpec);
    return (
      state.phase === 'done' ||
      state.phase === 'rolled-back' ||
      typeof state.detail.forwardDroppedAt === 'string'
    );
  } catch {
    return false;
  }
}
