import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { tempDir } from './helpers/servers.js';
import path from 'node:path';
import { parseConninfo, formatConninfo } from '../src/connect/conninfo.js';
import { describeConnection, resolveConnection } from '../src/connect/resolve.js';
import { quoteIdent, quoteLiteral, displayName } from '../src/util/sql.js';
import { redact, registerSecret } from '../src/util/redact.js';
import { PgconvoyError } from '../src/errors.js';

test('URIs: user, percent-encoded password, host, port, database, parameters', () => {
  const info = parseConninfo(
    'postgresql://app%40corp:p%3Ass%2Fw@db.example.com:6432/my%20db?sslmode=require&application_name=x',
  );
  assert.deepEqual(info, {
    user: 'app@corp',
    password: 'p:ss/w',
    host: 'db.example.com',
    port: '6432',
    dbname: 'my db',
    sslmode: 'require',
    application_name: 'x',
  });
  assert.deepEqual(parseConninfo('postgres://[::1]:5433/d'), { host: '::1', port: '5433', dbname: 'd' });
});

test('key=value strings: quoting and escapes as libpq does them', () => {
  assert.deepEqual(parseConninfo("host=h port = 5 dbname='my db' password='it\\'s' user=a\\ b"), {
    host: 'h',
    port: '5',
    dbname: 'my db',
    password: "it's",
    user: 'a b',
  });
  assert.throws(() => parseConninfo("dbname='open"), /unterminated quote/);
  assert.throws(() => parseConninfo('hots=x'), /unknown connection parameter "hots"/);
});

test('a malformed string never echoes the password', () => {
  try {
    parseConninfo('password=hunter22 !!');
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof PgconvoyError);
    assert.doesNotMatch(err.message, /hunter22/);
  }
});

test('order of precedence: string, then service file, then environment', () => {
  const dir = tempDir('pgconvoy-svc-');
  const svc = path.join(dir, 'pg_service.conf');
  writeFileSync(svc, '[shop]\nhost=svc-host\nport=7000\ndbname=svcdb\n');
  const env = { PGSERVICEFILE: svc, PGHOST: 'env-host', PGUSER: 'env-user', PGPORT: '9', HOME: dir };
  const spec = resolveConnection('service=shop port=7777', 'source', env);
  assert.equal(spec.host, 'svc-host');
  assert.equal(spec.port, 7777);
  assert.equal(spec.database, 'svcdb');
  assert.equal(spec.user, 'env-user');
  assert.throws(
    () => resolveConnection('service=nope', 'source', env),
    /service "nope", which no service file defines/,
  );
});

test('password file: matched by host, port, database, user; ignored when others can read it', () => {
  const dir = tempDir('pgconvoy-pass-');
  const passfile = path.join(dir, 'pgpass');
  writeFileSync(
    passfile,
    '# comment\nother:5432:*:*:nope\ndb1:5432:shop:app:s3cr\\:et\n*:*:*:app:fallback\n',
  );
  chmodSync(passfile, 0o600);
  const env = { PGPASSFILE: passfile, HOME: dir };
  const a = resolveConnection('host=db1 dbname=shop user=app', 'target', env);
  assert.equal(a.password, 's3cr:et');
  assert.equal(a.passwordSource, 'passfile');
  assert.equal(resolveConnection('host=db2 dbname=x user=app', 'target', env).password, 'fallback');
  assert.equal(
    resolveConnection('host=db1 dbname=shop user=app password=given', 'target', env).password,
    'given',
  );
  assert.equal(
    resolveConnection('host=db1 dbname=shop user=app', 'target', { ...env, PGPASSWORD: 'envpw' }).password,
    'envpw',
  );
  chmodSync(passfile, 0o644);
  assert.equal(resolveConnection('host=db1 dbname=shop user=app', 'target', env).password, undefined);
});

test('describeConnection is user@host:port/db and formatConninfo drops the password', () => {
  const spec = resolveConnection('postgresql://u:secret@10.0.0.1:5555/app', 'source', {});
  assert.equal(describeConnection(spec), 'u@10.0.0.1:5555/app');
  assert.doesNotMatch(formatConninfo(spec.conninfo), /secret/);
  assert.match(formatConninfo(spec.conninfo), /host='10.0.0.1'/);
});

test('quoting identifiers and literals', () => {
  assert.equal(quoteIdent('Order Items'), '"Order Items"');
  assert.equal(quoteIdent('a"b'), '"a""b"');
  assert.equal(quoteLiteral("O'Brien"), "'O''Brien'");
  assert.equal(quoteLiteral('a\\b'), " E'a\\\\b'");
  assert.equal(displayName('public', 'select'), 'public."select"');
  assert.equal(displayName('public', 'Order Items'), 'public."Order Items"');
  assert.equal(displayName('public', 'orders'), 'public.orders');
});

test('redact removes registered secrets and inline URI passwords', () => {
  registerSecret('topsecret');
  assert.equal(redact('pw topsecret here'), 'pw ******** here');
  assert.equal(redact('postgresql://u:other@h/d'), 'postgresql://u:********@h/d');
});
