/**
 * Flexy's queue file, made safe. Lines:
 *
 *   schema.table                         the whole table
 *   schema.table|column|I|low,high       low <= column <= high   (Flexy's bounds are inclusive)
 *   schema.table|column|I|low,           column >= low
 *   schema.table|column|V|value          column = value
 *   # comment, and blank lines
 *
 * Names may be quoted ("Order Items"); unquoted names fold to lower case, as in SQL.
 * Parsing here is pure syntax; queue-plan.ts checks every line against the source's catalog
 * (tables, columns, types, overlaps, gaps) before anything runs. Values never become SQL
 * text except as quoted literals cast to the column's catalog type.
 */

export interface QueueLine {
  lineNo: number;
  schema: string;
  table: string;
  /** Absent for whole-table lines. */
  column?: string;
  op?: 'I' | 'V';
  low?: string;
  /** Absent for `low,` (open-ended). */
  high?: string;
  value?: string;
}

export interface QueueSyntax {
  lines: QueueLine[];
  errors: { lineNo: number; message: string }[];
}

/** Reads one SQL identifier at `pos`: "quoted" (with "" for a quote) or bare (folded to lower case). */
function readIdent(text: string, pos: number): { name: string; end: number } | undefined {
  if (text[pos] === '"') {
    let name = '';
    let i = pos + 1;
    while (i < text.length) {
      if (text[i] === '"') {
        if (text[i + 1] === '"') {
          name += '"';
          i += 2;
          continue;
        }
        return name ? { name, end: i + 1 } : undefined;
      }
      name += text[i];
      i++;
    }
    return undefined;
  }
  const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(text.slice(pos));
  return m ? { name: m[0].toLowerCase(), end: pos + m[0].length } : undefined;
}

export function parseQueueFile(text: string): QueueSyntax {
  const lines: QueueLine[] = [];
  const errors: QueueSyntax['errors'] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const bad = (message: string) => errors.push({ lineNo, message });
    const schema = readIdent(line, 0);
    if (!schema || line[schema.end] !== '.')
      return bad(`expected schema.table at the start, got "${line.slice(0, 40)}"`);
    const table = readIdent(line, schema.end + 1);
    if (!table) return bad(`expected a table name after "${schema.name}."`);
    const rest = line.slice(table.end);
    if (rest === '') return lines.push({ lineNo, schema: schema.name, table: table.name });
    if (rest[0] !== '|')
      return bad(`unexpected "${rest.slice(0, 20)}" after the table name (fields are separated by |)`);
    const column = readIdent(rest, 1);
    if (!column || rest[column.end] !== '|')
      return bad('expected |column|I|low,high or |column|V|value after the table name');
    const afterColumn = rest.slice(column.end + 1);
    const bar = afterColumn.indexOf('|');
    const op = bar < 0 ? afterColumn : afterColumn.slice(0, bar);
    if (op !== 'I' && op !== 'V') return bad(`unknown operator "${op}": use I (range) or V (value)`);
    if (bar < 0) return bad(`operator ${op} needs a value after another |`);
    const operand = afterColumn.slice(bar + 1);
    if (op === 'V') {
      if (operand === '') return bad('a V line needs a value (column = value)');
      return lines.push({
        lineNo,
        schema: schema.name,
        table: table.name,
        column: column.name,
        op,
        value: operand,
      });
    }
    const comma = operand.indexOf(',');
    if (comma < 0) return bad(`an I line needs "low,high" or "low," (got "${operand}")`);
    const low = operand.slice(0, comma).trim();
    const high = operand.slice(comma + 1).trim();
    if (low === '') return bad('an I range needs a low bound ("low,high" or "low,")');
    lines.push({
      lineNo,
      schema: schema.name,
      table: table.name,
      column: column.name,
      op,
      low,
      ...(high !== '' ? { high } : {}),
    });
  });
  return { lines, errors };
}
