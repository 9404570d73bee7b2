/**
 * Throwaway PostgreSQL servers on loopback, for tests, `pgconvoy demo` and `npm run bench`.
 *
 * - Any installed major (see postgres-binaries.ts), run as an unprivileged OS user when we
 *   are root.
 * - Fast: `initdb` runs once per major and machine into a cached template cluster; each new
 *   server starts from a copy of it (about a second in all).
 * - Logical-replication ready: wal_level=logical, slots and senders, a pg_hba.conf that
 *   allows replication connections from 127.0.0.1.
 * - Always removed: on stop(), on process exit and signals; and a server whose owning
 *   process died (SIGKILL) is reaped by the next process that starts one.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  closeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findPostgresBinaries, traversableByOthers, type PostgresBinaries } from './postgres-binaries.js';
import { serverUser, type ServerUser } from './server-user.js';
import { freeLoopbackPort } from './free-port.js';
import { sleep } from '../util/wait.js';

export const SANDBOX_SUPERUSER = 'postgres';
/** Only ever used for servers that listen on 127.0.0.1 and are deleted after use. */
export const SANDBOX_PASSWORD = 'sandbox';

export interface LocalServerOptions {
  major: number;
  /** postgresql.conf settings added to (or replacing) the sandbox defaults. */
  settings?: Record<string, string | number>;
  /** Shown in the data directory's name, to tell servers apart. */
  label?: string;
}

const sandboxRoot = path.join(os.tmpdir(), 'pgconvoy-sandbox');
const live = new Set<LocalServer>();

const BASE_SETTINGS: Record<string, string | number> = {
  listen_addresses: "'127.0.0.1'",
  wal_level: 'logical',
  max_replication_slots: 20,
  max_wal_senders: 20,
  max_worker_processes: 16,
  max_logical_replication_workers: 8,
  max_connections: 100,
  shared_buffers: "'128MB'",
  max_wal_size: "'2GB'",
  password_encryption: "'scram-sha-256'",
  // Throwaway servers: durability buys nothing here and costs the tests time.
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  log_min_messages: 'warning',
  log_line_prefix: "'%m [%p] %a '",
};

const HBA = `# pgconvoy sandbox: trust on the socket, passwords over TCP, replication allowed
local all all trust
local replication all trust
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
`;

function ensureRoot(user: ServerUser | undefined): void {
  mkdirSync(sandboxRoot, { recursive: true, mode: 0o1777 });
  if (user) chownSync(sandboxRoot, user.uid, user.gid);
}

function chownTree(dir: string, user: ServerUser | undefined): void {
  if (user) execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kill and delete servers whose owning process is gone (it was SIGKILLed, say). */
export function reapOrphanServers(): number {
  if (!existsSync(sandboxRoot)) return 0;
  let reaped = 0;
  for (const name of readdirSync(sandboxRoot)) {
    if (!name.startsWith('srv-')) continue;
    const dir = path.join(sandboxRoot, name);
    let owner: number | undefined;
    try {
      owner = (JSON.parse(readFileSync(path.join(dir, 'owner.json'), 'utf8')) as { pid: number }).pid;
    } catch {
      owner = undefined;
    }
    if (owner !== undefined && isAlive(owner)) continue;
    // No readable owner yet: another process may be creating this server right now (the
    // directory exists a moment before its owner.json is written). Only an old one is an orphan.
    if (owner === undefined && Date.now() - statSync(dir).mtimeMs < 60_000) continue;
    try {
      const pidLine = readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0];
      if (pidLine) process.kill(Number(pidLine), 'SIGQUIT');
    } catch {
      /* not running */
    }
    rmSync(dir, { recursive: true, force: true });
    reaped++;
  }
  return reaped;
}

