/**
 * Checking a queue file against the source before anything runs, and turning it into chunks.
 * Every problem is collected and reported at once, each with its line number:
 *  - tables and columns that do not exist; partitioned parents (list their partitions);
 *  - bounds and values that are not valid for the column's type (asked of the server);
 *  - ranges whose low is above their high, V values equal in the column's type (`1`, `01`), see queue-checks.ts;
 *  - ranges of one table that overlap — named with the overlapping values and the fix
 *    (Flexy's own example `1,50000000` + `50000000,` copies the row 50000000 twice);
 *  - a table listed whole and by parts, V and I lines mixed on one table, V lines on two columns;
 *  - gaps: rows no line covers (below, between and above the ranges, NULL keys, values not
 *    listed), found with EXISTS queries; refused unless `allowGaps`.
 * Checked on 13, 15, 17.
 */
import type pg from 'pg';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import type { Inventory, TableInfo } from '../inventory/inventory.js';
import { displayName, qualifiedName, quoteIdent } from '../util/sql.js';
import type { Chunk } from './chunk.js';
import { equalValues, exclusiveIntegerHigh, invertedRanges, LITERAL_TYPE_SQL } from './queue-checks.js';
import { parseQueueFile, type QueueLine } from './queue-file.js';

export interface QueueTablePlan {
  table: TableInfo;
  chunks: Chunk[];
  lineNos: number[];
}

export interface QueuePlan {
  tables: QueueTablePlan[];
  /** Gaps found (with allowGaps: accepted, and said). */
  gaps: string[];
}

const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint']);

interface ColumnType {
  type: string;
  integer: boolean;
}

async function columnType(
  client: pg.Client,
  table: TableInfo,
  column: string,
): Promise<ColumnType | undefined> {
  const res = await client.query<{ type: string }>(
    `SELECT ${LITERAL_TYPE_SQL} AS type FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`,
    [table.oid, column],
  );
  const type = res.rows[0]?.type;
  return type === undefined ? undefined : { type, integer: INTEGER_TYPES.has(type) };
}

/** Whether `value` is valid input for `type`, asked of the server (no SQL built from the value). */
async function validFor(client: pg.Client, type: string, value: string): Promise<boolean> {
  try {
    // `type` comes from format_type() in the catalog, never from the file.
    await client.query(`SELECT $1::text::${type}`, [value]);
    return true;
  } catch {
    return false;
  }
}

interface Problem {
  lineNo: number;
  message: string;
}

/** One table's lines by parts (V or I), with what every rule needs to check them. */
interface TableLines {
  client: pg.Client;
  table: TableInfo;
  /** The table's name as the messages show it. */
  name: string;
  parts: QueueLine[];
  column: string;
  ct: ColumnType;
  /** `ONLY schema.table` and the quoted column, for the gap queries. */
  tbl: string;
  col: string;
  problems: Problem[];
  gaps: string[];
}

export async function resolveQueueFile(
  text: string,
  fileName: string,
  client: pg.Client,
  inventory: Inventory,
  options: { allowGaps: boolean },
): Promise<QueuePlan> {
  const { lines, errors } = parseQueueFile(text);
  const problems: Problem[] = errors.map((e) => ({ lineNo: e.lineNo, message: e.message }));
  const plans: QueueTablePlan[] = [];
  const gaps: string[] = [];
  for (const { table, lines: tl } of groupByTable(lines, inventory, problems).values()) {
    const plan = await planTable(client, table, tl, problems, gaps);
    if (plan) plans.push(plan);
  }
  if (gaps.length > 0 && !options.allowGaps) {
    for (const g of gaps) problems.push({ lineNo: 0, message: g });
  }
  if (problems.length > 0) throw queueFileProblems(fileName, problems);
  return { tables: plans, gaps };
}

/** The lines by table; a line naming no table with rows to copy is a problem. */
function groupByTable(
  lines: QueueLine[],
  inventory: Inventory,
  problems: Problem[],
): Map<string, { table: TableInfo; lines: QueueLine[] }> {
  const tables = new Map(inventory.tables.map((t) => [JSON.stringify([t.schema, t.name]), t]));
  const groups = new Map<string, { table: TableInfo; lines: QueueLine[] }>();
  for (const line of lines) {
    const table = tables.get(JSON.stringify([line.schema, line.table]));
    const name = displayName(line.schema, line.table);
    if (!table) {
      problems.push({ lineNo: line.lineNo, message: `table ${name} does not exist on the source` });
      continue;
    }
    if (table.kind === 'partitioned') {
      problems.push({
        lineNo: line.lineNo,
        message: `${name} is a partitioned table: list its partitions instead`,
      });
      continue;
    }
    if (table.kind !== 'table') {
      problems.push({
        lineNo: line.lineNo,
        message: `${name} is a ${table.kind}, not a table with rows to copy`,
      });
      continue;
    }
    const key = JSON.stringify([line.schema, line.table]);
    const group = groups.get(key) ?? { table, lines: [] };
    group.lines.push(line);
    groups.set(key, group);
  }
  return groups;
}

