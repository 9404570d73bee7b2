/**
 * From what the user gave (a conninfo string, or nothing) plus the libpq environment to a
 * complete connection description, the way libpq fills it: the string's own keywords, then
 * the service file entry (`service=` or PGSERVICE), then PG* environment variables, then
 * defaults; the password from the string, PGPASSWORD, or the password file (PGPASSFILE or
 * ~/.pgpass, ignored when group- or world-readable, as libpq does).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { parseConninfo, type Conninfo } from './conninfo.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export type Side = 'source' | 'target';

export interface ConnectionSpec {
  side: Side;
  host: string;
  port: number;
  database: string;
  user: string;
  password: string | undefined;
  /** Where the password came from, for messages (never the password itself). */
  passwordSource: 'conninfo' | 'PGPASSWORD' | 'passfile' | 'none';
  sslmode: SslMode;
  sslrootcert: string | undefined;
  sslcert: string | undefined;
  sslkey: string | undefined;
  connectTimeoutSeconds: number | undefined;
  options: string | undefined;
  /** The keywords as given plus service and environment values, for child processes. */
  conninfo: Conninfo;
}

/** The libpq environment variables and the keyword each stands for. */
const ENV_KEYWORDS: Record<string, string> = {
  PGHOST: 'host',
  PGHOSTADDR: 'hostaddr',
  PGPORT: 'port',
  PGDATABASE: 'dbname',
  PGUSER: 'user',
  PGPASSFILE: 'passfile',
  PGSERVICE: 'service',
  PGSSLMODE: 'sslmode',
  PGSSLROOTCERT: 'sslrootcert',
  PGSSLCERT: 'sslcert',
  PGSSLKEY: 'sslkey',
  PGAPPNAME: 'application_name',
  PGCONNECT_TIMEOUT: 'connect_timeout',
  PGOPTIONS: 'options',
  PGTARGETSESSIONATTRS: 'target_session_attrs',
  PGCLIENTENCODING: 'client_encoding',
};

type Env = Record<string, string | undefined>;

function serviceFiles(env: Env): string[] {
  const files: string[] = [];
  files.push(env.PGSERVICEFILE ?? path.join(env.HOME ?? os.homedir(), '.pg_service.conf'));
  if (env.PGSYSCONFDIR) files.push(path.join(env.PGSYSCONFDIR, 'pg_service.conf'));
  else files.push('/etc/postgresql-common/pg_service.conf', '/etc/pg_service.conf');
  return files;
}

function readService(name: string, env: Env, side: Side): Conninfo {
  for (const file of serviceFiles(env)) {
    if (!existsSync(file)) continue;
    const lines = readFileSync(file, 'utf8').split(/\r?\n/);
    let inSection = false;
    let found = false;
    const out: Conninfo = {};
    lines.forEach((raw, index) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const section = /^\[(.*)\]$/.exec(line);
      if (section) {
        inSection = section[1] === name;
        found ||= inSection;
        return;
      }
      if (!inSection) return;
      const eq = line.indexOf('=');
      if (eq < 0) {
        throw new PgconvoyError(`syntax error in service file "${file}" line ${index + 1}`, {
          code: 'BAD_SERVICE_FILE',
          hint: 'each line of a service section is key=value',
          exitCode: EXIT.config,
        });
      }
      out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    });
    if (found) return out;
  }
  throw new PgconvoyError(`the ${side} names service "${name}", which no service file defines`, {
    code: 'UNKNOWN_SERVICE',
    hint: `looked in ${serviceFiles(env).join(', ')}; set PGSERVICEFILE to the file that defines [${name}]`,
    exitCode: EXIT.config,
  });
}

/** One field of a .pgpass line: `*` matches anything, `\:` and `\\` are escapes. */
function splitPassLine(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
    } else if (c === ':' && fields.length < 4) {
      fields.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  fields.push(cur);
  return fields;
}

