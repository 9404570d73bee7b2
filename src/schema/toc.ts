/**
 * Reading an archive's table of contents with pg_restore itself, never by parsing SQL:
 * `pg_restore -l` gives one line per entry (`<dumpId>; <tableoid> <oid> <TYPE> <schema>
 * <name> <owner>`), `-l -v` adds each entry's dependencies (`;\tdepends on: 12 34`), and
 * `-l --section=pre-data|post-data` lists only that section's entries, which is how we
 * learn pg_dump's own section of each entry (the listing does not print it).
 *
 * Names in these lines are not quoted, so "Order Items" cannot be told from two words:
 * we take only the dump id, the catalog oids and the entry type from a line, and find
 * names in the source catalogs by oid (classify.ts). Checked with pg_restore 15 and 17.
 */
import type { TocEntry, TocSection } from './types.js';

/**
 * pg_dump's entry types made of several words (pg_dump.c, PostgreSQL 12 to 17). A line's
 * type is the longest of these it starts with, else its first word.
 */
const MULTI_WORD_TYPES = [
  'ACCESS METHOD',
  'BLOB METADATA',
  'CHECK CONSTRAINT',
  'DATABASE PROPERTIES',
  'DEFAULT ACL',
  'EVENT TRIGGER',
  'FK CONSTRAINT',
  'FOREIGN DATA WRAPPER',
  'FOREIGN SERVER',
  'FOREIGN TABLE',
  'INDEX ATTACH',
  'LARGE OBJECT',
  'MATERIALIZED VIEW DATA',
  'MATERIALIZED VIEW',
  'OPERATOR CLASS',
  'OPERATOR FAMILY',
  'PROCEDURAL LANGUAGE',
  'PUBLICATION TABLES IN SCHEMA',
  'PUBLICATION TABLE',
  'ROW SECURITY',
  'SECURITY LABEL',
  'SEQUENCE OWNED BY',
  'SEQUENCE SET',
  'SHELL TYPE',
  'SUBSCRIPTION TABLE',
  'TABLE ATTACH',
  'TABLE DATA',
  'TEXT SEARCH CONFIGURATION',
  'TEXT SEARCH DICTIONARY',
  'TEXT SEARCH PARSER',
  'TEXT SEARCH TEMPLATE',
  'USER MAPPING',
].sort((a, b) => b.length - a.length);

/**
 * Types that pg_dump writes without catalog oids (0 0) and whose first word is also a type
 * on its own: for these the oids settle the question when a schema is named like the
 * second word (a TABLE in schema "ATTACH" has oids; a TABLE ATTACH has none).
 */
const OIDLESS_TYPES = new Set(['INDEX ATTACH', 'TABLE ATTACH', 'SEQUENCE OWNED BY', 'SEQUENCE SET']);

const LINE = /^(\d+);\s+(\d+)\s+(\d+)\s+(.*)$/;
const DEPENDS = /^;\s*depends on:\s*([\d\s]*)$/;

function entryType(rest: string, tableoid: number): { desc: string; text: string } {
  for (const desc of MULTI_WORD_TYPES) {
    if (rest === desc || rest.startsWith(desc + ' ')) {
      if (OIDLESS_TYPES.has(desc) && tableoid !== 0) continue;
      return { desc, text: rest.slice(desc.length + 1) };
    }
  }
  const space = rest.indexOf(' ');
  return space < 0 ? { desc: rest, text: '' } : { desc: rest.slice(0, space), text: rest.slice(space + 1) };
}

/** Entries of a `pg_restore -l` (optionally `-v`) listing, in archive order. */
export function parseTocListing(listing: string): TocEntry[] {
  const entries: TocEntry[] = [];
  for (const raw of listing.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const m = LINE.exec(line);
    if (m) {
      const tableoid = Number(m[2]);
      const { desc, text } = entryType((m[4] ?? '').trimEnd(), tableoid);
      entries.push({
        dumpId: Number(m[1]),
        tableoid,
        oid: Number(m[3]),
        desc,
        text,
        line,
        section: 'none',
        dependencies: [],
      });
      continue;
    }
    const d = DEPENDS.exec(line);
    const last = entries[entries.length - 1];
    if (d && last) {
      last.dependencies.push(...(d[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number));
    }
  }
  return entries;
}

/** The dump ids a `pg_restore -l --section=...` listing holds. */
export function listedIds(listing: string): Set<number> {
  return new Set(parseTocListing(listing).map((e) => e.dumpId));
}

/** Marks each entry with its section, given the ids each per-section listing holds. */
export function assignSections(
  entries: TocEntry[],
  sections: Partial<Record<TocSection, Set<number>>>,
): void {
  for (const entry of entries) {
    for (const [section, ids] of Object.entries(sections) as [TocSection, Set<number>][]) {
      if (ids.has(entry.dumpId)) entry.section = section;
    }
  }
}

/** A restore list for `pg_restore -L`: the given entries, in archive order. */
export function restoreList(all: readonly TocEntry[], wanted: Iterable<number>, title: string): string {
  const ids = new Set(wanted);
  const lines = all.filter((e) => ids.has(e.dumpId)).map((e) => e.line);
  return [
    `; pgconvoy restore list: ${title}`,
    `; ${lines.length} entries, in archive order`,
    ...lines,
    '',
  ].join('\n');
}
