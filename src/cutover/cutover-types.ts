/** What `cutover` is asked to do and what it reports as it goes: shared by run-cutover and its checks. */
import type { ConnectionSpec } from '../connect/resolve.js';

export interface CutoverOptions {
  source: ConnectionSpec;
  target: ConnectionSpec;
  ledgerSchema: string;
  /** Refuse when the target is further behind than this. */
  maxLagBytes: number;
  /** Each sequence is set this many increments past the source's value. */
  sequenceMargin: number;
  /** For catching up and for the write freeze, each. */
  timeoutMs: number;
  /** How long the source must stay quiet to count as frozen. */
  freezeCheckMs: number;
  /** Roles that keep CONNECT on the source database (pgconvoy's own always does). */
  keepConnect: string[];
  /** Verify and ANALYZE workers. */
  jobs: number;
  /** Refresh the target's populated materialized views after catch-up. */
  refreshMatviews: boolean;
  /**
   * While writes are blocked: 'full' checksums every row, 'counts' compares exact row counts
   * (and checksums the tables copied at cutover), 'none' skips it.
   */
  verify: 'full' | 'counts' | 'none';
  /** How the SOURCE server reaches the target for back-replication (overrides start-back's). */
  targetFromSource: string | undefined;
  onEvent: (e: CutoverEvent) => void;
}

export type CutoverEvent =
  | { type: 'step'; step: string; state: 'start' | 'done'; ms?: number; detail?: string }
  | { type: 'info' | 'warning'; message: string };
