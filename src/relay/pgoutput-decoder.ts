/**
 * Decodes the messages of PostgreSQL's logical replication protocol as the `pgoutput` plugin
 * sends them inside XLogData: Begin, Commit, Origin, Relation, Type, Insert, Update,
 * Delete, Truncate, Message, and (protocol 2, PostgreSQL 14+) Stream Start, Stop, Commit
 * and Abort. Inside a streamed block every change message carries the (sub)transaction id
 * first. Column values stay as the server sent them: text (`t`), binary (`b`), NULL (`n`),
 * or unchanged TOAST (`u`: the value was not sent because it did not change).
 *
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html,
 * checked against PostgreSQL 13, 15 and 17.
 */

export type TupleValue =
  | { kind: 'null' }
  | { kind: 'unchanged' }
  | { kind: 'text'; text: string }
  | { kind: 'binary'; bytes: Buffer };

export interface RelationColumn {
  name: string;
  /** Part of the replica identity. */
  key: boolean;
  typeOid: number;
  typeMod: number;
}

export type PgoutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTime: bigint; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  | { tag: 'origin'; lsn: bigint; name: string }
  | {
      tag: 'relation';
      xid: number | undefined;
      oid: number;
      schema: string;
      name: string;
      /** d (default: primary key), n (nothing), f (full), i (index). */
      replicaIdentity: string;
      columns: RelationColumn[];
    }
  | { tag: 'type'; xid: number | undefined; oid: number; schema: string; name: string }
  | { tag: 'insert'; xid: number | undefined; oid: number; row: TupleValue[] }
  | {
      tag: 'update';
      xid: number | undefined;
      oid: number;
      /** The old key (K) or the whole old row (O, REPLICA IDENTITY FULL); absent when the key did not change. */
      old: { kind: 'key' | 'row'; values: TupleValue[] } | undefined;
      row: TupleValue[];
    }
  | {
      tag: 'delete';
      xid: number | undefined;
      oid: number;
      old: { kind: 'key' | 'row'; values: TupleValue[] };
    }
  | { tag: 'truncate'; xid: number | undefined; cascade: boolean; restartIdentity: boolean; oids: number[] }
  | {
      tag: 'message';
      xid: number | undefined;
      transactional: boolean;
      lsn: bigint;
      prefix: string;
      content: Buffer;
    }
  | { tag: 'stream-start'; xid: number; firstSegment: boolean }
  | { tag: 'stream-stop' }
  | {
      tag: 'stream-commit';
      xid: number;
      flags: number;
      commitLsn: bigint;
      endLsn: bigint;
      commitTime: bigint;
    }
  | { tag: 'stream-abort'; xid: number; subxid: number };

/** A cursor over one message. */
class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  byte(): number {
    return this.buf.readUInt8(this.at++);
  }
  int16(): number {
    const v = this.buf.readInt16BE(this.at);
    this.at += 2;
    return v;
  }
  int32(): number {
    const v = this.buf.readInt32BE(this.at);
    this.at += 4;
    return v;
  }
  uint32(): number {
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  int64(): bigint {
    const v = this.buf.readBigUInt64BE(this.at);
    this.at += 8;
    return v;
  }
  string(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new Error('pgoutput: unterminated string');
    const s = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    const b = this.buf.subarray(this.at, this.at + n);
    if (b.length !== n) throw new Error('pgoutput: message ends early');
    this.at += n;
    return b;
  }
  rest(): Buffer {
    const b = this.buf.subarray(this.at);
    this.at = this.buf.length;
    return b;
  }
}

function tuple(r: Reader): TupleValue[] {
  const n = r.int16();
  const values: TupleValue[] = [];
  for (let i = 0; i < n; i++) {
    const kind = String.fromCharCode(r.byte());
    if (kind === 'n') values.push({ kind: 'null' });
    else if (kind === 'u') values.push({ kind: 'unchanged' });
    else if (kind === 't') values.push({ kind: 'text', text: r.bytes(r.int32()).toString('utf8') });
    else if (kind === 'b') values.push({ kind: 'binary', bytes: Buffer.from(r.bytes(r.int32())) });
    else throw new Error(`pgoutput: unknown column kind "${kind}"`);
  }
  return values;
}

