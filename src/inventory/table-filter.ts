/**
 * pg_dump's object filters, written once for every command: `--schema`/`-n`,
 * `--exclude-schema`/`-N`, `--table`/`-t`, `--exclude-table`/`-T`, `--exclude-table-data` and
 * `--filter FILE` (pg_dump 17's format). Patterns follow pg_dump's rules (psql's
 * processSQLNamePattern): `*` and `?` are wildcards, unquoted letters fold to lower case, a
 * double-quoted part is taken literally, `schema.table` qualifies. A bare table pattern matches
 * in `public`, as pg_dump's with the default search_path. The patterns are matched here
 * against the source's catalog, so clone's data, pg_dump's schema (given the exact names this
 * module resolved), verify and the publication of `start` all see one and the same set.
 */
import { readFileSync } from 'node:fs';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { quoteIdent, splitIdentifiers } from '../util/sql.js';
import type { Inventory, TableInfo } from './inventory.js';

export interface NamePattern {
  /** What the user wrote, for error messages. */
  text: string;
  /** undefined: a bare name (tables: `public`; schemas: the whole pattern is the schema). */
  schema: RegExp | undefined;
  name: RegExp;
}

export interface TableFilter {
  includeSchemas: NamePattern[];
  excludeSchemas: NamePattern[];
  includeTables: NamePattern[];
  excludeTables: NamePattern[];
  excludeTableData: NamePattern[];
}

export interface FilterFlags {
  schema?: string[];
  excludeSchema?: string[];
  table?: string[];
  excludeTable?: string[];
  excludeTableData?: string[];
  filter?: string[];
}

export interface FilterableTable {
  schema: string;
  name: string;
  /** A partition's parent, as `"schema"."name"`-free parts: a partition follows its parent. */
  parent?: { schema: string; name: string } | undefined;
}

const REGEX_SPECIAL = /[\\^$.|+()[\]{}]/;

function badPattern(text: string, why: string): PgconvoyError {
  return new PgconvoyError(`pattern "${text}" is not valid: ${why}`, {
    code: 'BAD_PATTERN',
    hint: `write name or schema.name; * and ? are wildcards; quote names with capitals, spaces or dots: 'public."Order Items"'`,
    exitCode: EXIT.usage,
  });
}

/** A pg_dump pattern as anchored regular expressions, one per dot-separated part. */
export function parsePattern(text: string): NamePattern {
  const parts: string[] = [''];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (c === '"') {
      if (quoted && text[i + 1] === '"') {
        parts[parts.length - 1] += '"';
        i++;
      } else quoted = !quoted;
    } else if (quoted)
      parts[parts.length - 1] += REGEX_SPECIAL.test(c) || c === '*' || c === '?' ? `\\${c}` : c;
    else if (c === '.') parts.push('');
    else if (c === '*') parts[parts.length - 1] += '.*';
    else if (c === '?') parts[parts.length - 1] += '.';
    else parts[parts.length - 1] += REGEX_SPECIAL.test(c) ? `\\${c}` : c.toLowerCase();
  }
  if (quoted) throw badPattern(text, 'a quote is not closed');
  if (parts.length > 2)
    throw badPattern(text, 'more than two dot-separated parts (database names are not supported)');
  if (parts.some((p) => p === '')) throw badPattern(text, 'an empty name');
  const re = (p: string) => new RegExp(`^(?:${p})$`, 's');
  return parts.length === 2
    ? { text, schema: re(parts[0] ?? ''), name: re(parts[1] ?? '') }
    : { text, schema: undefined, name: re(parts[0] ?? '') };
}

/** Schema patterns have one part: `sales`, `"Audit*"`, `tenant_?`. */
function parseSchemaPattern(text: string): NamePattern {
  const p = parsePattern(text);
  if (p.schema) throw badPattern(text, 'a schema pattern has no dot (quote a name that contains one)');
  return p;
}

const FILTER_RULES: Record<string, keyof TableFilter | undefined> = {
  'include schema': 'includeSchemas',
  'exclude schema': 'excludeSchemas',
  'include table': 'includeTables',
  'include table_and_children': 'includeTables',
  'exclude table': 'excludeTables',
  'exclude table_and_children': 'excludeTables',
  'exclude table_data': 'excludeTableData',
  'exclude table_data_and_children': 'excludeTableData',
};

/**
 * pg_dump 17's filter file: `include|exclude <object type> <pattern>`, one rule a line, `#`
 * starts a comment. The object types pgconvoy acts on are the ones in FILTER_RULES; any other
 * is refused by line number rather than ignored.
 */
