/**
 * What cutover checks: before it touches anything (forward replication streaming, lag under
 * --max-lag, the source's schema unchanged since start), and after the freeze (verify's
 * verdict). A refusal exits 7 and changes nothing; a verify difference exits 6.
 *
 * Checked with PostgreSQL 13 and 15 as the source and 17 as the target.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError, type ErrorCode } from '../errors.js';
import { diffFingerprints, schemaFingerprint } from '../online/fingerprint.js';
import type { OnlineState } from '../online/state.js';
import { replicationStatus } from '../replicate/status.js';
import { formatBytes } from '../util/format.js';
import { displayName } from '../util/sql.js';
import type { VerifyReport } from '../verify/types.js';
import type { CutoverOptions } from './run-cutover.js';

function refuse(
  message: string,
  code: ErrorCode,
  hint: string,
  details?: Record<string, unknown>,
): PgconvoyError {
  return new PgconvoyError(message, { code, hint, exitCode: EXIT.blocked, ...(details ? { details } : {}) });
}

/** The checks before anything is touched. */
export async function checkReady(
  o: Pick<CutoverOptions, 'maxLagBytes' | 'ledgerSchema'>,
  src: pg.Client,
  tgt: pg.Client,
  state: OnlineState,
): Promise<void> {
  const status = await replicationStatus(src, tgt, state.names);
  const sub = status.subscription;
  if (!status.slot || !sub) {
    throw refuse(
      `forward replication is incomplete: ${!status.slot ? `slot "${state.names.slot}" is missing on the source` : `subscription "${state.names.subscription}" is missing on the target`}`,
      'REPLICATION_BROKEN',
      'the target no longer follows the source: run pgconvoy teardown and start again',
    );
  }
  if (status.slot.walStatus === 'lost') {
    throw refuse(
      `replication slot "${state.names.slot}" is lost (the source removed WAL it needed)`,
      'SLOT_LOST',
      'run pgconvoy teardown and start again',
    );
  }
  if (!sub.enabled || sub.workerPid === null) {
    throw refuse(
      `subscription "${state.names.subscription}" is ${sub.enabled ? 'enabled but its apply worker is not running' : 'disabled'}`,
      'SUBSCRIPTION_NOT_RUNNING',
      `look at the target server's log for apply errors (errors so far: ${sub.applyErrorCount ?? 'unknown before 15'}); pgconvoy status shows the lag`,
    );
  }
  const lag = status.lagBytes ?? 0;
  if (lag > o.maxLagBytes) {
    throw refuse(
      `the target is ${formatBytes(lag)} behind the source, more than --max-lag ${formatBytes(o.maxLagBytes)}`,
      'LAG_TOO_HIGH',
      'wait until pgconvoy status shows a small lag (writes stay blocked until the target has caught up), or raise --max-lag',
      { lagBytes: lag },
    );
  }
  if (state.schemaFingerprint) {
    const changes = diffFingerprints(state.schemaFingerprint, await schemaFingerprint(src, o.ledgerSchema));
    if (changes.length > 0) {
      throw refuse(
        `the source's schema changed since start (DDL is not replicated): ${changes.join('; ')}`,
        'SCHEMA_CHANGED',
        'make the same change on the target (and, for new tables, copy their rows), or teardown and start again; then run cutover',
        { changes },
      );
    }
  }
}

/** Verify's verdict, except that sequences moved on by --sequence-margin are meant to differ. */
export function verifyOk(report: VerifyReport, margin: number): boolean {
  if (report.ok) return true;
  if (report.tables.some((t) => t.status !== 'match')) return false;
  return report.schema.every(
    (d) =>
      d.severity !== 'difference' ||
      (margin > 0 && d.kind === 'sequence' && /^last_value /.test(d.source ?? '')),
  );
}

export function mismatchError(report: VerifyReport): PgconvoyError {
  const tables = report.tables.filter((t) => t.status !== 'match');
  const schema = report.schema.filter((d) => d.severity === 'difference');
  const list = [
    ...tables.map(
      (t) =>
        `${displayName(t.schema, t.name)} ${t.status} (rows ${t.rows.source ?? '-'} vs ${t.rows.target ?? '-'})`,
    ),
    ...schema.map((d) => `${d.kind} ${d.object} ${d.problem}`),
  ];
  return new PgconvoyError(
    `verification found differences after the freeze: ${list.slice(0, 10).join('; ')}${list.length > 10 ? ` … and ${list.length - 10} more` : ''}`,
    {
      code: 'VERIFY_MISMATCH',
      exitCode: EXIT.mismatch,
      hint: 'writes stay frozen on the source and forward replication is still in place; run pgconvoy verify to list the rows, fix the cause, then run cutover again, or run pgconvoy rollback to give the source its logins back',
      details: { verify: report },
    },
  );
}
