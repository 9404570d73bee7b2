/**
 * Which failures are worth retrying, decided in one place. Retried with backoff and jitter:
 * connection failures (class 08, and socket errors), serialization failure 40001, deadlock
 * 40P01, lock not available 55P03, admin/crash shutdown 57P01-57P03, too many connections
 * 53300. Everything else fails fast with its hint.
 */
import { serverErrorFields } from '../errors.js';
import { DEFAULTS } from '../defaults.js';

const TRANSIENT_SQLSTATES = new Set(['40001', '40P01', '55P03', '57P01', '57P02', '57P03', '53300', '53400']);
const TRANSIENT_SOCKET = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTCONN',
]);

export function isTransient(err: unknown): boolean {
  const fields = serverErrorFields(err);
  if (fields?.code) return fields.code.startsWith('08') || TRANSIENT_SQLSTATES.has(fields.code);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && TRANSIENT_SOCKET.has(code)) return true;
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (cause && cause !== err && isTransient(cause)) return true;
  return /Connection terminated|connection (is )?(closed|lost)|terminating connection|Client has encountered a connection error|not queryable|server closed the connection/i.test(
    String(err instanceof Error ? err.message : err),
  );
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
