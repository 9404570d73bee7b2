/** Runs the phases of a clone: each one timed, told as it starts and ends, or told skipped. */
import type { CloneEvent, CloneSummary, PhaseName } from './clone-types.js';

export class Phases {
  readonly list: CloneSummary['phases'] = [];
  constructor(private readonly onEvent: (e: CloneEvent) => void) {}

  async run<T>(
    phase: PhaseName,
    skip: boolean,
    work: () => Promise<T>,
    skipReason = 'already done',
  ): Promise<T | undefined> {
    if (skip) {
      this.skip(phase, skipReason);
      return undefined;
    }
    const started = Date.now();
    this.onEvent({ type: 'phase', phase, state: 'start' });
    const result = await work();
    const seconds = (Date.now() - started) / 1000;
    this.list.push({ phase, seconds, state: 'done' });
    this.onEvent({ type: 'phase', phase, state: 'done', seconds });
    return result;
  }

  skip(phase: PhaseName, reason: string): void {
    this.list.push({ phase, seconds: 0, state: 'skipped' });
    this.onEvent({ type: 'phase', phase, state: 'skipped', detail: reason });
  }
}
