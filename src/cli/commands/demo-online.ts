/**
 * `pgconvoy demo --online`: the whole online path on two throwaway local servers, while a
 * built-in application writes. The demo runs pgconvoy's own commands as child processes,
 * exactly as an operator types them (connections through PGCONVOY_SOURCE/PGCONVOY_TARGET,
 * never argv): precheck, start, a few status lines with the lag, start-back, cutover with
 * its writes-blocked time, verify, the state rollback would start from, then teardown and
 * cleanup. At the end it checks by SQL that every insert the application saw commit is on
 * the target.
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { EXIT } from '../../defaults.js';
import { PgconvoyError } from '../../errors.js';
import type { LocalServer } from '../../sandbox/local-server.js';
import { quoteIdent } from '../../util/sql.js';
import { out } from '../output.js';
import { sleep } from '../../util/wait.js';
import { closeQuietly } from '../../connect/session.js';

const APP_TABLE = `
CREATE TABLE public.demo_orders (id bigserial PRIMARY KEY, item text NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());
CREATE ROLE demo_app LOGIN PASSWORD 'demo';
GRANT SELECT, INSERT ON public.demo_orders TO demo_app;
GRANT USAGE ON SEQUENCE public.demo_orders_id_seq TO demo_app;`;

/** The application: one insert every 20 ms on a connection of its own, reconnecting when ended. */
class DemoApp {
  readonly committed: number[] = [];
  refused = 0;
  private stopped = false;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly config: pg.ClientConfig) {}

  start(): void {
    this.done = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  private async run(): Promise<void> {
    let client: pg.Client | undefined;
    let n = 0;
    while (!this.stopped) {
      try {
        if (!client) {
          client = new pg.Client({ ...this.config, connectionTimeoutMillis: 5000, query_timeout: 10_000 });
          client.on('error', () => undefined);
          await client.connect();
        }
        const res = await client.query<{ id: string }>(
          'INSERT INTO public.demo_orders (item) VALUES ($1) RETURNING id',
          [`item ${++n}`],
        );
        this.committed.push(Number(res.rows[0]?.id));
      } catch {
        this.refused++;
        await closeQuietly(client);
        client = undefined;
      }
      await sleep(20);
    }
    await closeQuietly(client);
  }
}

/** Runs `pgconvoy ARGS` as a child, its output indented under the demo's lines. */
function pgconvoy(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    out(`$ pgconvoy ${args.join(' ')}`);
    const child = spawn(process.execPath, [process.argv[1] ?? '', ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const relay = (d: Buffer) => {
      const text = d.toString();
      stdout += text;
      for (const line of text.split('\n').filter((l) => l.length > 0)) out(`    ${line}`);
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

async function must(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const r = await pgconvoy(args, env);
  if (r.code !== 0)
    throw new PgconvoyError(`pgconvoy ${args[0] ?? ''} failed in the demo (exit ${r.code ?? 'signal'})`, {
      code: 'DEMO_MISMATCH',
      exitCode: EXIT.failed,
      hint: 'its output is above; please report this',
    });
  return r.stdout;
}

export async function runOnlineDemo(source: LocalServer, target: LocalServer, db: string): Promise<void> {
  await source.sql(APP_TABLE, db);
  await target.sql(`CREATE DATABASE ${quoteIdent(db)}`);
  await target.sql("CREATE ROLE demo_app LOGIN PASSWORD 'demo'");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PGCONVOY_SOURCE: source.url(db),
    PGCONVOY_TARGET: target.url(db),
  };
  const app = new DemoApp({
    host: '127.0.0.1',
    port: source.port,
    database: db,
    user: 'demo_app',
    password: 'demo',
  });
  out('the application starts writing to the source (an order every 20 ms) …');
  app.start();
  try {
    await must(['precheck'], env);
    await must(['start', '--jobs', '2'], env);
    for (let i = 0; i < 3; i++) {
      await sleep(1000);
      await must(['status'], env);
    }
    await must(['start-back'], env);
    out(`the application has committed ${app.committed.length} orders so far; cutting over …`);
    await must(['cutover'], env);
    await sleep(300);
  } finally {
    await app.stop();
  }
  out(
    `the application committed ${app.committed.length} orders; its writes after the freeze were refused ${app.refused} time(s)`,
  );
  const rows = await target.sql<{ id: string }>('SELECT id::text FROM public.demo_orders', db);
  const onTarget = new Set(rows.map((r) => Number(r.id)));
  const missing = app.committed.filter((id) => !onTarget.has(id));
  if (missing.length > 0)
    throw new PgconvoyError(`${missing.length} committed order(s) are missing on the target`, {
      code: 'DEMO_MISMATCH',
      exitCode: EXIT.mismatch,
      hint: 'please report this',
    });
  out(`every one of the ${app.committed.length} committed orders is on the target`);
  await must(['verify'], env);
  await must(['status'], env);
  out('(pgconvoy rollback would now return to the source without losing writes made on the target)');
  await must(['teardown', '--force'], env);
}
