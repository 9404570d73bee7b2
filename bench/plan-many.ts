/**
 * `node dist/bench/plan-many.js [N]`: how long `clone --plan-only --schema skip` takes, and
 * how much memory it needs, on a database of N empty tables (default 50,000; a schema per 25,
 * each with a primary key). Both servers get the same tables; the source's lock table is
 * raised so that one transaction may read every table's size (as pg_dump would need). The
 * figures are the plan phase's own time, the whole command's wall-clock time and its peak RSS
 * (getrusage of the pgconvoy process). Issue 16: the plan of 50,000 tables in seconds, memory flat.
 *
 * `node dist/bench/plan-many.js N --default-locks`: the source keeps the sandbox's lock table
 * (max_locks_per_transaction 64); `clone --create-database` must refuse before it writes
 * anything, naming the setting and the value it needs. Prints the refusal and what the target holds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LocalServer, SANDBOX_PASSWORD, SANDBOX_SUPERUSER } from '../src/sandbox/local-server.js';
import { killLiveChildren, runMeasured, rusageHookPath, RUSAGE_ENV } from './measure.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliPath = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const TABLES_PER_SCHEMA = 25;
/** Schemas created per statement (each its own transaction). */
const SCHEMAS_PER_STATEMENT = 20;
const log = (line: string) => process.stderr.write(`plan-many: ${line}\n`);

function schemasSql(first: number, count: number): string {
  const lines: string[] = [];
  for (let s = first; s < first + count; s++) {
    lines.push(`CREATE SCHEMA tenant_${s};`);
    for (let t = 1; t <= TABLES_PER_SCHEMA; t++)
      lines.push(`CREATE TABLE tenant_${s}.t${t} (id int PRIMARY KEY, t1_id int, note text);`);
  }
  return lines.join('\n');
}

async function createTables(servers: LocalServer[], tables: number): Promise<void> {
  const schemas = Math.ceil(tables / TABLES_PER_SCHEMA);
  for (const server of servers) await server.sql('CREATE DATABASE plan_many');
  for (let s = 1; s <= schemas; s += SCHEMAS_PER_STATEMENT) {
    const sql = schemasSql(s, Math.min(SCHEMAS_PER_STATEMENT, schemas - s + 1));
    await Promise.all(servers.map((server) => server.sql(sql, 'plan_many')));
    if ((s - 1) % 200 === 0) log(`${(s - 1) * TABLES_PER_SCHEMA} tables created`);
  }
}

const url = (server: LocalServer) => `postgresql://${SANDBOX_SUPERUSER}@127.0.0.1:${server.port}/plan_many`;

/** clone on a source whose lock table is too small: the refusal, and an untouched target. */
async function refusal(source: LocalServer, target: LocalServer, workDir: string): Promise<void> {
  const args = ['clone', '--source', url(source), '--target', url(target), '--create-database'];
  args.push('--run-dir', path.join(workDir, 'run'));
  const run = await runMeasured(process.execPath, [cliPath, ...args], {
    env: { ...(process.env as Record<string, string>), PGPASSWORD: SANDBOX_PASSWORD },
  });
  const databases = await target.sql<{ n: string }>(
    "SELECT count(*)::text AS n FROM pg_database WHERE datname = 'plan_many'",
  );
  process.stdout.write(
    `clone exit ${String(run.code)} after ${run.seconds.toFixed(1)} s; target database created: ${databases[0]?.n === '1' ? 'yes' : 'no'}\n${run.stderr}\n`,
  );
}

async function main(): Promise<void> {
  const tables = Number(process.argv[2] ?? 50_000);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pgconvoy-plan-many-'));
  const servers: LocalServer[] = [];
  try {
    const defaultLocks = process.argv.includes('--default-locks');
    const source = await LocalServer.start({
      major: 15,
      label: 'plan-source',
      settings: defaultLocks ? {} : { max_locks_per_transaction: String(Math.ceil(tables / 50)) },
    });
    servers.push(source);
    const target = await LocalServer.start({ major: 15, label: 'plan-target' });
    servers.push(target);
    log(`creating ${tables} tables on ${defaultLocks ? 'the source' : 'both servers'} …`);
    await createTables(defaultLocks ? [source] : servers, tables);
    if (defaultLocks) {
      await refusal(source, target, workDir);
      return;
    }
    const rusageFile = path.join(workDir, 'rusage.json');
    const args = ['clone', '--source', url(source), '--target', url(target), '--schema', 'skip'];
    args.push('--plan-only', '--run-dir', path.join(workDir, 'run'), '--json', '--quiet');
    const run = await runMeasured(
      process.execPath,
      ['--import', pathToFileURL(rusageHookPath).href, cliPath, ...args],
      {
        env: { ...process.env, PGPASSWORD: SANDBOX_PASSWORD, [RUSAGE_ENV]: rusageFile },
        poll: true,
        rusageFile,
      },
    );
    if (run.code !== 0) throw new Error(`clone --plan-only failed (exit ${run.code}): ${run.stderr}`);
    const summary = JSON.parse(run.stdout) as { phases?: { phase: string; seconds: number }[] };
    const phases = (summary.phases ?? []).map((p) => `${p.phase} ${p.seconds.toFixed(2)} s`).join(', ');
    const rss = run.resources ? `${(run.resources.peakRssKb / 1024).toFixed(0)} MB` : 'unknown';
    const cpu = run.resources ? `${run.resources.cpuSeconds.toFixed(1)} s` : 'unknown';
    process.stdout.write(
      `${tables} tables: clone --plan-only --schema skip ${run.seconds.toFixed(1)} s wall (phases: ${phases}); ` +
        `pgconvoy peak RSS ${rss}, CPU ${cpu}; load average ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}\n`,
    );
  } finally {
    killLiveChildren();
    for (const s of servers) await s.destroy();
    rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`plan-many: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
