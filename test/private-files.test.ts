/**
 * Secrets and files (online-trust issue, item 8): the run directory and what pgconvoy writes
 * there are private to its user, and an sslpassword never reaches a child's argv: it goes
 * through a private service file that the real libpq (psql here) reads.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { resolveConnection } from '../src/connect/resolve.js';
import { RunFiles } from '../src/clone/run-files.js';
import { childConninfo, childEnv } from '../src/schema/run-tool.js';
import { SYSTEM_MAJOR, startServer, tempDir } from './helpers/servers.js';

let server: LocalServer;
before(async () => {
  server = await startServer(SYSTEM_MAJOR);
});
after(async () => server?.destroy());

const mode = (p: string) => statSync(p).mode & 0o777;

test('the run directory is 0700 and its files 0600, even when it existed with wider rights', () => {
  const dir = path.join(tempDir(), 'run');
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  const files = new RunFiles(dir);
  files.log('a line');
  files.writeStatus([]);
  assert.equal(mode(dir), 0o700);
  assert.equal(mode(path.join(dir, 'logs')), 0o700);
  assert.equal(mode(files.logFile), 0o600);
  assert.equal(mode(files.statusFile), 0o600);
});

test("an sslpassword is not in a child's argv; libpq reads it from a private service file", () => {
  const spec = resolveConnection(`${server.url()}?sslmode=disable&sslpassword=s3cr%20et`, 'source', {});
  const conninfo = childConninfo(spec, 'pgconvoy test');
  assert.doesNotMatch(conninfo, /s3cr/, 'no sslpassword in --dbname');
  assert.doesNotMatch(conninfo, /sandbox/, 'no password in --dbname');
  const env = childEnv(spec);
  const file = env.PGSERVICEFILE;
  assert.ok(file, 'a service file for the child');
  assert.equal(mode(file), 0o600);
  assert.equal(mode(path.dirname(file)), 0o700);
  assert.match(readFileSync(file, 'utf8'), /^sslpassword=s3cr et$/m);
  // The real libpq finds the service the conninfo names (it fails on an unknown one).
  const psql = spawnSync('/usr/lib/postgresql/15/bin/psql', ['-XAtc', 'SELECT 1', `--dbname=${conninfo}`], {
    env: { ...env, PATH: process.env.PATH ?? '' },
    encoding: 'utf8',
  });
  assert.equal(psql.status, 0, psql.stderr);
  assert.equal(psql.stdout.trim(), '1');
});
