/**
 * What switch-first cannot keep correct, found before anything is written, per table and
 * with the reason. While rows are moved, a target table is its own rows plus a foreign table
 * (the source's rows) that inherits from it, so:
 *
 * - unique: a unique index of the target sees only the target's rows. A row the application
 *   writes there can duplicate one still on the source. Safe only for a single column filled
 *   from a sequence (serial, identity): prepare sets every sequence past the source's.
 * - triggers: user triggers fire on the source for the application's writes to rows not yet
 *   moved (through postgres_fdw) and on the target for the others; logic that writes
 *   elsewhere (audit, counters) sees two databases. (The move itself runs with
 *   session_replication_role = replica, so moving a row fires nothing.)
 * - foreign-keys: a foreign key on the target would check only the target's rows, so it is
 *   dropped at prepare and put back NOT VALID then VALIDATEd after the move; until then the
 *   application can write rows that break it (listed then).
 *
 * Each is refused unless accepted for the table (`--accept schema.table:risk`, `*` for all
 * tables, `all` for all risks). Partitioned tables, partitions and inheritance trees cannot be
 * shown this way at all and are refused outright.
 */
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { displayName } from '../util/sql.js';
import type { SourceTable } from './source-tables.js';

export const RISKS = ['unique', 'triggers', 'foreign-keys'] as const;
export type Risk = (typeof RISKS)[number];

export interface Finding {
  schema: string;
  table: string;
  risk: Risk | 'unsupported';
  reason: string;
  accepted: boolean;
}

export interface Acceptance {
  table: string;
  risk: Risk | 'all';
}

/** Parses `--accept` values: `schema.table:risk`, `table:risk` (public), `*:risk`. */
export function parseAcceptance(values: readonly string[]): Acceptance[] {
  return values.map((value) => {
    const at = value.lastIndexOf(':');
    const table = at > 0 ? value.slice(0, at) : '';
    const risk = at > 0 ? value.slice(at + 1) : '';
    if (!table || !(risk === 'all' || (RISKS as readonly string[]).includes(risk)))
      throw new PgconvoyError(`--accept "${value}" is not TABLE:RISK`, {
        code: 'BAD_ARGUMENT',
        hint: `write schema.table:RISK (or *:RISK for every table), RISK one of ${RISKS.join(', ')}, all`,
        exitCode: EXIT.usage,
      });
    return {
      table: table.includes('.') || table === '*' ? table : `public.${table}`,
      risk: risk as Risk | 'all',
    };
  });
}

function isAccepted(accepted: readonly Acceptance[], t: SourceTable, risk: Risk): boolean {
  return accepted.some(
    (a) => (a.table === '*' || a.table === `${t.schema}.${t.name}`) && (a.risk === 'all' || a.risk === risk),
  );
}

export function findRisks(tables: readonly SourceTable[], accepted: readonly Acceptance[]): Finding[] {
  const findings: Finding[] = [];
  for (const t of tables) {
    const add = (risk: Risk | 'unsupported', reason: string) =>
      findings.push({
        schema: t.schema,
        table: t.name,
        risk,
        reason,
        accepted: risk !== 'unsupported' && isAccepted(accepted, t, risk),
      });
    if (t.relkind === 'p' || t.partition) {
      add('unsupported', 'partitioned tables and partitions cannot show the source rows through inheritance');
      continue;
    }
    if (t.inheritance) {
      add('unsupported', 'the table is part of an inheritance tree on the source');
      continue;
    }
    for (const u of t.uniqueIndexes.filter((u) => !u.sequenceFilled))
      add(
        'unique',
        `unique index "${u.name}" on (${u.columns.join(', ')}) is checked only among the target's rows during the move: a row written on the target can duplicate one still on the source`,
      );
    if (t.triggers.length > 0)
      add(
        'triggers',
        `trigger(s) ${t.triggers.map((n) => `"${n}"`).join(', ')} fire on the source for writes to rows not yet moved and on the target for the others`,
      );
    for (const fk of t.foreignKeys)
      add(
        'foreign-keys',
        `foreign key "${fk.name}" (${displayName(fk.schema, fk.table)} → ${displayName(fk.refSchema, fk.refTable)}) is not enforced on the target until finish`,
      );
  }
  return findings;
}

/** The refusal for findings not accepted, all of them in one message; undefined when none. */
export function blockingError(findings: readonly Finding[]): PgconvoyError | undefined {
  const blocking = findings.filter((f) => !f.accepted);
  if (blocking.length === 0) return undefined;
  const lines = blocking.map((f) => `  ${displayName(f.schema, f.table)} [${f.risk}]: ${f.reason}`);
  const acceptable = blocking.filter((f) => f.risk !== 'unsupported');
  return new PgconvoyError(
    `switch-first cannot keep ${blocking.length === 1 ? 'this table' : 'these tables'} correct during the move:\n${lines.join('\n')}`,
    {
      code: 'PRECHECK_BLOCKED',
      exitCode: EXIT.blocked,
      hint:
        (acceptable.length > 0
          ? `if the application cannot run into it, accept it per table, e.g. --accept '${acceptable[0]!.schema}.${acceptable[0]!.table}:${acceptable[0]!.risk}'; `
          : '') + 'or migrate with clone (offline) or start (logical replication) instead',
      details: { findings: blocking },
    },
  );
}
