/**
 * Quoting at the edge. Identifiers always go through `quoteIdent` (the algorithm of
 * libpq's PQescapeIdentifier and node-postgres' escapeIdentifier); values go as `$n`
 * parameters, and only where a statement cannot take parameters (COPY, DDL, SET) through
 * `quoteLiteral`.
 */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('identifier contains a NUL byte');
  return '"' + name.replace(/"/g, '""') + '"';
}

/** `"schema"."name"` */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/**
 * A string literal safe whatever `standard_conforming_strings` is: backslashes are
 * doubled and the E'' form is used when there are any, as PQescapeLiteral does.
 */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('literal contains a NUL byte');
  const body = value.replace(/'/g, "''");
  if (body.includes('\\')) return ` E'${body.replace(/\\/g, '\\\\')}'`;
  return `'${body}'`;
}

// PostgreSQL's reserved key words (the ones that can never be a bare name).
const RESERVED = new Set(
  (
    'all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create ' +
    'current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc ' +
    'distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral ' +
    'leading limit localtime localtimestamp not null offset on only or order placing primary references returning ' +
    'select session_user some symmetric system_user table then to trailing true union unique user using variadic ' +
    'when where window with'
  ).split(' '),
);

/** Human form of one name: quoted only where SQL needs it, so it can be pasted into psql. */
export function displayIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) && !RESERVED.has(name) ? name : quoteIdent(name);
}

/** Human form of schema.name, pasteable into psql. */
export function displayName(schema: string, name: string): string {
  return `${displayIdent(schema)}.${displayIdent(name)}`;
}

/**
 * A dotted name as SQL reads it: double-quoted parts are kept as written (`""` is a quote),
 * unquoted parts are folded to lower case. `bad(why)` makes the error for a malformed one.
 */
export function splitIdentifiers(text: string, bad: (why: string) => Error): string[] {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw bad('a quote is not closed');
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i++];
      }
    } else {
      const end = text.indexOf('.', i);
      const raw = text.slice(i, end < 0 ? text.length : end);
      if (raw.includes('"')) throw bad('a quote in the middle of a name');
      part = raw.trim().toLowerCase();
      i += raw.length;
    }
    if (part === '') throw bad('an empty name');
    parts.push(part);
    if (i >= text.length) break;
    if (text[i] !== '.') throw bad('expected a dot after a quoted name');
    i++;
    if (i >= text.length) throw bad('nothing after the dot');
  }
  return parts;
}
