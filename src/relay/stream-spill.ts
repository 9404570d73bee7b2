/**
 * Transactions the source streams while they are still in progress (protocol 2,
 * PostgreSQL 14+: Stream Start … Stream Stop blocks, then Stream Commit or Abort) are kept
 * in a private temporary file per transaction, never in memory: a transaction of gigabytes
 * costs the relay a fixed buffer. The file is replayed on Stream Commit and deleted on
 * Stream Abort. A subtransaction that aborts is cut off the end of its file: its changes,
 * and those of the subtransactions it contained, follow its first change (as PostgreSQL's
 * apply worker does in its own spill files). A Relation message cut off that way is sent
 * again: pgoutput forgets which relations it described to a streamed transaction at every
 * Stream Abort, its subtransactions' included (cleanup_rel_sync_cache); the savepoint case
 * in test/relay.test.ts changes a table first inside the savepoint that is rolled back.
 *
 * Frames: Int32 length, then the pgoutput message as received.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const BUFFER_BYTES = 256 << 10;

interface SpillFile {
  file: string;
  handle: FileHandle;
  /** Bytes on disk. */
  written: number;
  pending: Buffer[];
  pendingBytes: number;
  /** Where each subtransaction's first change starts. */
  subxacts: Map<number, number>;
}

export class StreamSpill {
  private readonly files = new Map<number, SpillFile>();

  private constructor(private readonly dir: string) {}

  /** A directory of its own, mode 0700, under the OS temporary directory. */
  static async create(): Promise<StreamSpill> {
    return new StreamSpill(await mkdtemp(path.join(os.tmpdir(), 'pgconvoy-relay-')));
  }

  /** Transactions streamed but neither committed nor aborted yet. */
  get open(): number {
    return this.files.size;
  }

  /** First segment of transaction `xid`: a new, empty file (a leftover one is replaced). */
  async begin(xid: number): Promise<void> {
    await this.discard(xid);
    const file = path.join(this.dir, `${xid}.spill`);
    const handle = await open(file, 'w+', 0o600);
    this.files.set(xid, {
      file,
      handle,
      written: 0,
      pending: [],
      pendingBytes: 0,
      subxacts: new Map(),
    });
  }

  has(xid: number): boolean {
    return this.files.has(xid);
  }

  async append(xid: number, subxid: number | undefined, message: Buffer): Promise<void> {
    const f = this.files.get(xid);
    if (!f)
      throw new Error(`pgoutput: a streamed change for transaction ${xid}, whose first segment was not seen`);
    if (subxid !== undefined && subxid !== xid && !f.subxacts.has(subxid))
      f.subxacts.set(subxid, f.written + f.pendingBytes);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(message.length);
    f.pending.push(len, Buffer.from(message));
    f.pendingBytes += 4 + message.length;
    if (f.pendingBytes >= BUFFER_BYTES) await flush(f);
  }

  /** Stream Abort: the whole transaction (`subxid` = `xid`) or one subtransaction. */
  async abort(xid: number, subxid: number): Promise<void> {
    const f = this.files.get(xid);
    if (!f) return;
    if (subxid === xid) return this.discard(xid);
    const at = f.subxacts.get(subxid);
    if (at === undefined) return; // it changed nothing we were sent
    await flush(f);
    await f.handle.truncate(at);
    f.written = at;
    for (const [sub, offset] of f.subxacts) if (offset >= at) f.subxacts.delete(sub);
  }

  /** The messages of transaction `xid`, in order, read back with a bounded buffer. */
  async *replay(xid: number): AsyncGenerator<Buffer> {
    const f = this.files.get(xid);
    if (!f) throw new Error(`pgoutput: Stream Commit of transaction ${xid}, which was never streamed`);
    await flush(f);
    if (f.written === 0) return;
    let carry: Buffer = Buffer.alloc(0);
    for await (const chunk of createReadStream(f.file, {
      start: 0,
      end: f.written - 1,
      highWaterMark: BUFFER_BYTES,
    })) {
      carry = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
      let at = 0;
      while (carry.length - at >= 4) {
        const len = carry.readUInt32BE(at);
        if (carry.length - at - 4 < len) break;
        yield carry.subarray(at + 4, at + 4 + len);
        at += 4 + len;
      }
      carry = carry.subarray(at);
    }
    if (carry.length) throw new Error(`spill file of transaction ${xid} ends in the middle of a message`);
  }

  async discard(xid: number): Promise<void> {
    const f = this.files.get(xid);
    if (!f) return;
    this.files.delete(xid);
    await f.handle.close().catch(() => undefined);
    await rm(f.file, { force: true });
  }

  /** Deletes every file and the directory. */
  async close(): Promise<void> {
    for (const xid of [...this.files.keys()]) await this.discard(xid);
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function flush(f: SpillFile): Promise<void> {
  if (f.pendingBytes === 0) return;
  const data = Buffer.concat(f.pending);
  f.pending = [];
  f.pendingBytes = 0;
  await f.handle.write(data, 0, data.length, f.written);
  f.written += data.length;
}
