/**
 * pg_dump's object filters on the command line, the same for clone, start and verify
 * (matching: inventory/table-filter.ts). `--schema` keeps its older meaning on clone and
 * start too: the words `apply` and `skip` choose the schema mode, anything else is a pattern
 * (a schema really named skip is `-n '"skip"'`).
 */
import type { Command } from 'commander';
import { filterFromFlags, type FilterFlags, type TableFilter } from '../inventory/table-filter.js';

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export const FILTER_HELP = `
Filters (pg_dump's; a pattern that matches nothing is an error):
  -n/--schema PATTERN, -N/--exclude-schema PATTERN, -t/--table PATTERN, -T/--exclude-table PATTERN,
  --exclude-table-data PATTERN (schema copied, rows not), --filter FILE (pg_dump 17's format:
  "include table sales.*", "exclude schema audit", "exclude table_data public.logs", # comments).
  Patterns: * and ? are wildcards, unquoted names fold to lower case, "Quoted" parts are literal,
  schema.table qualifies, a bare table name means public.NAME. With -t, -n/-N do not apply (as pg_dump).`;

/** Adds the filter options; `schemaModes` lists the words `--schema` keeps as a mode. */
export function addFilterOptions(command: Command, schemaModes: string[] = []): Command {
  const schemaHelp = schemaModes.length
    ? `only schemas matching PATTERN (repeatable); ${schemaModes.join('/')}: the schema mode`
    : 'only schemas matching PATTERN (repeatable)';
  return command
    .option('-n, --schema <pattern>', schemaHelp, collect)
    .option('-N, --exclude-schema <pattern>', 'leave out schemas matching PATTERN (repeatable)', collect)
    .option('-t, --table <pattern>', 'only tables matching PATTERN (repeatable)', collect)
    .option('-T, --exclude-table <pattern>', 'leave out tables matching PATTERN (repeatable)', collect)
    .option('--exclude-table-data <pattern>', 'create these tables but copy none of their rows', collect)
    .option('--filter <file>', "read filter rules from FILE (pg_dump 17's format)", collect);
}

/**
 * The schema mode and the filter out of the flags. `--schema` values that are mode words
 * choose the mode (the last one wins); the others are schema patterns.
 */
export function splitSchemaFlag<M extends string>(
  values: string[] | undefined,
  modes: readonly M[],
): { mode: M | undefined; patterns: string[] } {
  let mode: M | undefined;
  const patterns: string[] = [];
  for (const v of values ?? []) {
    if ((modes as readonly string[]).includes(v)) mode = v as M;
    else patterns.push(v);
  }
  return { mode, patterns };
}

export function filterOf(
  flags: FilterFlags,
  schemaPatterns: string[] | undefined = flags.schema,
): TableFilter | undefined {
  return filterFromFlags({ ...flags, schema: schemaPatterns ?? [] });
}
