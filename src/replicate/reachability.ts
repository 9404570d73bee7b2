/**
 * Can the TARGET server open a connection to the source, as its subscription will have to?
 * pgconvoy reaching both servers proves nothing about the path between them (firewalls,
 * pg_hba.conf on the source for the target's address, DNS seen from the target, TLS).
 *
 * How it is tested, for real and without side effects: inside a transaction on the target,
 *
 *     CREATE SUBSCRIPTION pgconvoy_precheck_<random> CONNECTION '<source>'
 *       PUBLICATION pgconvoy_precheck_<random>
 *       WITH (connect = true, enabled = false, create_slot = false, slot_name = NONE, copy_data = false);
 *     ROLLBACK;
 *
 * With connect = true the target's server process connects to the source with the
 * replication protocol, exactly as the subscription will (same libpq, same address,
 * password, pg_hba.conf line and REPLICATION check), and reads the publication's table
 * list (empty: that publication does not exist; 15+ only warns). With create_slot = false
 * and slot_name = NONE nothing is created on the source; without create_slot the statement
 * may run in a transaction block, and the ROLLBACK removes the catalog row and the
 * replication origin it made on the target, even if pgconvoy dies midway (the server rolls
 * back a transaction whose session ends). The alternatives were worse: dblink or
 * postgres_fdw are often not installed and use a normal, not a replication, connection; a
 * subscription created with connect = false never connects.
 *
 * It needs the right to create subscriptions on the target; without it the path cannot be
 * tested and the report says so. Checked with PostgreSQL 13, 15 and 17 on both sides.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { inDiscardedTransaction } from '../connect/session.js';
import { serverErrorFields } from '../errors.js';
import { quoteIdent, quoteLiteral } from '../util/sql.js';
import { withoutStatementLogging } from '../util/quiet-logging.js';
import { scrubPassword } from './subscription.js';
import { SQLSTATE } from '../sqlstate.js';

export type ReachabilityResult = (
  | { status: 'reached' }
  /** The target could not connect (network, pg_hba.conf, password, REPLICATION right). */
  | { status: 'unreachable'; message: string }
  /** The target role may not create subscriptions, so the path was not tested. */
  | { status: 'denied'; message: string }
  | { status: 'error'; message: string }
) & {
  /** Server settings that logged the test statement, password included (quiet-logging.ts). */
  loggedBy?: string[];
};

/** Tries the connection from the target server to the source; see the module comment. */
export async function probeSourceFromTarget(
  target: pg.Client,
  conninfo: string,
  timeoutSeconds = 60,
): Promise<ReachabilityResult> {
  const quiet = await withoutStatementLogging(target, () => probe(target, conninfo, timeoutSeconds));
  const result = quiet.value;
  const loggedBy = [...quiet.loggedAlways, ...(result.status === 'reached' ? [] : quiet.loggedOnFailure)];
  return loggedBy.length ? { ...result, loggedBy } : result;
}

async function probe(
  target: pg.Client,
  conninfo: string,
  timeoutSeconds: number,
): Promise<ReachabilityResult> {
  const name = `pgconvoy_precheck_${randomBytes(4).toString('hex')}`;
  return inDiscardedTransaction(target, async () => {
    try {
      await target.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.round(timeoutSeconds)) * 1000}`);
      await target.query(
        `CREATE SUBSCRIPTION ${quoteIdent(name)}
       CONNECTION ${quoteLiteral(conninfo)}
       PUBLICATION ${quoteIdent(name)}
       WITH (connect = true, enabled = false, create_slot = false, slot_name = NONE, copy_data = false)`,
      );
      return { status: 'reached' };
    } catch (err) {
      const message = scrubPassword(err instanceof Error ? err.message : String(err), conninfo)
        .replace(/\s*\n\s*/g, ' ')
        .trim();
      const code = serverErrorFields(err)?.code;
      if (code === SQLSTATE.insufficientPrivilege) return { status: 'denied', message };
      if (/could not connect to the publisher/i.test(message) || code?.startsWith('08')) {
        return { status: 'unreachable', message };
      }
      if (code === SQLSTATE.queryCanceled)
        return { status: 'unreachable', message: `no answer within ${timeoutSeconds} s` };
      return { status: 'error', message };
    }
  });
}
