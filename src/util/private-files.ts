/**
 * Files pgconvoy writes are private to its OS user: the run directory can hold the source's
 * secrets (schema.sql may carry `CREATE USER MAPPING … OPTIONS (password …)`), and logs
 * name servers and tables. Directories 0700, files 0600, whatever the umask; an existing
 * directory is narrowed too, since an older run may have made it readable.
 */
import { appendFileSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';

export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

export function writePrivateFile(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o600 });
  chmodSync(file, 0o600);
}

export function appendPrivateFile(file: string, data: string): void {
  appendFileSync(file, data, { mode: 0o600 });
}