export function parseFilterFile(
  text: string,
  fileName: string,
  into: Record<keyof TableFilter, string[]>,
): void {
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = stripComment(raw).trim();
    if (line === '') return;
    const m = /^(include|exclude)\s+(\S+)\s+(.+)$/i.exec(line);
    const where = `${fileName}:${index + 1}`;
    const key = m ? FILTER_RULES[`${(m[1] ?? '').toLowerCase()} ${(m[2] ?? '').toLowerCase()}`] : undefined;
    if (!m || !key) {
      throw new PgconvoyError(`${where}: "${line}" is not a filter rule pgconvoy understands`, {
        code: 'BAD_FILTER_FILE',
        hint: 'one rule a line: include table PATTERN, exclude table PATTERN, include schema PATTERN, exclude schema PATTERN, exclude table_data PATTERN; # starts a comment',
        exitCode: EXIT.config,
      });
    }
    into[key].push((m[3] ?? '').trim());
  });
}

/** `#` outside double quotes starts a comment. */
function stripComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"') quoted = !quoted;
    else if (line[i] === '#' && !quoted) return line.slice(0, i);
  }
  return line;
}

/** The filter the command-line flags (and the filter files they name) describe; undefined when none. */
export function filterFromFlags(flags: FilterFlags): TableFilter | undefined {
  const texts: Record<keyof TableFilter, string[]> = {
    includeSchemas: [...(flags.schema ?? [])],
    excludeSchemas: [...(flags.excludeSchema ?? [])],
    includeTables: [...(flags.table ?? [])],
    excludeTables: [...(flags.excludeTable ?? [])],
    excludeTableData: [...(flags.excludeTableData ?? [])],
  };
  for (const file of flags.filter ?? []) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new PgconvoyError(`cannot read the filter file ${file}: ${(error as Error).message}`, {
        code: 'BAD_FILTER_FILE',
        hint: 'give the path of a readable file with one rule a line',
        exitCode: EXIT.config,
      });
    }
    parseFilterFile(text, file, texts);
  }
  return filterFromTexts(texts);
}

/** A filter's patterns as written (to keep it in the ledger: online start, then cutover). */
export type FilterTexts = Record<keyof TableFilter, string[]>;

export function filterTexts(filter: TableFilter): FilterTexts {
  const texts = (list: NamePattern[]) => list.map((p) => p.text);
  return {
    includeSchemas: texts(filter.includeSchemas),
    excludeSchemas: texts(filter.excludeSchemas),
    includeTables: texts(filter.includeTables),
    excludeTables: texts(filter.excludeTables),
    excludeTableData: texts(filter.excludeTableData),
  };
}

/** The filter the patterns describe; undefined when there are none. */
export function filterFromTexts(texts: FilterTexts): TableFilter | undefined {
  if (Object.values(texts).every((list) => list.length === 0)) return undefined;
  return {
    includeSchemas: texts.includeSchemas.map(parseSchemaPattern),
    excludeSchemas: texts.excludeSchemas.map(parseSchemaPattern),
    includeTables: texts.includeTables.map(parsePattern),
    excludeTables: texts.excludeTables.map(parsePattern),
    excludeTableData: texts.excludeTableData.map(parsePattern),
  };
}

function matchesSchema(p: NamePattern, schema: string): boolean {
  return p.name.test(schema);
}

function matchesTable(p: NamePattern, t: { schema: string; name: string }): boolean {
  return (p.schema ? p.schema.test(t.schema) : t.schema === 'public') && p.name.test(t.name);
}

/** The table itself or, for a partition, its parent. */
function matchesTableOrParent(p: NamePattern, t: FilterableTable): boolean {
  return matchesTable(p, t) || (t.parent !== undefined && matchesTable(p, t.parent));
}

/** Whether a schema's own objects are in (pg_dump: with --table, no schema is dumped whole). */
export function schemaIncluded(filter: TableFilter, schema: string): boolean {
  if (filter.includeTables.length > 0) return false;
  if (filter.includeSchemas.length > 0 && !filter.includeSchemas.some((p) => matchesSchema(p, schema)))
    return false;
  return !filter.excludeSchemas.some((p) => matchesSchema(p, schema));
}

/**
 * Whether a table is in, as pg_dump decides: with --table, the tables it matches (-n/-N have
 * no effect then); otherwise those of the included schemas; minus --exclude-table either way.
 */
export function tableIncluded(filter: TableFilter, table: FilterableTable): boolean {
  if (filter.excludeTables.some((p) => matchesTableOrParent(p, table))) return false;
  if (filter.includeTables.length > 0)
    return filter.includeTables.some((p) => matchesTableOrParent(p, table));
  if (filter.includeSchemas.length > 0 && !filter.includeSchemas.some((p) => matchesSchema(p, table.schema)))
    return false;
  return !filter.excludeSchemas.some((p) => matchesSchema(p, table.schema));
}

/** Whether an included table's rows are copied (not under --exclude-table-data). */
export function tableDataIncluded(filter: TableFilter, table: FilterableTable): boolean {
  return !filter.excludeTableData.some((p) => matchesTableOrParent(p, table));
}

/**
 * Refuses a pattern that matches nothing in the source, naming it: a typo must not turn a
 * clone of three tables into a clone of none (or an exclusion into a no-op).
 */
