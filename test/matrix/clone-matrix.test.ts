/**
 * `npm run test:matrix`: clone + verify from every source major in {13, 14, 15} into every
 * target major in {15, 16, 17, 18} (the README's table), on the compact feature database,
 * each pair also checked independently of pgconvoy (helpers/major-pair.ts). Not part of
 * `npm test`. Majors come from Debian (15) or the npm `pg<major>` aliases (package.json).
 */
import { after, before, describe, test } from 'node:test';
import type { LocalServer } from '../../src/sandbox/local-server.js';
import { cloneAndCompare, featureTemplate } from '../helpers/major-pair.js';
import { startServer, tempDir } from '../helpers/servers.js';

const SOURCES = [13, 14, 15];
const TARGETS = [15, 16, 17, 18];

describe('clone + verify across majors', { timeout: 900_000 }, () => {
  const servers = new Map<number, LocalServer>();
  const templates = new Map<number, string>();
  const dir = tempDir();

  before(async () => {
    const majors = [...new Set([...SOURCES, ...TARGETS])];
    // Two at a time: the machine is shared.
    for (let i = 0; i < majors.length; i += 2) {
      const started = await Promise.all(majors.slice(i, i + 2).map((m) => startServer(m)));
      for (const s of started) servers.set(s.major, s);
    }
    for (const m of SOURCES) templates.set(m, await featureTemplate(servers.get(m)!));
  });
  after(async () => {
    await Promise.all([...servers.values()].map((s) => s.destroy()));
  });

  for (const from of SOURCES) {
    for (const to of TARGETS) {
      test(`${from} → ${to}`, () =>
        cloneAndCompare(servers.get(from)!, servers.get(to)!, templates.get(from)!, dir));
    }
  }
});