export function passwordFromPassfile(
  file: string,
  host: string,
  port: number,
  database: string,
  user: string,
): string | undefined {
  if (!existsSync(file)) return undefined;
  const st = statSync(file);
  // libpq ignores a password file that others may read; so do we (and tell why at connect time).
  if (!st.isFile() || (st.mode & 0o077) !== 0) return undefined;
  const hostKey = host.startsWith('/') ? 'localhost' : host;
  for (const raw of readFileSync(file, 'utf8').split(/\r?\n/)) {
    if (!raw || raw.startsWith('#')) continue;
    const f = splitPassLine(raw);
    if (f.length !== 5) continue;
    const [h, p, d, u, pw] = f as [string, string, string, string, string];
    const match = (pattern: string, value: string) => pattern === '*' || pattern === value;
    if (match(h, hostKey) && match(p, String(port)) && match(d, database) && match(u, user)) return pw;
  }
  return undefined;
}

function defaultHost(): string {
  // libpq's compiled-in socket directory: Debian's, else the upstream default.
  for (const dir of ['/var/run/postgresql', '/tmp']) {
    if (existsSync(path.join(dir, '.s.PGSQL.5432'))) return dir;
  }
  return 'localhost';
}

export function resolveConnection(given: string | undefined, side: Side, env: Env): ConnectionSpec {
  const explicit = given ? parseConninfo(given) : {};
  const fromEnv: Conninfo = {};
  for (const [variable, keyword] of Object.entries(ENV_KEYWORDS)) {
    const value = env[variable];
    if (value !== undefined && value !== '') fromEnv[keyword] = value;
  }
  const serviceName = explicit.service ?? fromEnv.service;
  const fromService = serviceName ? readService(serviceName, env, side) : {};
  // libpq's order: the string, then the service, then the environment.
  const info: Conninfo = { ...fromEnv, ...fromService, ...explicit };
  delete info.service;

  const user = info.user ?? env.USER ?? os.userInfo().username;
  const database = info.dbname ?? user;
  const host = info.hostaddr ?? info.host ?? defaultHost();
  const portText = info.port ?? '5432';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PgconvoyError(`the ${side} port "${portText}" is not a port number`, {
      code: 'BAD_CONNINFO',
      hint: 'give a port between 1 and 65535',
      exitCode: EXIT.usage,
    });
  }
  const sslmode = (info.sslmode ?? 'prefer') as SslMode;
  if (!SSL_MODES.includes(sslmode)) {
    throw new PgconvoyError(`the ${side} sslmode "${sslmode}" is not valid`, {
      code: 'BAD_CONNINFO',
      hint: `use one of ${SSL_MODES.join(', ')}`,
      exitCode: EXIT.usage,
    });
  }
  let password = explicit.password ?? fromService.password;
  let passwordSource: ConnectionSpec['passwordSource'] = password !== undefined ? 'conninfo' : 'none';
  if (password === undefined && env.PGPASSWORD !== undefined) {
    password = env.PGPASSWORD;
    passwordSource = 'PGPASSWORD';
  }
  if (password === undefined) {
    const passfile = info.passfile ?? path.join(env.HOME ?? os.homedir(), '.pgpass');
    password = passwordFromPassfile(passfile, host, port, database, user);
    if (password !== undefined) passwordSource = 'passfile';
  }
  const timeout = info.connect_timeout ? Number(info.connect_timeout) : undefined;
  return {
    side,
    host,
    port,
    database,
    user,
    password,
    passwordSource,
    sslmode,
    sslrootcert: info.sslrootcert,
    sslcert: info.sslcert,
    sslkey: info.sslkey,
    connectTimeoutSeconds: timeout !== undefined && timeout > 0 ? Math.max(2, timeout) : undefined,
    options: info.options,
    conninfo: { ...info, host, port: String(port), dbname: database, user },
  };
}

/** `user@host:port/db`: how pgconvoy names a server in every message. Never has a password. */
export function describeConnection(
  spec: Pick<ConnectionSpec, 'user' | 'host' | 'port' | 'database'>,
): string {
  const host = spec.host.includes(':') && !spec.host.startsWith('/') ? `[${spec.host}]` : spec.host;
  return `${spec.user}@${host}:${spec.port}/${spec.database}`;
}

/** The same spec pointing at another database of the same server. */
export function withDatabase(spec: ConnectionSpec, database: string): ConnectionSpec {
  return { ...spec, database, conninfo: { ...spec.conninfo, dbname: database } };
}
