/**
 * Opening the target database, creating it first when it does not exist and the user asked
 * for that (`--create-database`): one implementation for clone and start.
 */
import type pg from 'pg';
import { PgconvoyError } from '../errors.js';
import { quoteIdent } from '../util/sql.js';
import { openClient } from './open-client.js';
import { withDatabase, type ConnectionSpec } from './resolve.js';

export interface OpenOrCreateOptions {
  applicationName: string;
  /** Create the database when the server says it does not exist; otherwise that error stands. */
  create: boolean;
  /** Told once the database was created ("created database … on the target"). */
  onCreated: (message: string) => void;
  /**
   * Creates the database through `admin` (a session on the maintenance database) instead of a
   * bare CREATE DATABASE: as the source's (schema/database-create.ts). Returns its warnings.
   */
  createLike?: (admin: pg.Client) => Promise<string[]>;
  onWarning?: (message: string) => void;
}

export async function openOrCreateDatabase(spec: ConnectionSpec, o: OpenOrCreateOptions): Promise<pg.Client> {
  try {
    return await openClient(spec, { applicationName: o.applicationName });
  } catch (err) {
    if (!(err instanceof PgconvoyError) || err.code !== 'NO_DATABASE' || !o.create) throw err;
    // CREATE DATABASE runs from the maintenance database of the same server.
    const admin = await openClient(withDatabase(spec, 'postgres'), { applicationName: o.applicationName });
    try {
      if (o.createLike) for (const w of await o.createLike(admin)) o.onWarning?.(w);
      else await admin.query(`CREATE DATABASE ${quoteIdent(spec.database)}`);
    } finally {
      await admin.end();
    }
    o.onCreated(`created database ${quoteIdent(spec.database)} on the target`);
    return openClient(spec, { applicationName: o.applicationName });
  }
}
