/**
 * The source's address as the TARGET server sees it, for the foreign server's options and
 * the user mapping's login (see remote-server.ts).
 */
import { parseConninfo, type Conninfo } from '../connect/conninfo.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { subscriptionConninfo } from '../replicate/subscription.js';
import { registerSecret } from '../util/redact.js';

/** Where the TARGET server finds the source: libpq options for the server, login for the mapping. */
export interface RemoteSourceAddress {
  serverOptions: Record<string, string>;
  user: string;
  password: string | undefined;
}

/** libpq keywords the foreign server takes from the address (the rest are pgconvoy-local). */
const SERVER_KEYWORDS = [
  'host',
  'hostaddr',
  'port',
  'dbname',
  'sslmode',
  'sslrootcert',
  'connect_timeout',
  'keepalives',
  'keepalives_idle',
  'target_session_attrs',
  'gssencmode',
  'channel_binding',
] as const;

/**
 * Settings of every remote session: no timeout cuts a long read short, and row-level
 * security makes a read fail rather than return fewer rows (prepareSourceSession's settings).
 */
const REMOTE_SESSION_OPTIONS =
  '-c row_security=off -c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0';

/**
 * The address of the source as the target server sees it: `override` (the
 * `--source-from-target` conninfo) when given, else the source's own host, port, database,
 * user and sslmode; the password of `source` when the override has none (as the online
 * subscription does: replicate/subscription.ts).
 */
export function remoteSourceAddress(source: ConnectionSpec, override?: string): RemoteSourceAddress {
  const info: Conninfo = parseConninfo(subscriptionConninfo(source, override));
  registerSecret(info.password);
  const serverOptions: Record<string, string> = {};
  for (const key of SERVER_KEYWORDS) {
    const value = info[key];
    if (value !== undefined && value !== '') serverOptions[key] = value;
  }
  serverOptions.application_name = 'pgconvoy fdw';
  serverOptions.options = [info.options, REMOTE_SESSION_OPTIONS].filter(Boolean).join(' ');
  return { serverOptions, user: info.user ?? source.user, password: info.password };
}