export function checkPatternsMatch(
  filter: TableFilter,
  schemas: string[],
  tables: FilterableTable[],
  where = 'in the source',
): void {
  const unmatched = [
    ...[...filter.includeSchemas, ...filter.excludeSchemas]
      .filter((p) => !schemas.some((s) => matchesSchema(p, s)))
      .map((p) => `schema pattern "${p.text}"`),
    ...[...filter.includeTables, ...filter.excludeTables, ...filter.excludeTableData]
      .filter((p) => !tables.some((t) => matchesTable(p, t)))
      .map((p) => `table pattern "${p.text}"`),
  ];
  if (unmatched.length === 0) return;
  throw new PgconvoyError(`nothing ${where} matches ${unmatched.join(', ')}`, {
    code: 'PATTERN_MATCHES_NOTHING',
    hint: 'check the spelling; unquoted names fold to lower case, a bare table name means public.NAME, and * and ? are wildcards',
    exitCode: EXIT.usage,
  });
}

/** `"schema"."name"` as a pg_dump pattern that matches exactly that name (no wildcard). */
function exactPattern(...parts: string[]): string {
  return parts.map(quoteIdent).join('.');
}

/**
 * pg_dump's switches for the resolved sets, as exact names: pg_dump and pgconvoy's data copy
 * then agree on every table, and a partitioned table's partitions come with it.
 */
export function pgDumpFilterArgs(
  filter: TableFilter,
  schemas: string[],
  tables: FilterableTable[],
): string[] {
  const args: string[] = [];
  if (filter.includeTables.length > 0) {
    for (const t of tables.filter((x) => tableIncluded(filter, x)))
      args.push(`--table=${exactPattern(t.schema, t.name)}`);
  } else {
    if (filter.includeSchemas.length > 0)
      for (const s of schemas.filter((x) => schemaIncluded(filter, x)))
        args.push(`--schema=${exactPattern(s)}`);
    for (const s of schemas.filter((x) => filter.excludeSchemas.some((p) => matchesSchema(p, x))))
      args.push(`--exclude-schema=${exactPattern(s)}`);
    for (const t of tables.filter((x) => filter.excludeTables.some((p) => matchesTableOrParent(p, x))))
      args.push(`--exclude-table=${exactPattern(t.schema, t.name)}`);
  }
  return args;
}

/** `schema.name` as format('%I.%I') wrote it, back into its parts. */
function parseQualified(text: string): { schema: string; name: string } {
  const parts = splitIdentifiers(text, (why) => new Error(`${text}: ${why}`));
  return { schema: parts[0] ?? '', name: parts[1] ?? '' };
}

function filterable(t: TableInfo): FilterableTable {
  return {
    schema: t.schema,
    name: t.name,
    parent: t.partitionOf ? parseQualified(t.partitionOf) : undefined,
  };
}

export interface FilteredInventory {
  /** The inventory narrowed to the tables whose rows move (and their sequences). */
  inventory: Inventory;
  /** pg_dump's switches for the same set (schema of --exclude-table-data tables included). */
  pgDumpArgs: string[];
  /** With --table, pg_dump dumps no schema: the schemas the included tables need. */
  schemasOfTables: string[];
}

/**
 * The source inventory as the filter leaves it, after checking that every pattern matches
 * something. Tables under --exclude-table-data keep their schema (pg_dump) but leave the
 * inventory, so no job copies their rows.
 */
export function filterInventory(inventory: Inventory, filter: TableFilter | undefined): FilteredInventory {
  if (!filter) return { inventory, pgDumpArgs: [], schemasOfTables: [] };
  const tables = inventory.tables.map(filterable);
  checkPatternsMatch(filter, inventory.schemas, tables);
  const moved = inventory.tables.filter((t, i) => {
    const f = tables[i] as FilterableTable;
    return tableIncluded(filter, f) && tableDataIncluded(filter, f);
  });
  const sequences = inventory.sequences.filter((s) => {
    if (filter.includeTables.length === 0) return schemaIncluded(filter, s.schema);
    if (!s.ownedBy) return false;
    const parts = splitIdentifiers(s.ownedBy, (why) => new Error(`${s.ownedBy}: ${why}`));
    return tableIncluded(filter, { schema: parts[0] ?? '', name: parts[1] ?? '' });
  });
  return {
    inventory: {
      ...inventory,
      schemas: inventory.schemas.filter(
        (s) => schemaIncluded(filter, s) || moved.some((t) => t.schema === s),
      ),
      tables: moved,
      sequences,
      totalBytes: moved.reduce((sum, t) => sum + t.bytes, 0),
      // pg_dump leaves large objects out when --schema or --table narrows the dump.
      largeObjects:
        filter.includeSchemas.length + filter.includeTables.length > 0 ? 0 : inventory.largeObjects,
    },
    pgDumpArgs: pgDumpFilterArgs(filter, inventory.schemas, tables),
    schemasOfTables:
      filter.includeTables.length === 0
        ? []
        : [...new Set(tables.filter((t) => tableIncluded(filter, t)).map((t) => t.schema))].sort(),
  };
}
