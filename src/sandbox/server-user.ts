/**
 * PostgreSQL refuses to run as root. When pgconvoy (tests, demo, bench) runs as root, the
 * sandbox servers run as an unprivileged OS user: `postgres` when it exists, otherwise
 * `pgconvoy` created with useradd.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface ServerUser {
  uid: number;
  gid: number;
  name: string;
}

function lookup(name: string): ServerUser | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined)
      return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

let cached: ServerUser | undefined | null = null;

/** undefined when the process is not root: servers then run as ourselves. */
export function serverUser(): ServerUser | undefined {
  if (cached !== null) return cached;
  if (process.getuid?.() !== 0) return (cached = undefined);
  let user = lookup('postgres') ?? lookup('pgconvoy');
  if (!user) {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'pgconvoy']);
    user = lookup('pgconvoy');
    if (!user) throw new Error('could not create the unprivileged user "pgconvoy" for sandbox servers');
  }
  return (cached = user);
}
