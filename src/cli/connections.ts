/**
 * Where the command line turns --source/--target (or a config file, or the libpq
 * environment) into connection specs, and registers their passwords for redaction.
 */
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { resolveConnection, type ConnectionSpec, type Side } from '../connect/resolve.js';
import { registerSecret } from '../util/redact.js';
import type { PgconvoyConfig } from './config-file.js';

/** `--source` and `--target`, declared once for every command (commander's .option(...)). */
export const SOURCE_OPTION = ['--source <conninfo>', 'source server: libpq URI or key=value string'] as const;
export const TARGET_OPTION = ['--target <conninfo>', 'target server: libpq URI or key=value string'] as const;

export interface ConnectionFlags {
  source?: string;
  target?: string;
  config?: string;
}

/**
 * The libpq environment (PGHOST, PGUSER, ...) describes one server; with two servers in play
 * it applies to both unless PGCONVOY_SOURCE / PGCONVOY_TARGET give a conninfo per side.
 */
/** The conninfo string given for `side`: flag, then PGCONVOY_SOURCE/PGCONVOY_TARGET, then the config file. */
export function givenConninfo(
  side: Side,
  flags: ConnectionFlags,
  config: PgconvoyConfig | undefined,
): string | undefined {
  return (
    flags[side] ?? process.env[side === 'source' ? 'PGCONVOY_SOURCE' : 'PGCONVOY_TARGET'] ?? config?.[side]
  );
}

export function connectionFor(
  side: Side,
  flags: ConnectionFlags,
  config: PgconvoyConfig | undefined,
  required = true,
): ConnectionSpec | undefined {
  const given = givenConninfo(side, flags, config);
  if (given === undefined && !required) return undefined;
  if (given === undefined && !process.env.PGHOST && !process.env.PGSERVICE && !process.env.PGDATABASE) {
    throw new PgconvoyError(`no ${side} connection given`, {
      code: 'NO_CONNECTION',
      hint: `pass --${side} 'postgresql://user@host:5432/dbname' (or a key=value conninfo, or set PGCONVOY_${side.toUpperCase()})`,
      exitCode: EXIT.usage,
    });
  }
  const spec = resolveConnection(given, side, process.env);
  registerSecret(spec.password);
  return spec;
}
