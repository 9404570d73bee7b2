/**
 * Finding the pg_dump / pg_restore pair to use. pg_dump refuses to dump a server newer than
 * itself, so the pair must be at least the source's major; we take the one the user named
 * (--pg-bin), else the newest suitable one on PATH or under /usr/lib/postgresql/<major>/bin
 * (Debian and Ubuntu's postgresql-client-<major> packages).
 *
 * Debian's /usr/bin/pg_dump is a symlink to pg_wrapper, which picks a version itself from
 * the environment and ~/.postgresqlrc; we skip it and use the real binaries it would choose
 * from, so that pg_dump and pg_restore are always the same, known version.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';

export interface PgTools {
  pgDump: string;
  pgRestore: string;
  /** Major version of both tools. */
  major: number;
  dir: string;
  /** `pg_dump --version` output, e.g. "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)". */
  version: string;
}

export interface FindPgToolsOptions {
  /** Major version of the source server. */
  sourceMajor: number;
  /** A directory the user named with --pg-bin; looked at first and preferred when suitable. */
  pgBin?: string;
  /** The PATH to search (the command line passes process.env.PATH); '' searches no PATH. */
  pathEnv?: string;
  /** Where versioned client installs live; a parameter so tests can point it elsewhere. */
  systemRoot?: string;
}

export const SYSTEM_PG_ROOT = '/usr/lib/postgresql';

interface Candidate {
  dir: string;
  major: number | undefined;
  version: string;
  problem?: string;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function isPgWrapper(file: string): boolean {
  try {
    return path.basename(realpathSync(file)) === 'pg_wrapper';
  } catch {
    return false;
  }
}

/** Parses "pg_dump (PostgreSQL) 15.18 (Debian ...)" and "pg_dump (PostgreSQL) 17beta1" → 15, 17. */
export function parseToolMajor(versionLine: string): number | undefined {
  // Before 10 the major was two numbers (9.6); "9" is still below every supported source.
  const m = /\(PostgreSQL\)\s+(\d+)/.exec(versionLine);
  return m ? Number(m[1]) : undefined;
}

function toolVersion(file: string): string | undefined {
  try {
    return execFileSync(file, ['--version'], {
      encoding: 'utf8',
      env: { LC_ALL: 'C' },
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

function inspectDir(dir: string): Candidate | undefined {
  const pgDump = path.join(dir, 'pg_dump');
  if (!existsSync(pgDump) || !isExecutable(pgDump) || isPgWrapper(pgDump)) return undefined;
  const version = toolVersion(pgDump);
  if (version === undefined)
    return { dir, major: undefined, version: '?', problem: 'pg_dump --version failed' };
  const major = parseToolMajor(version);
  if (major === undefined) return { dir, major, version, problem: `unrecognised version "${version}"` };
  const pgRestore = path.join(dir, 'pg_restore');
  const restoreVersion =
    existsSync(pgRestore) && isExecutable(pgRestore) ? toolVersion(pgRestore) : undefined;
  if (!restoreVersion) return { dir, major, version, problem: 'no pg_restore next to it' };
  if (parseToolMajor(restoreVersion) !== major)
    return { dir, major, version, problem: `pg_restore there is "${restoreVersion}"` };
  return { dir, major, version };
}

function systemDirs(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a))
    .map((name) => path.join(root, name, 'bin'));
}

/**
 * The pg_dump/pg_restore pair for a source of major `sourceMajor`.
 *
 * @example findPgTools({ sourceMajor: 13, pathEnv: process.env.PATH })
 *   // → { pgDump: '/usr/lib/postgresql/15/bin/pg_dump', major: 15, ... }
 */
export function findPgTools(options: FindPgToolsOptions): PgTools {
  const dirs: string[] = [];
  if (options.pgBin) dirs.push(path.resolve(options.pgBin));
  for (const dir of (options.pathEnv ?? '').split(path.delimiter)) if (dir) dirs.push(path.resolve(dir));
  dirs.push(...systemDirs(options.systemRoot ?? SYSTEM_PG_ROOT));

  const seen = new Set<string>();
  const candidates: Candidate[] = [];
  for (const dir of dirs) {
    if (seen.has(dir)) continue;
    seen.add(dir);
    const candidate = inspectDir(dir);
    if (candidate) candidates.push(candidate);
  }
  const suitable = candidates.filter(
    (c): c is Candidate & { major: number } =>
      c.problem === undefined && c.major !== undefined && c.major >= options.sourceMajor,
  );
  const explicit = options.pgBin ? path.resolve(options.pgBin) : undefined;
  const chosen =
    suitable.find((c) => c.dir === explicit) ??
    suitable.reduce<(typeof suitable)[number] | undefined>(
      (best, c) => (best === undefined || c.major > best.major ? c : best),
      undefined,
    );
  if (chosen) {
    return {
      pgDump: path.join(chosen.dir, 'pg_dump'),
      pgRestore: path.join(chosen.dir, 'pg_restore'),
      major: chosen.major,
      dir: chosen.dir,
      version: chosen.version,
    };
  }

  const found = candidates.map(
    (c) => `pg_dump ${c.major ?? '?'} in ${c.dir}${c.problem ? ` (${c.problem})` : ''}`,
  );
  const message =
    `the source is PostgreSQL ${options.sourceMajor}, which needs pg_dump ${options.sourceMajor} or newer; ` +
    (found.length
      ? `found only ${found.join(', ')}`
      : `found no pg_dump (looked in ${[...seen].join(', ') || 'no directory'})`);
  throw new PgconvoyError(message, {
    code: 'NO_PG_DUMP',
    hint: `install postgresql-client-${options.sourceMajor} (or newer), or pass --pg-bin DIR naming a directory with pg_dump and pg_restore ${options.sourceMajor}+`,
    // The local setup, not the arguments: 3 (config), not 2 (usage).
    exitCode: EXIT.config,
    details: { sourceMajor: options.sourceMajor, found: candidates },
  });
}
