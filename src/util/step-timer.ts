/**
 * Times the steps of a run (clone's phases, cutover's steps): each one told as it starts and
 * ends, or told skipped, and recorded with how long it took, for the run's summary.
 */

export type StepState = 'start' | 'done' | 'skipped';

export interface StepEvent<N extends string> {
  name: N;
  state: StepState;
  /** How long it took (done). */
  ms?: number;
  /** Why it was skipped. */
  detail?: string;
}

export interface StepTime<N extends string> {
  name: N;
  ms: number;
  state: 'done' | 'skipped';
}

export class StepTimer<N extends string = string> {
  readonly times: StepTime<N>[] = [];
  constructor(private readonly onEvent: (e: StepEvent<N>) => void) {}

  /** Runs one step, timed. */
  async time<T>(name: N, work: () => Promise<T>): Promise<T> {
    const started = Date.now();
    this.onEvent({ name, state: 'start' });
    const result = await work();
    const ms = Date.now() - started;
    this.times.push({ name, ms, state: 'done' });
    this.onEvent({ name, state: 'done', ms });
    return result;
  }

  /** Runs one step unless `skip`, then records it skipped for `skipReason`. */
  async run<T>(
    name: N,
    skip: boolean,
    work: () => Promise<T>,
    skipReason = 'already done',
  ): Promise<T | undefined> {
    if (!skip) return this.time(name, work);
    this.skip(name, skipReason);
    return undefined;
  }

  skip(name: N, reason: string): void {
    this.times.push({ name, ms: 0, state: 'skipped' });
    this.onEvent({ name, state: 'skipped', detail: reason });
  }
}
