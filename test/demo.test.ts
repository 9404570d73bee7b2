/**
 * The README's first command: `npm run demo` starts two throwaway servers, clones the sample
 * database, proves the copy with verify and removes everything, on its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runCli } from './helpers/servers.js';

test('pgconvoy demo: clone, verify, clean up; exit 0', async () => {
  const res = await runCli(['demo', '--rows', '2000', '--jobs', '2'], { timeoutMs: 180_000 });
  assert.equal(res.code, 0, res.stderr + res.stdout);
  assert.match(res.stdout, /^clone complete: /m);
  assert.match(res.stdout, /^OK: target matches source: 11 table\(s\), no schema differences/m);
  assert.match(res.stdout, /^demo passed: /m);
  const dir = /run files: (\S+)/.exec(res.stdout)?.[1];
  assert.ok(dir, 'the run files are named');
  assert.equal(existsSync(dir), false, 'and removed at the end');
});

test('pgconvoy demo --online: an application writes through start and cutover; nothing it committed is lost', async () => {
  const res = await runCli(['demo', '--online', '--rows', '2000', '--jobs', '2'], { timeoutMs: 240_000 });
  assert.equal(res.code, 0, res.stderr + res.stdout);
  assert.match(res.stdout, /^\$ pgconvoy start /m);
  assert.match(res.stdout, /lag/);
  assert.match(res.stdout, /writes were blocked for /);
  assert.match(res.stdout, /^every one of the \d+ committed orders is on the target$/m);
  assert.match(res.stdout, /OK: target matches source/);
  assert.match(res.stdout, /^demo passed: /m);
  assert.doesNotMatch(res.stdout, /sandbox@/, 'no password in what the demo prints');
});
