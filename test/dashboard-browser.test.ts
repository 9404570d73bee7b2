/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * skipped, saying why, where either is missing (.ci/run installs them). A clone watched while
 * it runs and after it; an online migration's status after `start` (the lag chart); a failed
 * job (its error and hint). PGCONVOY_DOCS_SCREENSHOT=FILE saves the running clone's page
 * there (how docs/dashboard.png is made).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import {
  NEW_MAJOR,
  SYSTEM_MAJOR,
  createDatabase,
  runCli,
  startServer,
  type CliResult,
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

/**
 * Runs `pgconvoy ARGS --http 0`, hands `look` the page's address once it is printed, and
 * stops a command that serves until stopped (serve) after it. Returns how the command ended.
 */
async function withDashboard(
  args: string[],
  look: (url: string) => Promise<void>,
  stopAfter = false,
): Promise<CliResult> {
  let url = '';
  let seen = '';
  let child: import('node:child_process').ChildProcess | undefined;
  const run = runCli([...args, '--http', '0'], {
    onSpawn: (c) => {
      child = c;
      c.stderr!.on('data', (d: Buffer) => {
        seen += d.toString();
        url ||= /dashboard: (http:\/\/\S+)/.exec(seen)?.[1] ?? '';
      });
    },
  });
  let ended = false;
  void run.then(() => (ended = true));
  while (!url && !ended) await new Promise((r) => setTimeout(r, 50));
  assert.ok(url, `the dashboard's address was printed: ${seen}`);
  try {
    await look(url);
  } finally {
    if (stopAfter) child?.kill('SIGTERM');
  }
  return run;
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
      const out = tempDir('pgconvoy-shot-');
      // The test polls the page with evaluated expressions, which the page's own CSP (no eval) forbids.
      const page = await b.newPage({ bypassCSP: true });
      const clone = await withDashboard(
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
        ],
        async (url) => {
          await page.goto(url);
          await page.waitForFunction("document.querySelectorAll('[data-table]').length === 2", undefined, {
            timeout: 30_000,
          });
          await page.waitForFunction(
            "Number(document.querySelector('[data-testid=throughput-chart]')?.getAttribute('data-points')) > 0",
            undefined,
            { timeout: 30_000 },
          );
          await page.screenshot({ path: path.join(out, 'clone.png'), fullPage: true });
          const docs = process.env.PGCONVOY_DOCS_SCREENSHOT;
          if (docs) {
            // For the README: a third of the way, with rates on the chart.
            await page.waitForFunction(
              "parseInt(document.querySelector('[data-testid=summary]')?.textContent ?? '0') >= 30",
              undefined,
              { timeout: 60_000 },
            );
            await page.screenshot({ path: docs, fullPage: true });
          }
        },
      );
      assert.equal(clone.code, 0, clone.stderr);
      // After the run: serve shows every table done, with the CLI's row count.
      const serve = await withDashboard(
        ['serve', '--target', target.url(db)],
        async (url) => {
          await page.goto(url);
          await page.waitForFunction(
            "document.querySelectorAll('[data-table]').length === 2 && [...document.querySelectorAll('[data-table]')].every((r) => r.dataset.state === 'done')",
            undefined,
            { timeout: 30_000 },
          );
          assert.match((await page.textContent('[data-testid=summary]')) ?? '', /200,100 rows/);
          await page.screenshot({ path: path.join(out, 'done.png'), fullPage: true });
        },
        true,
      );
      assert.equal(serve.code, 0);
    },
  );
  test(
    'start, then serve --source (what status shows): replicating, the lag chart has points',
    { skip },
    async () => {
      const b = browser as Browser;
      const db = await createDatabase(source, uniqueName('dash_online'));
      await createDatabase(target, db);
      await source.sql(
        `CREATE TABLE public.o (id int PRIMARY KEY, v text);
         INSERT INTO public.o SELECT g, md5(g::text) FROM generate_series(1, 5000) g;`,
        db,
      );
      const args = ['--source', source.url(db), '--target', target.url(db)];
      const start = await runCli(['start', ...args, '--run-dir', tempDir('pgconvoy-run-')]);
      assert.equal(start.code, 0, start.stdout + start.stderr);
      await source.sql("INSERT INTO public.o SELECT g, 'after start' FROM generate_series(5001, 6000) g", db);
      const page = await b.newPage({ bypassCSP: true });
      const serve = await withDashboard(
        ['serve', ...args],
        async (url) => {
          await page.goto(url);
          // The monitor reads the lag every 2 s: two looks make a line.
          await page.waitForFunction(
            "Number(document.querySelector('[data-testid=lag-chart]')?.getAttribute('data-points')) >= 2",
            undefined,
            { timeout: 30_000 },
          );
          assert.match((await page.textContent('[data-testid=replication]')) ?? '', /phase replicating/);
          assert.match((await page.textContent('[data-testid=lag]')) ?? '', /^lag .*; WAL kept by the slot /);
          assert.match((await page.textContent('[data-testid=phase]')) ?? '', /replicating/);
          await page.screenshot({ path: path.join(tempDir('pgconvoy-shot-'), 'online.png'), fullPage: true });
        },
        true,
      );
      assert.equal(serve.code, 0);
      const teardown = await runCli(['teardown', ...args, '--run-dir', tempDir('pgconvoy-run-')]);
      assert.equal(teardown.code, 0, teardown.stderr);
    },
  );

  test(
    'worker --http: Workers now lists the job another process copies (its COPY held by a lock on the target)',
    { skip },
    async () => {
      const b = browser as Browser;
      const db = await createDatabase(source, uniqueName('dash_held'));
      await createDatabase(target, db);
      await source.sql(
        'CREATE TABLE public.held (id int PRIMARY KEY); INSERT INTO public.held SELECT generate_series(1, 1000)',
        db,
      );
      await target.sql('CREATE TABLE public.held (id int PRIMARY KEY)', db);
      const holder = new pg.Client({ connectionString: target.url(db) });
      await holder.connect();
      await holder.query('BEGIN; LOCK TABLE public.held IN SHARE MODE');
      const conn = ['--source', source.url(db), '--target', target.url(db)];
      const clone = runCli([
        'clone',
        ...conn,
        '--schema',
        'skip',
        '--jobs',
        '1',
        '--run-dir',
        tempDir('pgconvoy-run-'),
      ]);
      try {
        // The clone's worker has claimed the only job: its COPY waits for the lock.
        const deadline = Date.now() + 60_000;
        while (
          (await target.sql("SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory'", db)).length === 0
        ) {
          assert.ok(Date.now() < deadline, 'the clone claimed its job');
          await new Promise((r) => setTimeout(r, 100));
        }
        const page = await b.newPage({ bypassCSP: true });
        // Another process' dashboard: its own worker has nothing to claim and waits.
        const worker = await withDashboard(['worker', ...conn, '--jobs', '1'], async (url) => {
          await page.goto(url);
          await page
            .waitForFunction(
              "(document.querySelector('[data-testid=workers]')?.textContent ?? '').includes('public.held whole table')",
              undefined,
              { timeout: 30_000 },
            )
            .catch(async (err: Error) => {
              throw new Error(`${err.message}: ${await page.textContent('[data-testid=workers]')}`);
            });
          await holder.query('COMMIT');
        });
        assert.equal(worker.code, 0, worker.stderr);
      } finally {
        await holder.end();
      }
      const done = await clone;
      assert.equal(done.code, 0, done.stderr);
    },
  );

  test('a failed job: its error and its hint are on the page', { skip }, async () => {
    const b = browser as Browser;
    const db = await createDatabase(source, uniqueName('dash_failed'));
    await createDatabase(target, db);
    await source.sql(
      'CREATE TABLE public.c (id int PRIMARY KEY, v int); INSERT INTO public.c SELECT g, g FROM generate_series(1, 100) g',
      db,
    );
    // The target was made by hand, with a rule the source's rows break.
    await target.sql('CREATE TABLE public.c (id int PRIMARY KEY, v int CHECK (v <= 50))', db);
    const clone = await runCli([
      'clone',
      '--source',
      source.url(db),
      '--target',
      target.url(db),
      '--schema',
      'skip',
      '--run-dir',
      tempDir('pgconvoy-run-'),
    ]);
    assert.equal(clone.code, 1, clone.stdout + clone.stderr);
    const page = await b.newPage({ bypassCSP: true });
    await withDashboard(
      ['serve', '--target', target.url(db)],
      async (url) => {
        await page.goto(url);
        await page.waitForFunction("document.querySelector('[data-testid=errors]') !== null", undefined, {
          timeout: 30_000,
        });
        const errors = (await page.textContent('[data-testid=errors]')) ?? '';
        assert.match(
          errors,
          /public\.c .*failed after 1 attempt\(s\): .*violates check constraint "c_v_check"/,
        );
        assert.match(
          errors,
          /hint: fix the cause, then run the same command again: failed jobs are retried, done ones are kept/,
        );
        assert.match((await page.textContent('[data-testid=summary]')) ?? '', /1 failed/);
        await page.screenshot({ path: path.join(tempDir('pgconvoy-shot-'), 'failed.png'), fullPage: true });
      },
      true,
    );
  });
});