/** One table's plan, or undefined when its lines break a rule (said in `problems`). */
async function planTable(
  client: pg.Client,
  table: TableInfo,
  tl: QueueLine[],
  problems: Problem[],
  gaps: string[],
): Promise<QueueTablePlan | undefined> {
  const name = displayName(table.schema, table.name);
  const whole = tl.filter((l) => !l.op);
  const parts = tl.filter((l) => l.op);
  if (whole.length > 0 && (whole.length > 1 || parts.length > 0)) {
    for (const l of whole.slice(parts.length > 0 ? 0 : 1)) {
      problems.push({
        lineNo: l.lineNo,
        message: `${name} is listed whole here and again on line(s) ${tl
          .filter((x) => x !== l)
          .map((x) => x.lineNo)
          .join(', ')}: it would be copied twice`,
      });
    }
    return undefined;
  }
  if (whole.length === 1) return { table, chunks: [{ kind: 'whole' }], lineNos: [whole[0]!.lineNo] };
  const columns = new Set(parts.map((l) => l.column));
  const ops = new Set(parts.map((l) => l.op));
  if (columns.size > 1 || ops.size > 1) {
    problems.push({
      lineNo: parts[1]!.lineNo,
      message: `the lines of ${name} must all use one column and one operator (lines ${parts.map((l) => l.lineNo).join(', ')}); mixed ones could overlap`,
    });
    return undefined;
  }
  const column = parts[0]!.column!;
  const ct = await columnType(client, table, column);
  if (!ct) {
    for (const l of parts)
      problems.push({ lineNo: l.lineNo, message: `column "${column}" does not exist in ${name}` });
    return undefined;
  }
  const t: TableLines = {
    client,
    table,
    name,
    parts,
    column,
    ct,
    tbl: `ONLY ${qualifiedName(table.schema, table.name)}`,
    col: quoteIdent(column),
    problems,
    gaps,
  };
  if (!(await valuesValid(t))) return undefined;
  return parts[0]!.op === 'V' ? planValues(t) : planRanges(t);
}

/** Every bound and value is valid input for the column's type (integers written as integers). */
async function valuesValid(t: TableLines): Promise<boolean> {
  const { client, ct } = t;
  let valid = true;
  for (const l of t.parts) {
    for (const v of [l.low, l.high, l.value]) {
      if (v === undefined) continue;
      const ok = ct.integer
        ? /^[+-]?\d+$/.test(v) && (await validFor(client, ct.type, v))
        : await validFor(client, ct.type, v);
      if (!ok) {
        valid = false;
        t.problems.push({
          lineNo: l.lineNo,
          message: `"${v}" is not a valid ${ct.type} for column "${t.column}" of ${t.name}`,
        });
      }
    }
  }
  return valid;
}

