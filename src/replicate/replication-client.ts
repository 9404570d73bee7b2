/**
 * A replication-protocol session (`replication=database`) to the source, for the one
 * command that needs it: CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT.
 *
 * Checked with node-postgres 8.x on PostgreSQL 13, 15 and 17: the walsender answers simple
 * queries in the normal protocol, so `client.query(text)` without parameters works.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import type { ConnectionSpec } from '../connect/resolve.js';

/** node-postgres exposes `processID`; its type definitions do not say so. */
export type ReplicationClient = pg.Client & { processID: number | null };

/** Opens a logical replication session to `spec`'s database, TLS as its sslmode says. */
export async function openReplicationClient(
  spec: ConnectionSpec,
  applicationName: string,
): Promise<ReplicationClient> {
  return (await openClient(spec, { applicationName, replication: 'database' })) as ReplicationClient;
}
