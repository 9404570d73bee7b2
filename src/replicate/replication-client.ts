/**
 * A replication-protocol session (`replication=database`) to the source, for the one
 * command that needs it: CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT. Ordinary sessions
 * come from connect/open-client.ts; its OpenOptions has no `replication` switch yet, so the
 * connection settings (application_name, timeouts, TLS as sslmode says) are repeated here.
 * TODO(shared): move this into open-client.ts as `openClient(spec, { replication: 'database' })`.
 *
 * Checked with node-postgres 8.x on PostgreSQL 13, 15 and 17: the walsender answers simple
 * queries in the normal protocol, so `client.query(text)` without parameters works.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { DEFAULTS } from '../defaults.js';
import { connectionError } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';

/** node-postgres takes `replication` and exposes `processID`; its type definitions do not say so. */
type ReplicationConfig = pg.ClientConfig & { replication: 'database' };
export type ReplicationClient = pg.Client & { processID: number | null };

function tlsOptions(spec: ConnectionSpec): ConnectionOptions {
  const read = (file: string | undefined) => (file ? readFileSync(file) : undefined);
  const ca = read(spec.sslrootcert);
  const cert = read(spec.sslcert);
  const key = read(spec.sslkey);
  const base: ConnectionOptions = {
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
  };
  if (spec.sslmode === 'verify-full') return { ...base, rejectUnauthorized: true };
  if (spec.sslmode === 'verify-ca' || ca) {
    return { ...base, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  }
  return { ...base, rejectUnauthorized: false };
}

async function connect(
  spec: ConnectionSpec,
  useTls: boolean,
  applicationName: string,
): Promise<ReplicationClient> {
  const config: ReplicationConfig = {
    host: spec.host,
    port: spec.port,
    user: spec.user,
    database: spec.database,
    ...(spec.password !== undefined ? { password: spec.password } : {}),
    application_name: applicationName,
    connectionTimeoutMillis: (spec.connectTimeoutSeconds ?? DEFAULTS.connectTimeoutSeconds) * 1000,
    keepAlive: true,
    ...(spec.options ? { options: spec.options } : {}),
    ssl: useTls ? tlsOptions(spec) : false,
    replication: 'database',
  };
  const client = new pg.Client(config) as ReplicationClient;
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

/** Opens a logical replication session to `spec`'s database, TLS as its sslmode says. */
export async function openReplicationClient(
  spec: ConnectionSpec,
  applicationName: string,
): Promise<ReplicationClient> {
  const tlsFirst = spec.sslmode !== 'disable' && spec.sslmode !== 'allow';
  try {
    return await connect(spec, tlsFirst, applicationName);
  } catch (err) {
    const retry =
      (spec.sslmode === 'prefer' && /does not support SSL/i.test(String(err))) ||
      (spec.sslmode === 'allow' && /SSL|encryption/i.test(String(err)));
    if (!retry) throw connectionError(err, spec);
    try {
      return await connect(spec, spec.sslmode === 'allow', applicationName);
    } catch (again) {
      throw connectionError(again, spec);
    }
  }
}
