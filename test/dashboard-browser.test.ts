/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * skipped, saying why, where either is missing (.ci/run installs them).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  tempDir,
  uniqueName,
} from './helpers/servers.js';

const CHROMIUM = '/usr/bin/chromium';

interface Page {
  goto(url: string): Promise<unknown>;
  waitForFunction(fn: string, arg?: unknown, options?: { timeout: number }): Promise<unknown>;
  textContent(selector: string): Promise<string | null>;
  screenshot(o: { path: string; fullPage: boolean }): Promise<unknown>;
}
interface Browser {
  newPage(options?: { bypassCSP?: boolean }): Promise<Page>;
  close(): Promise<void>;
}

async function launch(): Promise<Browser | string> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium)`;
  try {
    const name = 'playwright-core';
    const pw = (await import(name)) as { chromium: { launch(o: object): Promise<Browser> } };
    return await pw.chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  } catch (err) {
    return `playwright-core cannot start chromium: ${(err as Error).message}`;
  }
}

describe('the dashboard page in headless Chromium', async () => {
  const browser = await launch();
  const skip = typeof browser === 'string' ? browser : false;
  let source: LocalServer;
  let target: LocalServer;
  before(async () => {
    if (skip) return;
    [source, target] = await Promise.all([startServer(SYSTEM_MAJOR), startServer(NEW_MAJOR)]);
  });
  after(async () => {
    if (typeof browser !== 'string') await browser.close();
    await Promise.all([source?.destroy(), target?.destroy()]);
  });

  test(
    'clone --http: every table listed, the throughput chart has points, all done at the end',
    { skip },
    async () => {
      const b = browser as Browser;
      const db = await createDatabase(source, uniqueName('dash_ui'));
      await source.sql(
        `CREATE TABLE public.a (id bigint PRIMARY KEY, p text);
       INSERT INTO public.a SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 200000) g;
       CREATE TABLE public.b (id int PRIMARY KEY); INSERT INTO public.b SELECT generate_series(1, 100);
       ANALYZE;`,
        db,
      );
      let url = '';
      let seen = '';
      const run = runCli(
        [
          'clone',
          '--source',
          source.url(db),
          '--target',
          target.url(db),
          '--create-database',
          '--run-dir',
          tempDir('pgconvoy-run-'),
          '--split-tables-larger-than',
          '4MB',
          '--chunk-size',
          '2MB',
          '--jobs',
          '1',
          '--http',
          '0',
        ],
        {
          onSpawn: (c) =>
            c.stderr!.on('data', (d: Buffer) => {
              seen += d.toString();
              url ||= /dashboard: (http:\/\/\S+)/.exec(seen)?.[1] ?? '';
            }),
        },
      );
      while (!url) await new Promise((r) => setTimeout(r, 50));
      // The test polls the page with evaluated expressions, which the page's own CSP (no eval) forbids.
      const page = await b.newPage({ bypassCSP: true });
      await page.goto(url);
      await page.waitForFunction("document.querySelectorAll('[data-table]').length === 2", undefined, {
        timeout: 30_000,
      });
      await page.waitForFunction(
        "Number(document.querySelector('[data-testid=throughput-chart]')?.getAttribute('data-points')) > 0",
        undefined,
        { timeout: 30_000 },
      );
      const out = tempDir('pgconvoy-shot-');
      await page.screenshot({ path: path.join(out, 'clone.png'), fullPage: true });
      const clone = await run;
      assert.equal(clone.code, 0, clone.stderr);
      // After the run: serve shows every table done, with the CLI's row count.
      let serveUrl = '';
      let serveChild: import('node:child_process').ChildProcess | undefined;
      const serve = runCli(['serve', '--target', target.url(db), '--http', '0'], {
        onSpawn: (c) => {
          serveChild = c;
          c.stderr!.on(
            'data',
            (d: Buffer) => (serveUrl ||= /dashboard: (http:\/\/\S+)/.exec(d.toString())?.[1] ?? ''),
          );
        },
      });
      while (!serveUrl) await new Promise((r) => setTimeout(r, 50));
      try {
        await page.goto(serveUrl);
        await page.waitForFunction(
          "document.querySelectorAll('[data-table]').length === 2 && [...document.querySelectorAll('[data-table]')].every((r) => r.dataset.state === 'done')",
          undefined,
          { timeout: 30_000 },
        );
        assert.match((await page.textContent('[data-testid=summary]')) ?? '', /200,100 rows/);
        await page.screenshot({ path: path.join(out, 'done.png'), fullPage: true });
      } finally {
        serveChild?.kill('SIGTERM');
      }
      assert.equal((await serve).code, 0);
    },
  );
});
