/**
 * Commands that stop cleanly on Ctrl-C (clone, start): whatever step the signal cut short,
 * the user is told it was an interruption, with how to go on, not the error of that step.
 */
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';

/** Runs `work`; once `signal` has fired, any outcome becomes an interruption with `hint`. */
export async function unlessInterrupted<T>(
  signal: AbortSignal,
  hint: string,
  work: () => Promise<T>,
): Promise<T> {
  const interrupted = (cause?: unknown) =>
    new PgconvoyError('interrupted', { code: 'INTERRUPTED', exitCode: EXIT.interrupted, hint, cause });
  let result: T;
  try {
    result = await work();
  } catch (error) {
    if (signal.aborted) throw interrupted(error);
    throw error;
  }
  if (signal.aborted) throw interrupted();
  return result;
}
