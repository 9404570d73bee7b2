/**
 * Applying parts of the schema archive to the target exactly once: the SQL of the chosen
 * TOC entries (rendered by pg_restore itself, see schemaSql) and the ledger's "step done"
 * statement run in ONE transaction through psql (ON_ERROR_STOP). Either both commit or
 * neither does, so a killed run never leaves a step half applied or applied but not counted.
 * psql (not our own session) runs it because pg_restore's output carries psql meta-commands
 * (`\restrict`).
 *
 * The transaction is ours, not psql's: `--single-transaction` commits whatever psql has read
 * when its input ends, so pgconvoy dying mid-script would commit part of a step without its
 * mark (and the rerun would fail on "already exists"). Instead the script is `BEGIN`, the SQL,
 * the mark and a SELECT of a one-time token; only when psql prints that token (everything ran)
 * do we send `COMMIT`. If pgconvoy dies before that, psql meets the end of its input inside the
 * open transaction, exits, and the server rolls it back.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { existsSync } from 'node:fs';
import type { ConnectionSpec } from '../connect/resolve.js';
import { describeConnection } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { childConninfo, childEnv } from '../schema/run-tool.js';
import type { PgTools } from '../schema/pg-tools.js';
import { redact } from '../util/redact.js';
import { lockShortageHint, type LockCapacity } from '../inventory/lock-capacity.js';
import { SQLSTATE } from '../sqlstate.js';

export function psqlPath(tools: PgTools): string {
  const p = path.join(tools.dir, 'psql');
  if (!existsSync(p)) {
    throw new PgconvoyError(`psql is missing beside ${tools.pgDump}`, {
      code: 'NO_PSQL',
      hint: `install the PostgreSQL ${tools.major} client package (it has pg_dump, pg_restore and psql together)`,
      exitCode: EXIT.config,
    });
  }
  return p;
}

export interface ApplyOptions {
  tools: PgTools;
  target: ConnectionSpec;
  sql: string;
  /** Appended inside the same transaction (the ledger mark). */
  ledgerSql: string;
  /** Session settings (PGOPTIONS), e.g. maintenance_work_mem for index builds. */
  settings?: Record<string, string>;
  /** What is applied, for the error message ("the schema", "indexes of sales.orders"). */
  what: string;
  /** Said in the hint after a failure instead of "nothing of <what> was applied" (batches already in). */
  progress?: string;
  applicationName: string;
  /** The target's lock table and how many locks this script was estimated to take (for the 53200 hint). */
  locks?: { capacity: LockCapacity; locks: number };
  signal?: AbortSignal;
}

interface PsqlRun {
  code: number | null;
  stderr: string;
  /** psql printed the token: every statement before COMMIT ran. */
  ready: boolean;
}

/** Runs the script, sending COMMIT only after psql has shown it ran everything before it. */
function runPsqlTransaction(o: ApplyOptions): Promise<PsqlRun> {
  const args = [
    '-X',
    '-q',
    '-b',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-v',
    'VERBOSITY=verbose',
    '-d',
    childConninfo(o.target, o.applicationName),
    '-f',
    '-',
  ];
  const token = `pgconvoy-ready-${randomUUID()}`;
  return new Promise((resolve, reject) => {
    const child = spawn(psqlPath(o.tools), args, {
      // psql passes its own fallback_application_name ("psql"), which outranks ours in the
      // conninfo; PGAPPNAME outranks both, unless the user named the application.
      env: {
        ...childEnv(o.target, o.settings),
        ...(o.target.conninfo.application_name ? {} : { PGAPPNAME: o.applicationName }),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const errs: Buffer[] = [];
    let out = '';
    let ready = false;
    child.stderr.on('data', (d: Buffer) => errs.push(d));
    child.stdout.on('data', (d: Buffer) => {
      if (ready) return;
      // Only the last line can be incomplete; keep it for the next piece.
      out += d.toString('utf8');
      const lines = out.split('\n');
      out = lines.pop() ?? '';
      if (lines.includes(token)) {
        ready = true;
        child.stdin.end('COMMIT;\n');
      }
    });
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, ready, stderr: redact(Buffer.concat(errs).toString('utf8')) }),
    );
    child.stdin.on('error', () => undefined); // psql may exit early on an error; its stderr says why
    child.stdin.write(`BEGIN;\n${o.sql}\n${o.ledgerSql}\nSELECT '${token}';\n`);
  });
}

/** The server's error as psql reports it with VERBOSITY=verbose and --echo-errors:
 *  `psql:<stdin>:3: ERROR:  42P07: relation "a" already exists` / `DETAIL:  …` / `HINT:  …` /
 *  `LOCATION:  …` / `psql:<stdin>:3: STATEMENT:  CREATE TABLE a (x int);` */
export function parsePsqlError(text: string): {
  message: string;
  sqlstate: string | undefined;
  detail: string | undefined;
  serverHint: string | undefined;
  statement: string;
} {
  const error = /ERROR:\s+(?:([0-9A-Z]{5}): )?(.*)/.exec(text);
  return {
    message: error?.[2] ?? text.split('\n')[0] ?? 'psql failed',
    sqlstate: error?.[1],
    detail: /^DETAIL:\s+(.*)$/m.exec(text)?.[1],
    serverHint: /^HINT:\s+(.*)$/m.exec(text)?.[1],
    statement: (/STATEMENT:\s+([\s\S]*)$/.exec(text)?.[1] ?? '').trim(),
  };
}

export async function applySqlAtomically(o: ApplyOptions): Promise<void> {
  const run = await runPsqlTransaction(o);
  if (run.code === 0 && run.ready) return;
  const text = run.stderr.trim();
  const { message, sqlstate, detail, serverHint, statement } = parsePsqlError(text);
  const missingRole = /role "([^"]+)" does not exist/.exec(message);
  const notApplied = o.progress ?? `nothing of ${o.what} was applied (one transaction)`;
  const hint =
    sqlstate === SQLSTATE.outOfMemory
      ? `${lockShortageHint(o.locks)}; ${notApplied}`
      : missingRole
        ? `create the roles first (pg_dumpall --roles-only | psql), or pass --no-owner --no-privileges; ${notApplied}`
        : `${serverHint ? `${serverHint}; ` : ''}${notApplied}; fix the cause and run the same command again`;
  throw new PgconvoyError(
    `applying ${o.what} to the target ${describeConnection(o.target)} failed: ${message}` +
      (detail ? ` (${detail})` : ''),
    {
      code: 'SCHEMA_APPLY_FAILED',
      exitCode: EXIT.target,
      hint,
      details: {
        sqlstate,
        detail,
        serverHint,
        statement: statement.slice(0, 2000),
        psqlOutput: text.slice(0, 4000),
      },
    },
  );
}
