/**
 * Takes down what createRemoteServer set up on the target (remote-server.ts): the private
 * schema with its foreign tables, the server with its user mappings, and the extension if
 * pgconvoy created it and no other foreign server uses it.
 */
import type pg from 'pg';
import { PgconvoyError } from '../errors.js';
import { quoteIdent } from '../util/sql.js';
import {
  OWNED_MARK,
  REMOTE_EXTENSION_SCHEMA,
  fdwError,
  readExisting,
  type RemoteServerNames,
} from './remote-objects.js';

/** What `removeRemoteServer` did with the extension. */
export interface RemoteServerRemoval {
  extension: 'dropped' | 'not ours' | 'absent' | 'still used';
  /** Foreign servers that still use the extension (so it was kept). */
  otherServers: string[];
}

/**
 * Drops the private schema with its foreign tables, the user mapping, the server, and the
 * extension if pgconvoy created it and no other foreign server uses it. Idempotent: what is
 * already gone is skipped. Refuses to drop a server or schema pgconvoy did not create.
 */
export async function removeRemoteServer(
  target: pg.Client,
  names: RemoteServerNames,
): Promise<RemoteServerRemoval> {
  await target.query('BEGIN');
  try {
    await target.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))', [
      `pgconvoy fdw ${names.server}`,
    ]);
    const existing = await readExisting(target, names);
    if (existing.schemaComment !== undefined) {
      if (!existing.schemaComment?.startsWith(OWNED_MARK))
        throw fdwError(
          `the schema "${names.schema}" on the target was not created by pgconvoy; it is left alone`,
          'drop it yourself if it is not wanted',
          'FDW_NAME_IN_USE',
        );
      await target.query(`DROP SCHEMA ${quoteIdent(names.schema)} CASCADE`);
    }
    if (existing.server) {
      if (!existing.server.comment?.startsWith(OWNED_MARK))
        throw fdwError(
          `the foreign server "${names.server}" on the target was not created by pgconvoy; it is left alone`,
          'drop it yourself if it is not wanted',
          'FDW_NAME_IN_USE',
        );
      // CASCADE: the user mappings of every role (another role may have run pgconvoy too).
      await target.query(`DROP SERVER ${quoteIdent(names.server)} CASCADE`);
    }
    const removal = await dropOwnExtension(target, existing.extensionSchema);
    await target.query('COMMIT');
    return removal;
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    if (err instanceof PgconvoyError) throw err;
    throw fdwError(
      `could not remove the foreign server "${names.server}" from the target`,
      'see the server message',
      'FDW_SETUP_FAILED',
      err,
    );
  }
}

async function dropOwnExtension(
  target: pg.Client,
  extensionSchema: string | null,
): Promise<RemoteServerRemoval> {
  if (extensionSchema === null) return { extension: 'absent', otherServers: [] };
  if (extensionSchema !== REMOTE_EXTENSION_SCHEMA) return { extension: 'not ours', otherServers: [] };
  const others = await target.query<{ srvname: string }>(
    `SELECT s.srvname FROM pg_catalog.pg_foreign_server s
       JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
      WHERE w.fdwname = 'postgres_fdw' ORDER BY 1`,
  );
  if (others.rows.length > 0)
    return { extension: 'still used', otherServers: others.rows.map((r) => r.srvname) };
  await target.query('DROP EXTENSION postgres_fdw');
  await target.query(`DROP SCHEMA ${quoteIdent(REMOTE_EXTENSION_SCHEMA)}`);
  return { extension: 'dropped', otherServers: [] };
}
