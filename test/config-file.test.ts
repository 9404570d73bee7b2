import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { readConfigFile } from '../src/cli/config-file.js';
import { PgconvoyError } from '../src/errors.js';
import { tempDir } from './helpers/servers.js';

function configFile(text: string): string {
  const file = path.join(tempDir('pgconvoy-conf-'), 'pgconvoy.conf');
  writeFileSync(file, text);
  return file;
}

test('config file: url or libpq keywords per server, options per command', () => {
  const file = configFile(`# a comment
[source]
url = postgresql://app:pw@db1:5432/shop

[target]
host = db2
dbname = 'my shop'
password = it's

[clone]
jobs = 8
indexes = before
`);
  const config = readConfigFile(file);
  assert.equal(config.source, 'postgresql://app:pw@db1:5432/shop');
  assert.equal(config.target, "host='db2' dbname='my shop' password='it\\'s'");
  assert.deepEqual(config.options, { 'clone.jobs': 8, 'clone.indexes': 'before' });
});

test('config file errors name the file and the line', () => {
  const cases: [string, RegExp][] = [
    ['[source]\nhots = x\n', /:2: unknown connection parameter "hots"/],
    ['[clone]\n\njobs = many\n', /:3: bad value for "jobs"/],
    ['jobs = 2\n', /:1: "jobs" is outside any section/],
    ['[clone]\njobs\n', /:2: expected "key = value"/],
    ['[clone]\ncolour = blue\n', /:2: unknown option "colour" in \[clone\]/],
  ];
  for (const [text, pattern] of cases) {
    const file = configFile(text);
    assert.throws(
      () => readConfigFile(file),
      (err: unknown) =>
        err instanceof PgconvoyError &&
        err.exitCode === 3 &&
        pattern.test(err.message) &&
        err.message.startsWith(file),
      text,
    );
  }
});