function oldTuple(r: Reader, marker: string): { kind: 'key' | 'row'; values: TupleValue[] } {
  if (marker === 'K') return { kind: 'key', values: tuple(r) };
  if (marker === 'O') return { kind: 'row', values: tuple(r) };
  throw new Error(`pgoutput: expected K or O, got "${marker}"`);
}

/**
 * Decodes one pgoutput message. `streamed`: the message is inside a Stream Start/Stop block,
 * so change messages begin with a transaction id.
 */
export function decodePgoutput(buf: Buffer, streamed: boolean): PgoutputMessage {
  const r = new Reader(buf);
  const tag = String.fromCharCode(r.byte());
  const xid = () => (streamed ? r.uint32() : undefined);
  switch (tag) {
    case 'B':
      return { tag: 'begin', finalLsn: r.int64(), commitTime: r.int64(), xid: r.uint32() };
    case 'C':
      return {
        tag: 'commit',
        flags: r.byte(),
        commitLsn: r.int64(),
        endLsn: r.int64(),
        commitTime: r.int64(),
      };
    case 'O':
      return { tag: 'origin', lsn: r.int64(), name: r.string() };
    case 'R': {
      const x = xid();
      const oid = r.uint32();
      const schema = r.string();
      const name = r.string();
      const replicaIdentity = String.fromCharCode(r.byte());
      const n = r.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = r.byte();
        columns.push({ key: (flags & 1) === 1, name: r.string(), typeOid: r.uint32(), typeMod: r.int32() });
      }
      return { tag: 'relation', xid: x, oid, schema, name, replicaIdentity, columns };
    }
    case 'Y': {
      const x = xid();
      return { tag: 'type', xid: x, oid: r.uint32(), schema: r.string(), name: r.string() };
    }
    case 'I': {
      const x = xid();
      const oid = r.uint32();
      const marker = String.fromCharCode(r.byte());
      if (marker !== 'N') throw new Error(`pgoutput: insert without a new row (marker "${marker}")`);
      return { tag: 'insert', xid: x, oid, row: tuple(r) };
    }
    case 'U': {
      const x = xid();
      const oid = r.uint32();
      let marker = String.fromCharCode(r.byte());
      let old: { kind: 'key' | 'row'; values: TupleValue[] } | undefined;
      if (marker === 'K' || marker === 'O') {
        old = oldTuple(r, marker);
        marker = String.fromCharCode(r.byte());
      }
      if (marker !== 'N') throw new Error(`pgoutput: update without a new row (marker "${marker}")`);
      return { tag: 'update', xid: x, oid, old, row: tuple(r) };
    }
    case 'D': {
      const x = xid();
      const oid = r.uint32();
      return { tag: 'delete', xid: x, oid, old: oldTuple(r, String.fromCharCode(r.byte())) };
    }
    case 'T': {
      const x = xid();
      const n = r.int32();
      const options = r.byte();
      const oids: number[] = [];
      for (let i = 0; i < n; i++) oids.push(r.uint32());
      return {
        tag: 'truncate',
        xid: x,
        cascade: (options & 1) !== 0,
        restartIdentity: (options & 2) !== 0,
        oids,
      };
    }
    case 'M': {
      const x = xid();
      const flags = r.byte();
      const lsn = r.int64();
      const prefix = r.string();
      const content = Buffer.from(r.bytes(r.int32()));
      return { tag: 'message', xid: x, transactional: (flags & 1) !== 0, lsn, prefix, content };
    }
    case 'S':
      return { tag: 'stream-start', xid: r.uint32(), firstSegment: r.byte() === 1 };
    case 'E':
      return { tag: 'stream-stop' };
    case 'c':
      return {
        tag: 'stream-commit',
        xid: r.uint32(),
        flags: r.byte(),
        commitLsn: r.int64(),
        endLsn: r.int64(),
        commitTime: r.int64(),
      };
    case 'A':
      // Protocol 4 adds the abort's LSN and time after these; they are not needed here.
      return { tag: 'stream-abort', xid: r.uint32(), subxid: r.uint32() };
    default:
      throw new Error(`pgoutput: unknown message type "${tag}" (0x${buf[0]?.toString(16) ?? '?'})`);
  }
}

/** The (sub)transaction id a message inside a streamed block belongs to, read without decoding it. */
export function streamedXid(buf: Buffer): number | undefined {
  const tag = String.fromCharCode(buf[0] ?? 0);
  return 'RYIUDTM'.includes(tag) && buf.length >= 5 ? buf.readUInt32BE(1) : undefined;
}
