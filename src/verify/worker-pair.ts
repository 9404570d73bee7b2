/**
 * One verify worker: a session on each side, each reading in its side's snapshot. A task
 * (a chunk and its narrowing) runs in one short read-only transaction per side, and every
 * query goes to both sides at once, so each side's server does its half in parallel.
 */
import type pg from 'pg';
import type { ConnectionSpec } from '../connect/resolve.js';
import { accessDeniedError } from '../copy/read-denied.js';
import { closeQuietly } from '../connect/session.js';
import { beginTask, endTask, openVerifySession, verifyQueryError } from './session.js';

export interface SideSession {
  spec: ConnectionSpec;
  snapshot: string;
  client: pg.Client;
}

export class WorkerPair {
  /** The table the running task reads: a read refused for want of rights names it. */
  private reading: string | undefined;

  private constructor(
    readonly source: SideSession,
    readonly target: SideSession,
  ) {}

  static async open(
    label: string,
    source: { spec: ConnectionSpec; snapshot: string },
    target: { spec: ConnectionSpec; snapshot: string },
  ): Promise<WorkerPair> {
    const [s, t] = await Promise.allSettled([
      openVerifySession(source.spec, label),
      openVerifySession(target.spec, label),
    ]);
    if (s.status === 'rejected' || t.status === 'rejected') {
      if (s.status === 'fulfilled') await closeQuietly(s.value);
      if (t.status === 'fulfilled') await closeQuietly(t.value);
      throw s.status === 'rejected' ? s.reason : (t as PromiseRejectedResult).reason;
    }
    return new WorkerPair({ ...source, client: s.value }, { ...target, client: t.value });
  }

  /** Runs `task` inside one snapshot transaction per side; `what` names it in errors, `table` what it reads. */
  async task<T>(what: string, task: () => Promise<T>, table?: string): Promise<T> {
    await Promise.all(
      [this.source, this.target].map((side) =>
        beginTask(side.client, side.snapshot).catch((err: unknown) => {
          throw verifyQueryError(side.spec, what, err);
        }),
      ),
    );
    this.reading = table;
    try {
      const result = await task();
      await Promise.all([endTask(this.source.client), endTask(this.target.client)]);
      return result;
    } catch (err) {
      await Promise.all([
        this.source.client.query('ROLLBACK').catch(() => undefined),
        this.target.client.query('ROLLBACK').catch(() => undefined),
      ]);
      throw err;
    } finally {
      this.reading = undefined;
    }
  }

  /** The same query on both sides, concurrently: [source rows, target rows]. */
  async both<R extends pg.QueryResultRow>(
    what: string,
    sql: string,
    params: unknown[] = [],
  ): Promise<[R[], R[]]> {
    const run = async (side: SideSession): Promise<R[]> => {
      try {
        return (await side.client.query<R>(sql, params)).rows;
      } catch (err) {
        throw (
          (this.reading ? accessDeniedError(err, side.spec.side, this.reading) : undefined) ??
          verifyQueryError(side.spec, what, err)
        );
      }
    };
    return Promise.all([run(this.source), run(this.target)]);
  }

  async close(): Promise<void> {
    await Promise.all([closeQuietly(this.source.client), closeQuietly(this.target.client)]);
  }
}