/** Server binaries placed where the unprivileged server user can execute them. */
function usableBinaries(bins: PostgresBinaries, user: ServerUser | undefined): PostgresBinaries {
  if (!user || traversableByOthers(path.join(bins.binDir, 'postgres'))) return bins;
  // e.g. a checkout under /root: copy the package's native/ tree to the sandbox root once.
  const copy = path.join(sandboxRoot, `native-${bins.major}-${bins.origin}`);
  if (!existsSync(path.join(copy, 'bin', 'postgres'))) {
    const tmp = `${copy}.tmp-${process.pid}`;
    cpSync(path.dirname(bins.binDir), tmp, { recursive: true, verbatimSymlinks: true });
    try {
      renameSync(tmp, copy);
    } catch {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { ...bins, binDir: path.join(copy, 'bin') };
}

function runAs(user: ServerUser | undefined, file: string, args: string[]): void {
  execFileSync(file, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: sandboxRoot,
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
  });
}

/** initdb once per major: later servers copy this cluster instead of running initdb again. */
function templateCluster(bins: PostgresBinaries, user: ServerUser | undefined): string {
  const dir = path.join(sandboxRoot, `template-${bins.major}-${bins.origin}`);
  if (existsSync(path.join(dir, 'PG_VERSION'))) return dir;
  const work = mkdtempSync(path.join(sandboxRoot, `initdb-${bins.major}-`));
  const pwfile = path.join(work, 'pw');
  writeFileSync(pwfile, SANDBOX_PASSWORD + '\n');
  const data = path.join(work, 'data');
  chownTree(work, user);
  runAs(user, path.join(bins.binDir, 'initdb'), [
    '-D',
    data,
    '-U',
    SANDBOX_SUPERUSER,
    `--pwfile=${pwfile}`,
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '--encoding=UTF8',
    '--locale=C',
    '--no-sync',
  ]);
  writeFileSync(path.join(data, 'pg_hba.conf'), HBA);
  try {
    renameSync(data, dir);
  } catch {
    // another process won the race; its template is as good as ours
  }
  rmSync(work, { recursive: true, force: true });
  return dir;
}

export class LocalServer {
  readonly major: number;
  readonly port: number;
  readonly dir: string;
  readonly dataDir: string;
  private readonly bins: PostgresBinaries;
  private readonly user: ServerUser | undefined;
  private child: ChildProcess | undefined;

  private constructor(bins: PostgresBinaries, user: ServerUser | undefined, dir: string, port: number) {
    this.bins = bins;
    this.major = bins.major;
    this.user = user;
    this.dir = dir;
    this.dataDir = path.join(dir, 'data');
    this.port = port;
  }

  static async start(options: LocalServerOptions): Promise<LocalServer> {
    installCleanup();
    const user = serverUser();
    ensureRoot(user);
    reapOrphanServers();
    const bins = usableBinaries(findPostgresBinaries(options.major), user);
    const template = templateCluster(bins, user);
    const label = (options.label ?? `pg${options.major}`).replace(/[^a-zA-Z0-9_-]/g, '_');
    const dir = mkdtempSync(path.join(sandboxRoot, `srv-${label}-`));
    writeFileSync(path.join(dir, 'owner.json'), JSON.stringify({ pid: process.pid }));
    cpSync(template, path.join(dir, 'data'), { recursive: true });
    chownTree(dir, user);
    // A port can be taken between probing and binding: try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freeLoopbackPort();
      const server = new LocalServer(bins, user, dir, port);
      server.writeConfig(options.settings ?? {});
      try {
        await server.launch();
        live.add(server);
        return server;
      } catch (err) {
        lastError = err;
        if (!/could not (bind|create listen)/i.test(String(err))) break;
      }
    }
    rmSync(dir, { recursive: true, force: true });
    throw lastError;
  }

  private writeConfig(extra: Record<string, string | number>): void {
    const settings = {
      ...BASE_SETTINGS,
      port: this.port,
      unix_socket_directories: `'${this.dir}'`,
      ...extra,
    };
    const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}`);
    const conf = path.join(this.dataDir, 'postgresql.conf');
    appendFileSync(conf, `\n# pgconvoy sandbox\n${lines.join('\n')}\n`);
  }

  private async launch(): Promise<void> {
    const log = openSync(path.join(this.dir, 'server.log'), 'a');
    if (this.user) chownSync(path.join(this.dir, 'server.log'), this.user.uid, this.user.gid);
    const child = spawn(path.join(this.bins.binDir, 'postgres'), ['-D', this.dataDir], {
      stdio: ['ignore', log, log],
      cwd: this.dir,
      ...(this.user ? { uid: this.user.uid, gid: this.user.gid } : {}),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
    });
    closeSync(log);
    this.child = child;
    let exited = false;
    child.once('exit', () => (exited = true));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`PostgreSQL ${this.major} did not start:\n${this.logTail()}`);
      const client = new pg.Client({ ...this.clientConfig('postgres'), connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.end();
        return;
      } catch (err) {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline)
          throw new Error(
            `PostgreSQL ${this.major} did not accept connections: ${String(err)}\n${this.logTail()}`,
          );
        await sleep(50);
      }
    }
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(path.join(this.dir, 'server.log'), 'utf8')
        .trim()
        .split('\n')
        .slice(-lines)
        .join('\n');
    } catch {
      return '(no server log)';
    }
  }

  /** A libpq URI for a database on this server (superuser unless `user` is given). */
  url(database = 'postgres', user = SANDBOX_SUPERUSER, password = SANDBOX_PASSWORD): string {
    return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  clientConfig(database = 'postgres'): pg.ClientConfig {
    return {
      host: '127.0.0.1',
      port: this.port,
      user: SANDBOX_SUPERUSER,
      password: SANDBOX_PASSWORD,
      database,
    };
  }

  /** Run SQL as the superuser (simple-query protocol: several statements allowed). */
  async sql<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    database = 'postgres',
    params?: unknown[],
  ): Promise<R[]> {
    const client = new pg.Client(this.clientConfig(database));
    await client.connect();
    try {
      const res = await client.query<R>(text, params);
      // multi-statement queries return an array of results; the last one is wanted
      return Array.isArray(res) ? ((res as pg.QueryResult<R>[]).at(-1)?.rows ?? []) : res.rows;
    } finally {
      await client.end();
    }
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Stop the server. 'fast' rolls back sessions; 'immediate' is a crash (recovery at next start). */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await done;
    clearTimeout(timer);
    this.child = undefined;
  }

  /** Stop and start again on the same port (a server that went away and came back). */
  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.launch();
  }

  async destroy(): Promise<void> {
    await this.stop('fast');
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last-resort cleanup (process 'exit' cannot wait). */
  destroySync(): void {
    if (this.child && this.running) this.child.kill('SIGQUIT');
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function cleanupAll(): void {
  for (const server of [...live]) server.destroySync();
}

let cleanupInstalled = false;

/**
 * Installed with the first server, not at import: every command imports the sandbox through
 * `demo`, and only a process that has started a server should handle signals for it.
 */
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.once('exit', cleanupAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanupAll();
      // Others listening (a command's own Ctrl-C handling) decide how to end; otherwise end as the signal would.
      if (process.listenerCount(signal) === 0) process.exit(128 + os.constants.signals[signal]);
    });
  }
}
