/**
 * Test harness: real servers shared by the tests of one file, one fresh database per test
 * (made from a template database, which is fast), and a way to run the built CLI.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalServer, type LocalServerOptions } from '../../src/sandbox/local-server.js';
import { watchForLeftovers } from './leftovers.js';

export { allowLeftovers } from './leftovers.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

/** Majors for cross-version tests: an older source and a newer target. */
export const OLD_MAJOR = 13;
export const SYSTEM_MAJOR = 15;
export const NEW_MAJOR = 17;

let counter = 0;
export function uniqueName(prefix: string): string {
  counter++;
  return `${prefix}_${process.pid}_${counter}`;
}

export async function startServer(
  major: number,
  options: Omit<LocalServerOptions, 'major'> = {},
): Promise<LocalServer> {
  const server = await LocalServer.start({ major, ...options });
  // Every test of the file fails when it leaves a pgconvoy session, slot or subscription here.
  watchForLeftovers(server);
  return server;
}

/** Creates database `name` (from `template` when given) and returns its name. */
export async function createDatabase(server: LocalServer, name: string, template?: string): Promise<string> {
  await server.sql(`CREATE DATABASE "${name}"${template ? ` TEMPLATE "${template}"` : ''}`);
  return name;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Called with the child right after it starts (to kill it mid-run, say). */
  onSpawn?: (child: import('node:child_process').ChildProcess) => void;
}

/** Runs `pgconvoy ARGS...` as a separate process, as a user would. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      // The test process' own libpq environment must not leak into the CLI under test.
      if (v !== undefined && !k.startsWith('PG') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
    }
    for (const [k, v] of Object.entries(options.env ?? {})) if (v !== undefined) env[k] = v;
    const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    options.onSpawn?.(child);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const tempDirs: string[] = [];
process.once('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory removed when the test process exits. */
export function tempDir(prefix = 'pgconvoy-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
