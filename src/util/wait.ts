/**
 * Waiting and retrying, in one place. Sleeps use `node:timers/promises`, which removes its
 * abort listener when the timer fires: a hand-written `addEventListener('abort', …)` per
 * sleep leaks one listener per wait (Node warns after 10 on one signal).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { DEFAULTS } from '../defaults.js';

/**
 * Waits `ms` milliseconds, or less when `signal` aborts. Never throws on abort: callers look
 * at `signal.aborted` themselves, as they do after any other step.
 */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if (!signal?.aborted) throw err;
  }
}

export interface RetryOptions {
  /** Whether a failure is worth another attempt (e.g. isTransient). */
  retryable: (err: unknown) => boolean;
  /** Attempts in all, the first included; the last failure is thrown. */
  attempts: number;
  /** Delay before attempt `attempt + 1`, after failed attempt number `attempt` (1-based). */
  delayMs: (attempt: number) => number;
  /** Stops retrying (the failure is thrown) once aborted. */
  signal?: AbortSignal | undefined;
  /** Called before each wait, e.g. to close a broken session. */
  onRetry?: (err: unknown, attempt: number) => Promise<void> | void;
}

/** Runs `fn` until it succeeds, a failure is not retryable, or the attempts are used up. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!o.retryable(err) || attempt >= o.attempts || o.signal?.aborted) throw err;
      await o.onRetry?.(err, attempt);
      await sleep(o.delayMs(attempt), o.signal);
    }
  }
}

/** Delay before retry number `attempt` (1-based): exponential, capped, with full jitter. */
export function backoffMs(
  attempt: number,
  base: number = DEFAULTS.retryBaseDelayMs,
  max: number = DEFAULTS.retryMaxDelayMs,
): number {
  const ceiling = Math.min(max, base * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}
