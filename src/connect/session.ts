/**
 * A session's lifetime and a transaction's, in one place: every caller that opens a session
 * closes it on every path, and every transaction ends with COMMIT or ROLLBACK, without a
 * hand-written try/finally each time.
 */
import type pg from 'pg';
import type { ConnectionSpec } from './resolve.js';
import { openClient, type OpenOptions } from './open-client.js';

/**
 * Ends a session and ignores how that goes: it runs after the work (or its failure), and a
 * session that is already broken has nothing left to say.
 */
export async function closeQuietly(client: pg.Client | undefined): Promise<void> {
  if (!client) return;
  await client.end().catch(() => undefined);
}

/** Opens a session, runs `fn` with it, and closes it whatever `fn` did. */
export async function withClient<T>(
  spec: ConnectionSpec,
  fn: (client: pg.Client) => Promise<T>,
  options: OpenOptions = {},
): Promise<T> {
  const client = await openClient(spec, options);
  try {
    return await fn(client);
  } finally {
    await closeQuietly(client);
  }
}

/**
 * Runs `fn` inside BEGIN … COMMIT on `client`; a failure rolls back and is thrown as it was
 * (a failed ROLLBACK on a broken session is not the error worth reporting).
 */
export async function inTransaction<T>(
  client: pg.Client,
  fn: (client: pg.Client) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  await client.query(begin);
  try {
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
