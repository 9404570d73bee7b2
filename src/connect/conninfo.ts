/**
 * Parsing libpq connection strings: both `key=value` strings (values may be single-quoted,
 * with backslash escapes) and `postgres://` / `postgresql://` URIs (percent-encoded, with
 * query parameters as keywords). Returns keywords exactly as libpq names them.
 * https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING
 */
import { PgconvoyError } from '../errors.js';
import { EXIT } from '../defaults.js';

export type Conninfo = Record<string, string>;

/** Keywords pgconvoy understands; anything else is refused rather than silently ignored. */
export const KNOWN_KEYWORDS = new Set([
  'host',
  'hostaddr',
  'port',
  'dbname',
  'user',
  'password',
  'passfile',
  'service',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslpassword',
  'application_name',
  'fallback_application_name',
  'connect_timeout',
  'options',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
  'target_session_attrs',
  'client_encoding',
  'gssencmode',
  'channel_binding',
]);

function conninfoError(message: string, hint: string): PgconvoyError {
  return new PgconvoyError(message, { code: 'BAD_CONNINFO', hint, exitCode: EXIT.usage });
}

function parseUri(uri: string): Conninfo {
  const m = /^(postgres(?:ql)?):\/\/([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/.exec(uri);
  if (!m)
    throw conninfoError(
      'the connection URI is malformed',
      'expected postgresql://user:password@host:port/dbname?param=value',
    );
  const out: Conninfo = {};
  const authority = m[2] ?? '';
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : '';
  const hostport = at >= 0 ? authority.slice(at + 1) : authority;
  const decode = (s: string, what: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw conninfoError(
        `the connection URI has a bad percent-encoding in its ${what}`,
        'encode special characters as %XX',
      );
    }
  };
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    if (colon >= 0) {
      out.user = decode(userinfo.slice(0, colon), 'user name');
      out.password = decode(userinfo.slice(colon + 1), 'password');
    } else {
      out.user = decode(userinfo, 'user name');
    }
  }
  if (hostport) {
    if (hostport.includes(',')) {
      throw conninfoError(
        'multiple hosts in one connection URI are not supported',
        'name the one primary server to migrate from or to',
      );
    }
    const v6 = /^\[([^\]]+)\](?::(\d*))?$/.exec(hostport);
    if (v6) {
      out.host = v6[1] ?? '';
      if (v6[2]) out.port = v6[2];
    } else {
      const colon = hostport.lastIndexOf(':');
      if (colon >= 0) {
        if (colon > 0) out.host = decode(hostport.slice(0, colon), 'host');
        const port = hostport.slice(colon + 1);
        if (port) out.port = port;
      } else {
        out.host = decode(hostport, 'host');
      }
    }
  }
  if (m[3]) out.dbname = decode(m[3], 'database name');
  if (m[4]) {
    for (const pair of m[4].split('&')) {
      if (!pair) continue;
      const eq = pair.indexOf('=');
      if (eq < 0) throw conninfoError(`the URI parameter "${pair}" has no value`, 'write it as ?name=value');
      const key = decode(pair.slice(0, eq), 'parameter');
      out[key] = decode(pair.slice(eq + 1), 'parameter');
    }
  }
  return out;
}

function parseKeywordValue(text: string): Conninfo {
  const out: Conninfo = {};
  let i = 0;
  const n = text.length;
  const skipSpace = () => {
    while (i < n && /\s/.test(text[i] ?? '')) i++;
  };
  for (;;) {
    skipSpace();
    if (i >= n) return out;
    const keyStart = i;
    while (i < n && /[A-Za-z0-9_]/.test(text[i] ?? '')) i++;
    const key = text.slice(keyStart, i);
    skipSpace();
    if (!key || text[i] !== '=') {
      throw conninfoError(
        `the connection string is malformed near "${text.slice(keyStart, keyStart + 20).replace(/password\s*=\s*\S*/i, 'password=…')}"`,
        "write key=value pairs separated by spaces (quote values with spaces: dbname='my db'), or a postgresql:// URI",
      );
    }
    i++;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i++;
      let closed = false;
      while (i < n) {
        const c = text[i];
        if (c === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          closed = true;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed)
        throw conninfoError(
          `the value of "${key}" has an unterminated quote`,
          "close it with ' (escape a quote inside as \\')",
        );
    } else {
      while (i < n && !/\s/.test(text[i] ?? '')) {
        if (text[i] === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else {
          value += text[i];
          i++;
        }
      }
    }
    out[key] = value;
  }
}

export function parseConninfo(text: string): Conninfo {
  const trimmed = text.trim();
  const info = /^postgres(ql)?:\/\//.test(trimmed) ? parseUri(trimmed) : parseKeywordValue(trimmed);
  for (const key of Object.keys(info)) {
    if (!KNOWN_KEYWORDS.has(key)) {
      throw conninfoError(
        `unknown connection parameter "${key}"`,
        `known parameters: ${[...KNOWN_KEYWORDS].join(', ')}`,
      );
    }
  }
  return info;
}

/** A libpq key=value string for child processes (pg_dump, psql), without the password. */
export function formatConninfo(info: Conninfo): string {
  const { password: _password, ...rest } = info;
  return formatConninfoWithPassword(Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== '')));
}

/** A key=value conninfo that keeps the password: only for handing to our own parser. */
export function formatConninfoWithPassword(info: Conninfo): string {
  return Object.entries(info)
    .map(([k, v]) => `${k}='${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`)
    .join(' ');
}
