/**
 * The slot's change stream: START_REPLICATION … LOGICAL with pgoutput over a replication
 * connection, in CopyBoth mode (pg-copy-streams' `both`). The server sends XLogData ('w')
 * and keepalives ('k'); the relay answers with standby status updates ('r') whose flush
 * position is what the TARGET has committed, never what was merely received: the source
 * may then recycle that WAL, and the slot restarts from it.
 *
 * Protocol version 1 on PostgreSQL 13 (a transaction arrives only once it committed),
 * 2 with `streaming 'on'` on 14+ (large transactions arrive while still in progress).
 * https://www.postgresql.org/docs/current/protocol-replication.html, checked on 13, 15 and 17.
 */
import type { Duplex, DuplexOptions } from 'node:stream';
import type { Submittable } from 'pg';
import * as copyStreams from 'pg-copy-streams';
import type { ConnectionSpec } from '../connect/resolve.js';
import { openReplicationClient, type ReplicationClient } from '../replicate/replication-client.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';
import { formatLsn } from './lsn.js';

type CopyBothQueryStream = Duplex & Submittable;

/** pg-copy-streams 7 has `both` (CopyBoth); its type definitions do not say so. */
interface CopyBothModule {
  both(text: string, options: DuplexOptions & { alignOnCopyDataFrame: boolean }): CopyBothQueryStream;
}
const both = (text: string, options: DuplexOptions & { alignOnCopyDataFrame: boolean }) =>
  (copyStreams as unknown as CopyBothModule).both(text, options);

/** PostgreSQL's epoch (2000-01-01) in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

export type ReplicationFrame =
  | { kind: 'data'; walStart: bigint; walEnd: bigint; message: Buffer }
  | { kind: 'keepalive'; walEnd: bigint; replyRequested: boolean };

export interface ReplicationStream {
  /** Server major version (13, 14, …). */
  major: number;
  streaming: boolean;
  frames: AsyncIterable<ReplicationFrame>;
  /** Frames received and not yet read (the next one needs no wait when this is above 0). */
  readonly buffered: number;
  /** Standby status update: `write` as received, `flush` (and apply) as committed on the target. */
  sendStatus(write: bigint, flush: bigint, replyRequested?: boolean): void;
  /** The walsender's process id on the source. */
  pid: number | null;
  close(): Promise<void>;
}

export async function startReplication(
  spec: ConnectionSpec,
  slot: string,
  publication: string,
  from: bigint,
): Promise<ReplicationStream> {
  const client: ReplicationClient = await openReplicationClient(spec, 'pgconvoy relay');
  try {
    const v = await client.query<{ server_version_num: string }>('SHOW server_version_num');
    const major = Math.floor(Number(v.rows[0]?.server_version_num ?? 0) / 10000);
    const streaming = major >= 14;
    const options = [
      `proto_version ${quoteLiteral(streaming ? '2' : '1')}`,
      `publication_names ${quoteLiteral(quoteIdent(publication))}`,
      ...(streaming ? [`streaming 'on'`] : []),
    ];
    const copy: CopyBothQueryStream = client.query(
      both(`START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(from)} (${options.join(', ')})`, {
        // One CopyData message per chunk: XLogData has no length of its own, so chunks must not merge.
        alignOnCopyDataFrame: true,
        readableObjectMode: true,
      }),
    );
    let closed = false;
    return {
      major,
      streaming,
      pid: client.processID,
      frames: frames(copy),
      get buffered() {
        return copy.readableLength;
      },
      sendStatus(write, flush, replyRequested = false) {
        if (closed) return;
        const b = Buffer.alloc(34);
        b.write('r', 0, 'latin1');
        b.writeBigUInt64BE(write, 1);
        b.writeBigUInt64BE(flush, 9);
        b.writeBigUInt64BE(flush, 17);
        b.writeBigUInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25);
        b.writeUInt8(replyRequested ? 1 : 0, 33);
        copy.write(b);
      },
      async close() {
        if (closed) return;
        closed = true;
        copy.destroy();
        await client.end().catch(() => undefined);
      },
    };
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

async function* frames(copy: CopyBothQueryStream): AsyncGenerator<ReplicationFrame> {
  for await (const chunk of copy) {
    const buf = chunk as Buffer;
    const kind = String.fromCharCode(buf[0] ?? 0);
    if (kind === 'w') {
      yield {
        kind: 'data',
        walStart: buf.readBigUInt64BE(1),
        walEnd: buf.readBigUInt64BE(9),
        message: buf.subarray(25),
      };
    } else if (kind === 'k') {
      yield { kind: 'keepalive', walEnd: buf.readBigUInt64BE(1), replyRequested: buf.readUInt8(17) === 1 };
    }
  }
}
