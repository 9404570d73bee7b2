/**
 * What a migration's phase is and what the operator does next, from the ledger alone: the
 * words `pgconvoy status` prints and the dashboard shows, written once.
 */
import type { LedgerStatus } from '../ledger/ledger-status.js';
import type { OnlinePhase } from '../replicate/online-state.js';

/** The clone's phase as the ledger tells it. */
export function ledgerPhase(s: LedgerStatus): string {
  const c = s.counts;
  if (!s.exists) return 'not started';
  if (c.total === 0) return 'planned';
  if (c.done === c.total) return s.steps.includes('analyze') ? 'done' : 'copied; finishing';
  if (c.running > 0) return 'copying';
  if (c.failed > 0) return 'stopped with failures';
  return 'waiting for workers';
}

const ONLINE_NEXT: Record<OnlinePhase, string> = {
  copying: 'the initial copy of `pgconvoy start` is running; when it ends, replication begins',
  replicating:
    'when the lag is small, run `pgconvoy cutover` (writes stop on the source for the seconds it takes)',
  cutover: 'cutover stopped midway: run the same `pgconvoy cutover` command again to finish it',
  done: 'point the application at the target; `pgconvoy rollback` goes back, `pgconvoy teardown` cleans up',
  'rolled-back': 'the source is the database again; `pgconvoy teardown` removes what is left',
};

/** The next step, or undefined when there is nothing to do. */
export function nextStep(s: LedgerStatus, online: OnlinePhase | undefined): string | undefined {
  if (online) return ONLINE_NEXT[online];
  const c = s.counts;
  if (!s.exists) return 'nothing started yet: run `pgconvoy clone` (or `pgconvoy start`)';
  if (c.failed > 0 || (c.pending > 0 && c.running === 0))
    return 'run the same `pgconvoy clone` command again (or start `pgconvoy worker`) to finish the remaining jobs';
  return undefined;
}
