/**
 * What pgconvoy's foreign server setup consists of on the target (names, the mark on what
 * pgconvoy created, what exists now), and its errors: shared by creating it
 * (remote-server.ts) and removing it (remove-remote-server.ts).
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, errorMessage, serverErrorFields } from '../errors.js';
import { redact } from '../util/redact.js';

/** The schema pgconvoy creates the postgres_fdw extension in (and so knows it created it). */
export const REMOTE_EXTENSION_SCHEMA = 'pgconvoy_postgres_fdw';

/** Comments on the server and the schema: what they are, and that pgconvoy drops them. */
export const OWNED_MARK = 'pgconvoy:';

export interface RemoteServerNames {
  /** The foreign server on the target that points at the source, e.g. `pgconvoy_source`. */
  server: string;
  /** pgconvoy's private schema for the foreign tables, e.g. `pgconvoy_source_tables`. */
  schema: string;
}

export function fdwError(
  message: string,
  hint: string,
  code: 'FDW_UNAVAILABLE' | 'FDW_DENIED' | 'FDW_NAME_IN_USE' | 'FDW_SETUP_FAILED',
  cause?: unknown,
): PgconvoyError {
  const fields = serverErrorFields(cause);
  const server = cause === undefined ? '' : `: ${redact(errorMessage(cause))}`;
  return new PgconvoyError(`${message}${server}${fields?.code ? ` (SQLSTATE ${fields.code})` : ''}`, {
    code,
    hint,
    exitCode: EXIT.target,
    ...(cause !== undefined ? { cause } : {}),
    ...(fields?.detail ? { details: { detail: redact(fields.detail) } } : {}),
  });
}

export interface ExistingObjects {
  extensionSchema: string | null;
  extensionAvailable: boolean;
  server: { wrapper: string; options: string[] | null; comment: string | null } | null;
  schemaComment: string | null | undefined;
}

export async function readExisting(target: pg.Client, names: RemoteServerNames): Promise<ExistingObjects> {
  const res = await target.query<{
    extension_schema: string | null;
    extension_available: boolean;
    server_wrapper: string | null;
    server_options: string[] | null;
    server_comment: string | null;
    schema_exists: boolean;
    schema_comment: string | null;
  }>(
    `SELECT (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'postgres_fdw') AS extension_schema,
            EXISTS (SELECT FROM pg_catalog.pg_available_extensions
                     WHERE name = 'postgres_fdw') AS extension_available,
            w.fdwname AS server_wrapper, s.srvoptions AS server_options,
            pg_catalog.obj_description(s.oid, 'pg_foreign_server') AS server_comment,
            n.oid IS NOT NULL AS schema_exists,
            pg_catalog.obj_description(n.oid, 'pg_namespace') AS schema_comment
       FROM (SELECT) AS one
       LEFT JOIN pg_catalog.pg_foreign_server s ON s.srvname = $1
       LEFT JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $2`, // 13+
    [names.server, names.schema],
  );
  const row = res.rows[0]!;
  return {
    extensionSchema: row.extension_schema,
    extensionAvailable: row.extension_available,
    server: row.server_wrapper
      ? { wrapper: row.server_wrapper, options: row.server_options, comment: row.server_comment }
      : null,
    schemaComment: row.schema_exists ? row.schema_comment : undefined,
  };
}
