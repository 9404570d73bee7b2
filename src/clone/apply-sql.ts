/**
 * Applying parts of the schema archive to the target exactly once: the SQL of the chosen
 * TOC entries (rendered by pg_restore itself, see schemaSql) and the ledger's "step done" statement run in
 * ONE transaction through psql (`--single-transaction`, ON_ERROR_STOP). Either both commit
 * or neither does, so a killed run never leaves a step half applied or applied but not
 * counted. psql (not our own session) runs it because pg_restore's output carries psql
 * meta-commands (`\restrict`).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { existsSync } from 'node:fs';
import type { ConnectionSpec } from '../connect/resolve.js';
import { describeConnection } from '../connect/resolve.js';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { childConninfo, childEnv } from '../schema/run-tool.js';
import type { PgTools } from '../schema/pg-tools.js';
import { redact } from '../util/redact.js';

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
  applicationName: string;
  signal?: AbortSignal;
}

export async function applySqlAtomically(o: ApplyOptions): Promise<void> {
  const psql = psqlPath(o.tools);
  const args = [
    '-X',
    '-q',
    '-b',
    '-v',
    'ON_ERROR_STOP=1',
    // "ERROR:  42P07: schema … already exists": the SQLSTATE, so failures are classified by code.
    '-v',
    'VERBOSITY=verbose',
    '--single-transaction',
    '-d',
    childConninfo(o.target, o.applicationName),
    '-f',
    '-',
  ];
  const env = childEnv(o.target, o.settings);
  const stderr = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(psql, args, {
      env,
      stdio: ['pipe', 'ignore', 'pipe'],
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const errs: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => errs.push(d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr: redact(Buffer.concat(errs).toString('utf8')) }));
    child.stdin.on('error', () => undefined); // psql may exit early on an error; its stderr says why
    child.stdin.end(`${o.sql}\n${o.ledgerSql}\n`);
  });
  if (stderr.code === 0) return;
  const text = stderr.stderr.trim();
  const failure =
    /ERROR:\s+(?:([0-9A-Z]{5}): )?(.*)/.exec(text) ?? /FATAL:\s+(?:([0-9A-Z]{5}): )?(.*)/.exec(text);
  const sqlstate = failure?.[1];
  const error = failure?.[2] ?? text.split('\n')[0] ?? 'psql failed';
  const statement =
    /STATEMENT:\s+([\s\S]*)$/.exec(text)?.[1] ??
    text
      .split('\n')
      .slice(1)
      .filter((line) => !/^LOCATION:/.test(line))
      .join('\n');
  const missingRole = /role "([^"]+)" does not exist/.exec(error);
  throw new PgconvoyError(
    `applying ${o.what} to the target ${describeConnection(o.target)} failed: ${error}`,
    {
      code: 'SCHEMA_APPLY_FAILED',
      exitCode: EXIT.target,
      hint: missingRole
        ? `create the roles first (pg_dumpall --roles-only | psql), or pass --no-owner --no-privileges; nothing of ${o.what} was applied`
        : `nothing of ${o.what} was applied (one transaction); fix the cause and run the same command again`,
      details: {
        statement: statement.trim().slice(0, 2000),
        psqlOutput: text.slice(0, 4000),
        ...(sqlstate ? { sqlstate } : {}),
      },
    },
  );
}