/** V lines: no value twice; rows with none of the values (or NULL) are a gap. */
async function planValues(t: TableLines): Promise<QueueTablePlan> {
  const { client, ct, name, column, parts, tbl, col } = t;
  // Equal in the column's type, not as text: `1` and `01` select the same rows.
  for (const { earlier, later } of await equalValues(client, ct.type, parts))
    t.problems.push({
      lineNo: later.lineNo,
      message: `the value "${later.value}" of ${name} equals the value "${earlier.value}" of line ${earlier.lineNo}: those rows would be copied twice`,
    });
  const values = parts.map((l) => l.value!);
  const missing = await client.query<{ found: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${tbl} WHERE ${col} IS NULL OR ${col} <> ALL ($1::text[]::${ct.type}[])) AS found`,
    [values],
  );
  if (missing.rows[0]?.found)
    t.gaps.push(`${name}: rows whose ${column} is none of the listed values (or NULL) are in no line`);
  return {
    table: t.table,
    chunks: values.map((value) => ({ kind: 'value', column, columnType: ct.type, value })),
    lineNos: parts.map((l) => l.lineNo),
  };
}

/** I lines: no empty range, no overlap; rows outside every range are a gap. */
async function planRanges(t: TableLines): Promise<QueueTablePlan | undefined> {
  const { client, ct, name, parts } = t;
  const inverted = await invertedRanges(client, ct.type, parts);
  for (const l of inverted)
    t.problems.push({
      lineNo: l.lineNo,
      message: `the range ${l.low},${l.high} of ${name} is empty: its low is above its high (write low,high with low <= high)`,
    });
  if (inverted.length > 0) return undefined;
  // I ranges: sort and compare on the server, in the column's own type.
  const ranges = await client.query<{ i: number; lo: string; hi: string | null }>(
    `SELECT r.i, r.lo, r.hi FROM ROWS FROM (pg_catalog.unnest($1::int[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS r(i, lo, hi) ORDER BY r.lo::${ct.type}, r.i`,
    [parts.map((_, i) => i), parts.map((l) => l.low), parts.map((l) => l.high ?? null)],
  );
  if (await rangesOverlap(t)) return undefined;
  const sorted = ranges.rows.map((r) => parts[r.i]!);
  await rangeGaps(t, sorted);
  return {
    table: t.table,
    chunks: sorted.map((l) => rangeChunk(t, l)),
    lineNos: sorted.map((l) => l.lineNo),
  };
}

/** Overlapping ranges, each named with the values both copy and the fix. */
async function rangesOverlap(t: TableLines): Promise<boolean> {
  const { client, ct, name, parts, column } = t;
  const overlaps = await client.query<{ a: number; b: number; from: string; to: string | null }>(
    `WITH r(i, lo, hi) AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::int[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])))
       SELECT a.i AS a, b.i AS b,
              GREATEST(a.lo::${ct.type}, b.lo::${ct.type})::text AS from,
              LEAST(a.hi::${ct.type}, b.hi::${ct.type})::text AS to
       FROM r a JOIN r b ON a.i < b.i
       WHERE (b.hi IS NULL OR a.lo::${ct.type} <= b.hi::${ct.type}) AND (a.hi IS NULL OR b.lo::${ct.type} <= a.hi::${ct.type})`,
    [parts.map((_, i) => i), parts.map((l) => l.low), parts.map((l) => l.high ?? null)],
  );
  for (const o of overlaps.rows) {
    const [la, lb] = [parts[o.a]!, parts[o.b]!];
    const where = o.to === o.from ? `at ${o.from}` : `from ${o.from} to ${o.to ?? 'the end'}`;
    const [first, second] = lowFirst(la.low!, lb.low!, ct.integer) ? [la, lb] : [lb, la];
    const fix =
      ct.integer && first.high !== undefined
        ? `bounds are inclusive on both ends: start line ${second.lineNo} at ${(BigInt(first.high) + 1n).toString()} (${first.high}+1), or end line ${first.lineNo} at ${(BigInt(second.low!) - 1n).toString()}`
        : 'bounds are inclusive on both ends: make one range end before the other starts';
    t.problems.push({
      lineNo: lb.lineNo,
      message: `the range of line ${lb.lineNo} overlaps the range of line ${la.lineNo} ${where} in ${name}.${quoteIdent(column)}: those rows would be copied twice; ${fix}`,
    });
  }
  return overlaps.rows.length > 0;
}

/** Rows below, between and above the sorted ranges, and NULL keys, found with EXISTS queries. */
async function rangeGaps(t: TableLines, sorted: QueueLine[]): Promise<void> {
  const { client, ct, name, column, tbl, col, gaps } = t;
  const exists = async (cond: string, values: string[]) =>
    (
      await client.query<{ found: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${tbl} WHERE ${cond}) AS found`,
        values,
      )
    ).rows[0]?.found ?? false;
  const first = sorted[0]!;
  if (await exists(`${col} < $1::text::${ct.type}`, [first.low!]))
    gaps.push(`${name}: rows with ${column} < ${first.low} are in no line`);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (
      a.high !== undefined &&
      (await exists(`${col} > $1::text::${ct.type} AND ${col} < $2::text::${ct.type}`, [a.high, b.low!]))
    ) {
      gaps.push(
        `${name}: rows with ${column} between ${a.high} and ${b.low} (exclusive, lines ${a.lineNo} and ${b.lineNo}) are in no line`,
      );
    }
  }
  const last = sorted.at(-1)!;
  if (last.high !== undefined && (await exists(`${col} > $1::text::${ct.type}`, [last.high])))
    gaps.push(`${name}: rows with ${column} > ${last.high} are in no line`);
  if (await exists(`${col} IS NULL`, [])) gaps.push(`${name}: rows with a NULL ${column} are in no line`);
}

function rangeChunk(t: TableLines, l: QueueLine): Chunk {
  const { ct, column } = t;
  return ct.integer
    ? {
        kind: 'key-range',
        column,
        columnType: ct.type,
        low: l.low!,
        // Inclusive high → exclusive high + 1 (no bound when high is the type's maximum).
        ...(l.high !== undefined && exclusiveIntegerHigh(ct.type, l.high) !== undefined
          ? { high: exclusiveIntegerHigh(ct.type, l.high) }
          : {}),
        includeNulls: false,
      }
    : {
        kind: 'key-range',
        column,
        columnType: ct.type,
        low: l.low!,
        ...(l.high !== undefined ? { high: l.high, highInclusive: true } : {}),
        includeNulls: false,
      };
}

function queueFileProblems(fileName: string, problems: Problem[]): PgconvoyError {
  problems.sort((a, b) => a.lineNo - b.lineNo);
  const list = problems.map((p) => `  ${fileName}${p.lineNo ? `:${p.lineNo}` : ''}: ${p.message}`).join('\n');
  const onlyGaps = problems.every((p) => p.lineNo === 0);
  return new PgconvoyError(`the queue file has ${problems.length} problem(s); nothing was copied:\n${list}`, {
    code: 'BAD_QUEUE_FILE',
    exitCode: EXIT.config,
    hint: onlyGaps
      ? 'cover those rows with more lines, or pass --allow-gaps to leave them out on purpose'
      : 'fix the lines named above and run again',
  });
}

/** Whether a's low sorts before b's (integers exactly; other types keep file order). */
function lowFirst(a: string, b: string, integer: boolean): boolean {
  return integer ? BigInt(a) <= BigInt(b) : true;
}
