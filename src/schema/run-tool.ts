/**
 * Running pg_dump and pg_restore as child processes. The connection goes in `--dbname` as
 * a conninfo string WITHOUT the password (any user can read a process' argv with `ps`);
 * the password goes only through the child's environment (PGPASSWORD). The child gets a
 * small environment of its own, never ours: messages in English (we read them), no
 * stray PG* variables, and session settings through PGOPTIONS.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatConninfo } from '../connect/conninfo.js';
import { DEFAULTS } from '../defaults.js';
import type { ConnectionSpec } from '../connect/resolve.js';
import { redact } from '../util/redact.js';

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** Redacted. */
  stderr: string;
}

// libpq reads sslpassword from no environment variable: it reaches a child through a
// service file of its own (0600 in a 0700 directory), named in the child's conninfo, never
// in its argv. The values pgconvoy resolved already include the user's own service entry.
const SECRET_SERVICE = 'pgconvoy_secrets';
const secretFiles = new Map<string, string>();
let secretDir: string | undefined;

function secretServiceFile(sslpassword: string): string {
  const known = secretFiles.get(sslpassword);
  if (known) return known;
  if (!secretDir) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-secrets-'));
    chmodSync(dir, 0o700);
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    secretDir = dir;
  }
  const file = path.join(secretDir, `service-${secretFiles.size + 1}.conf`);
  writeFileSync(file, `[${SECRET_SERVICE}]\nsslpassword=${sslpassword}\n`, { mode: 0o600 });
  secretFiles.set(sslpassword, file);
  return file;
}

/** `--dbname` value for a child: the resolved keywords, minus password, sslpassword and options. */
export function childConninfo(spec: ConnectionSpec, applicationName: string): string {
  const { options: _options, sslpassword, service: _service, ...info } = spec.conninfo;
  return formatConninfo({
    // A dead network fails the child within a minute instead of hanging for hours.
    keepalives: '1',
    keepalives_idle: String(DEFAULTS.keepalivesIdleSeconds),
    keepalives_interval: String(DEFAULTS.keepalivesIntervalSeconds),
    keepalives_count: String(DEFAULTS.keepalivesCount),
    ...info,
    ...(sslpassword !== undefined ? { service: SECRET_SERVICE } : {}),
    fallback_application_name: applicationName,
  });
}

/** `-c name=value` words for PGOPTIONS; spaces and backslashes escaped as libpq wants. */
export function pgOptions(
  base: string | undefined,
  settings: Record<string, string> = {},
): string | undefined {
  const escape = (s: string) => s.replace(/\\/g, '\\\\').replace(/ /g, '\\ ');
  const words = Object.entries(settings).map(([k, v]) => `-c ${escape(k)}=${escape(v)}`);
  const all = [base, ...words].filter((w): w is string => Boolean(w));
  return all.length ? all.join(' ') : undefined;
}

export function childEnv(
  spec: ConnectionSpec | undefined,
  settings?: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = { LC_ALL: 'C', LC_MESSAGES: 'C' };
  if (spec?.password !== undefined) env.PGPASSWORD = spec.password;
  const sslpassword = spec?.conninfo.sslpassword;
  if (sslpassword !== undefined) env.PGSERVICEFILE = secretServiceFile(sslpassword);
  const options = pgOptions(spec?.options, settings);
  if (options) env.PGOPTIONS = options;
  return env;
}

export function runTool(
  file: string,
  args: string[],
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(signal ? { signal } : {}),
    });
    const out: Buffer[] = [];
    const errs: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => errs.push(d));
    child.on('error', reject);
    child.on('close', (code, sig) => {
      resolve({
        code,
        signal: sig,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: redact(Buffer.concat(errs).toString('utf8')),
      });
    });
  });
}
