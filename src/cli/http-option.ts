/**
 * `--http [HOST:]PORT` and `--http-token` for every long-running command and for `serve`:
 * parsing, and starting the dashboard (observe/) for the command's target. Binds to
 * 127.0.0.1 unless a host is given; a non-loopback host needs a token, generated and
 * printed when none is given (PGCONVOY_HTTP_TOKEN may hold it, out of argv).
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import type { ConnectionSpec } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { startDashboardServer, isLoopback } from '../observe/http-server.js';
import { LiveRecorder } from '../observe/live.js';
import { Monitor } from '../observe/monitor.js';
import { err } from './output.js';

/** The long-running commands that take --http (serve has its own). */
export const HTTP_COMMANDS = ['clone', 'worker', 'start', 'replicate', 'cutover', 'verify'];

export const HTTP_TOKEN_ENV = 'PGCONVOY_HTTP_TOKEN';
/** How often the ledger is read for the page and the charts. */
export const LOOK_INTERVAL_MS = 2000;

export interface HttpFlags {
  http?: string;
  httpToken?: string;
}

export interface HttpAddress {
  host: string;
  port: number;
}

/** `8080`, `127.0.0.1:8080`, `0.0.0.0:8080`, `[::1]:8080`; port 0 picks a free one. */
export function parseHttpAddress(text: string): HttpAddress {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535) {
    throw new PgconvoyError(`--http "${text}" is not [HOST:]PORT`, {
      code: 'BAD_HTTP_ADDRESS',
      exitCode: EXIT.usage,
      hint: 'write it like 8080 (on 127.0.0.1), 127.0.0.1:8080 or 0.0.0.0:8080 (then a token is needed)',
    });
  }
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

export function addHttpOption(command: Command): Command {
  return command
    .option(
      '--http <[host:]port>',
      'serve a live dashboard (/) and Prometheus metrics (/metrics) on this address (host defaults to 127.0.0.1)',
    )
    .option(
      '--http-token <token>',
      `token every request to --http must carry (needed off loopback; generated when not given; or ${HTTP_TOKEN_ENV})`,
    );
}

export interface HttpDashboard {
  live: LiveRecorder;
  url: string;
  close(): Promise<void>;
}

/** The token for this address: given, from the environment, or new when off loopback. */
function tokenFor(address: HttpAddress, flags: HttpFlags): { token: string | undefined; generated: boolean } {
  const given = flags.httpToken ?? process.env[HTTP_TOKEN_ENV];
  if (given) return { token: given, generated: false };
  if (isLoopback(address.host)) return { token: undefined, generated: false };
  return { token: randomBytes(18).toString('base64url'), generated: true };
}

/** Starts the dashboard for one or more target databases; prints where it is. */
export async function startHttp(
  flags: HttpFlags,
  command: string,
  targets: ConnectionSpec[],
  source: (target: ConnectionSpec) => ConnectionSpec | undefined,
  ledgerSchema: string,
  /** Nothing runs in this process (serve, or one child per database): the ledgers only. */
  ledgerOnly = false,
): Promise<HttpDashboard | undefined> {
  if (flags.http === undefined) return undefined;
  const address = parseHttpAddress(flags.http);
  const { token, generated } = tokenFor(address, flags);
  const live = new LiveRecorder(command);
  const monitors = targets.map(
    (target) =>
      new Monitor({
        target,
        source: source(target),
        ledgerSchema,
        intervalMs: LOOK_INTERVAL_MS,
        live: ledgerOnly ? undefined : live,
      }),
  );
  let server;
  try {
    server = await startDashboardServer({ ...address, token, command, monitors });
  } catch (cause) {
    throw new PgconvoyError(`cannot serve the dashboard on ${flags.http}: ${(cause as Error).message}`, {
      code: 'HTTP_LISTEN',
      exitCode: EXIT.usage,
      hint: 'choose another port with --http (0 picks a free one), or stop what uses it',
      cause,
    });
  }
  for (const m of monitors) m.start();
  err(`dashboard: ${server.url} (metrics: /metrics)`);
  if (generated)
    err(
      `  (a token was generated because ${address.host} is not loopback: pass it as ?token= or a Bearer header)`,
    );
  return {
    live,
    url: server.url,
    close: async () => {
      await server.close();
      await Promise.all(monitors.map((m) => m.stop()));
    },
  };
}

/**
 * A command's dashboard: `live` takes its events; `watch` shows the error a step of the work
 * ends with; `settle` waits for the whole work, then stops the server (as `close` does).
 */
export interface Dashboard {
  live: LiveRecorder | undefined;
  watch<T>(work: Promise<T>): Promise<T>;
  settle<T>(work: Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The dashboard of a command that works on one target (a no-op without --http). */
export async function openDashboard(
  flags: HttpFlags,
  command: string,
  target: ConnectionSpec,
  source: ConnectionSpec | undefined,
  ledgerSchema: string,
): Promise<Dashboard> {
  const http = await startHttp(flags, command, [target], () => source, ledgerSchema);
  const watch = async <T>(work: Promise<T>): Promise<T> => {
    try {
      return await work;
    } catch (error) {
      http?.live.failure(error);
      throw error;
    }
  };
  const close = async () => http?.close();
  return {
    live: http?.live,
    watch,
    close,
    settle: async (work) => {
      try {
        return await watch(work);
      } finally {
        await close();
      }
    },
  };
}
