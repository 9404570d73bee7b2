/**
 * The matrix's one pair in `npm test` (the rest: `npm run test:matrix`): 14 into 18, the
 * majors no other test of `npm test` starts.
 */
import { after, before, describe, test } from 'node:test';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { cloneAndCompare, featureTemplate } from './helpers/major-pair.js';
import { startServer, tempDir } from './helpers/servers.js';

describe('clone 14 → 18', { timeout: 180_000 }, () => {
  let source: LocalServer;
  let target: LocalServer;
  let template: string;
  before(async () => {
    [source, target] = await Promise.all([startServer(14), startServer(18)]);
    template = await featureTemplate(source);
  });
  after(async () => Promise.all([source?.destroy(), target?.destroy()]));

  test('the feature database arrives whole: rows, checksums, indexes, constraints, sequences', () =>
    cloneAndCompare(source, target, template, tempDir()));
});
